"""Threading: which ticket a message belongs to, and what the person actually wrote.

Pure decisions over plain data (no SQLAlchemy, aiosmtpd, imapclient, Jinja2 or Typer):
subject rules and ticket tags, signed Message-IDs and reply addresses, Outlook
Thread-Index values, the ranked threading decision and quoted-text splitting.
"""

from maildesk.threading.decide import (
    DEFAULT_FREE_MAIL,
    ThreadDecision,
    ThreadInput,
    ThreadLookup,
    TicketFacts,
    decide_thread,
)
from maildesk.threading.subject import (
    DEFAULT_TAG_FORMAT,
    find_tag,
    format_tag,
    normalize_subject,
    reply_subject,
    strip_prefixes,
)
from maildesk.threading.thread_index import (
    child_thread_index,
    new_thread_index,
    thread_index_root,
)
from maildesk.threading.tokens import (
    make_message_id,
    make_reply_address,
    parse_message_id,
    parse_reply_address,
)

__all__ = [
    "DEFAULT_FREE_MAIL",
    "DEFAULT_TAG_FORMAT",
    "ThreadDecision",
    "ThreadInput",
    "ThreadLookup",
    "TicketFacts",
    "child_thread_index",
    "decide_thread",
    "find_tag",
    "format_tag",
    "make_message_id",
    "make_reply_address",
    "new_thread_index",
    "normalize_subject",
    "parse_message_id",
    "parse_reply_address",
    "reply_subject",
    "strip_prefixes",
    "thread_index_root",
]
