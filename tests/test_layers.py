"""The architecture covers the whole package: every module under maildesk/ sits in a layer of
the `.importlinter` layers contract, and every package but the store is named by the
"SQL lives in the store" contract.

import-linter cannot say this itself: the layers contract has no containers, so it cannot
be `exhaustive`, and a contract only checks the modules it names. Without this test a new
module or package would slip outside the architecture unchecked.
"""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "maildesk"
# Entry points that only hand over to the CLI (`python -m maildesk`); no layer imports them.
OUTSIDE_LAYERS = {"maildesk", "maildesk.__main__"}


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    assert parser.read(ROOT / ".importlinter"), "no .importlinter at the repository root"
    return parser


def _names(value: str) -> list[str]:
    """Module names of a contract option: one a line, `a | b` and `a : b` for siblings."""
    names: list[str] = []
    for line in value.splitlines():
        for part in line.replace(":", "|").split("|"):
            name = part.strip().strip("()").strip()
            if name:
                names.append(name)
    return names


def _modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if "migrations" in parts:  # Alembic's scripts: run by the store, never imported by name
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(".".join(parts))
    return found


def _within(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def test_every_module_belongs_to_a_layer() -> None:
    layers = _names(_contracts()["importlinter:contract:layers"]["layers"])
    outside = []
    for module in _modules():
        if module in OUTSIDE_LAYERS:
            continue
        in_layer = any(_within(module, layer) for layer in layers)
        holds_layers = any(layer.startswith(module + ".") for layer in layers)  # e.g. maildesk.services
        if not (in_layer or holds_layers):
            outside.append(module)
    assert not outside, f"modules outside every layer of .importlinter (add them to a layer): {outside}"


def test_only_the_store_may_import_sqlalchemy() -> None:
    contract = _contracts()["importlinter:contract:sql-in-store"]
    assert _names(contract["forbidden_modules"]) == ["sqlalchemy"]
    sources = _names(contract["source_modules"])
    top_level = {".".join(m.split(".")[:2]) for m in _modules() if m not in OUTSIDE_LAYERS}
    missing = sorted(top_level - set(sources) - {"maildesk.store"})
    assert not missing, f"packages the 'SQL lives in the store' contract does not cover: {missing}"


def test_the_layers_test_sees_a_module_outside_the_layers() -> None:
    """The check itself: a module no layer names is reported."""
    layers = ["maildesk.cli", "maildesk.services.admin | maildesk.services.rules"]
    names = _names("\n".join(layers))
    assert names == ["maildesk.cli", "maildesk.services.admin", "maildesk.services.rules"]
    assert not any(_within("maildesk.services.newthing", layer) for layer in names)
    assert any(layer.startswith("maildesk.services.") for layer in names)  # the package holds layers
