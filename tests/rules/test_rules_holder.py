"""RulesHolder: a broken edit keeps the old rules running; unchanged files cost one stat()."""

from __future__ import annotations

import os
from pathlib import Path

from rules_kit import mail

from maildesk.rules.engine import evaluate
from maildesk.rules.holder import RulesHolder
from maildesk.rules.ruleset import RuleSet

GOOD = "version: 1\nrules:\n  - name: billing\n    then: [{queue: billing}]\n"
BETTER = "version: 1\nrules:\n  - name: sales\n    then: [{queue: sales}]\n"
BROKEN = (
    "version: 1\nrules:\n  - name: sales\n    then: [{queue: sales}, {tier: L9}]\n"
    "  - name: x\n    if: {sendr: a}\n    then: [{queue: a}]\n"
)


def write(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    stamp = 1_700_000_000 + bump  # distinct mtimes even on coarse file systems
    os.utime(path, (stamp, stamp))


def test_holder_keeps_old_rules_on_a_broken_edit(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 0)
    holder = RulesHolder(path)
    assert holder.ruleset == RuleSet()
    assert holder.reload() == []
    assert evaluate(holder.ruleset, mail()).queue == "billing"

    write(path, BROKEN, 1)
    errors = holder.reload_if_changed()
    assert errors == [
        f"{path}:4: rule 'sales': bad tier 'L9'; use one of L1, L2, L3",
        f"{path}:6: rule 'x': unknown condition field 'sendr'",
    ]
    assert holder.errors == errors
    assert evaluate(holder.ruleset, mail()).queue == "billing"  # still the last good rules
    assert holder.reload_if_changed() is None  # the same broken file is not re-read every time

    write(path, BETTER, 2)
    assert holder.reload_if_changed() == []
    assert evaluate(holder.ruleset, mail()).queue == "sales" and holder.errors == []
    assert holder.reload_if_changed() is None


def test_unchanged_file_is_not_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 0)
    loads: list[Path] = []

    def counting(p: Path) -> RuleSet:
        from maildesk.rules.loader import load_rules

        loads.append(p)
        return load_rules(p)

    holder = RulesHolder(path, loader=counting)
    assert holder.reload_if_changed() == []  # never loaded: counts as changed
    for _ in range(5):
        assert holder.reload_if_changed() is None
    assert len(loads) == 1


def test_deleted_file_keeps_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, GOOD, 0)
    holder = RulesHolder(path)
    holder.reload()
    path.unlink()
    errors = holder.reload_if_changed()
    assert errors is not None and "cannot read rules file" in errors[0]
    assert evaluate(holder.ruleset, mail()).queue == "billing"
    assert holder.reload_if_changed() is None


def test_reload_to_another_path_and_without_a_path(tmp_path: Path) -> None:
    assert RulesHolder().reload() == ["no rules file configured"]
    other = tmp_path / "other.yaml"
    write(other, BETTER, 0)
    holder = RulesHolder()
    assert holder.reload(other) == [] and holder.path == other
    assert evaluate(holder.ruleset, mail()).queue == "sales"
