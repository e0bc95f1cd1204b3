"""The order of the pipeline's stages, in one visible tuple.

Each stage is a function `(ctx, session, deps) -> None` made a `Stage` by `@stage(needs=…)`
(`pipeline/context.py`), run inside the one transaction of a batch (invariant 2). `dedupe`
comes first so a replay does nothing at all; `screen` comes
before `thread` so a bounce can name the ticket it concerns and automatic mail never opens
a ticket; `survey` takes satisfaction-survey answers aside before `agent_mail` and
`thread` (an answer never reopens); `route` runs the rules on customer mail with a ticket;
`respond` queues the acknowledgement and the rules' replies in the outbox, in the same transaction.
"""

from __future__ import annotations

from maildesk.pipeline.context import Stage
from maildesk.pipeline.stages.agent import agent_mail
from maildesk.pipeline.stages.dedupe import dedupe
from maildesk.pipeline.stages.notify import notify
from maildesk.pipeline.stages.persist import persist
from maildesk.pipeline.stages.respond import respond
from maildesk.pipeline.stages.route import route
from maildesk.pipeline.stages.screen import apply_bounce, screen
from maildesk.pipeline.stages.survey import survey
from maildesk.pipeline.stages.thread import apply_thread_outcome, thread, visible_text

PIPELINE: tuple[Stage, ...] = (
    dedupe,
    screen,
    visible_text,
    survey,
    agent_mail,
    thread,
    persist,
    apply_thread_outcome,
    apply_bounce,
    route,
    respond,
    notify,
)

# The foundation stages alone: store the mail and open its ticket (tests and benchmarks).
STORE_ONLY: tuple[Stage, ...] = (dedupe, persist)
