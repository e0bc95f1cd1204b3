"""The durable spool: mail is accepted only once its bytes are here (invariant 1).

`files` owns the state folders (incoming/ active/ failed/ quarantine/ discarded/) and the
journal drain; `journal` the SMTP intake journal's writer.
"""

from maildesk.spool.files import JournalWriter, PendingEntry, Spool, SpoolEntry

__all__ = ["JournalWriter", "PendingEntry", "Spool", "SpoolEntry"]
