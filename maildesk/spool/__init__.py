"""The durable spool: mail is accepted only once its bytes are here (invariant 1).

`files` owns the state folders (incoming/ active/ failed/ quarantine/ discarded/) and the
journal drain; `journal` the SMTP intake journal's writer.
"""

from maildesk.spool.files import PendingEntry, Spool, SpoolEntry
from maildesk.spool.journal import Journal, JournalWriter

__all__ = ["Journal", "JournalWriter", "PendingEntry", "Spool", "SpoolEntry"]
