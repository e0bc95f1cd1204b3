"""Stages declare what they use from preparation, and preparation computes exactly that.

The worker asks its stages (`needs_of`), so a stage swapped in or left out changes what the
parser children compute, with no list of stage names anywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maildesk.pipeline.context import MessageContext, Needs, PipelineDeps, Stage, needs_of, stage
from maildesk.pipeline.order import PIPELINE, STORE_ONLY
from maildesk.pipeline.prepare import Prepared, prepare_raw
from maildesk.pipeline.stages.agent import agent_mail
from maildesk.pipeline.stages.screen import screen
from maildesk.pipeline.stages.thread import visible_text
from tests.conftest import make_settings
from tests.support.mailgen import eml


def test_the_full_pipeline_needs_the_screen_the_reply_split_and_the_agent_facts() -> None:
    assert screen.needs == Needs(screen=True)
    assert visible_text.needs == Needs(reply=True)
    assert agent_mail.needs == Needs(agent=True)
    # persist stores the customer's language (maildesk/language.py), guessed before the transaction
    assert needs_of(PIPELINE) == Needs(screen=True, reply=True, language=True, agent=True)
    assert needs_of(STORE_ONLY) == Needs(language=True)
    assert needs_of([screen]) == Needs(screen=True)


def test_preparation_computes_what_the_stages_declared(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")
    raw = eml(body="Thanks!\n\n> what you wrote before\n")
    full = prepare_raw({}, raw, settings, needs_of(PIPELINE))
    bare = prepare_raw({}, raw, settings, needs_of(STORE_ONLY))
    assert isinstance(full, Prepared) and isinstance(bare, Prepared)
    assert full.screen is not None and full.screen.verdict == "human"
    assert full.reply is not None and "Thanks!" in full.reply.visible
    assert full.sender is not None and full.sender[1]
    assert full.words is None  # no '#' and no sign of a forward: the agent stage reads no words
    commands = prepare_raw(
        {}, eml(body="#resolve\n\nDone, thanks!\n\n> what you wrote before\n"), settings, needs_of(PIPELINE)
    )
    assert isinstance(commands, Prepared) and commands.words is not None
    assert "#resolve" in commands.words.text and "what you wrote before" in commands.words.quoted
    assert bare.screen is None and bare.reply is None and bare.sender is None and bare.words is None


def test_a_stage_is_called_like_its_function_and_named_after_it(tmp_path: Path) -> None:
    seen: list[str] = []

    @stage(needs=Needs(reply=True))
    def look(ctx: MessageContext, session: Any, deps: PipelineDeps) -> None:
        """Looks."""
        seen.append(ctx.entry_id)

    assert isinstance(look, Stage)
    assert look.name == "look" and look.__doc__ == "Looks." and look.needs == Needs(reply=True)
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'unused.db'}")
    prepared = prepare_raw({}, eml(), settings, Needs())
    assert isinstance(prepared, Prepared)
    ctx = MessageContext(entry_id="e1", meta={}, msg=prepared.msg, now=datetime.now(UTC))
    look(ctx, None, PipelineDeps(settings))
    assert seen == ["e1"]
