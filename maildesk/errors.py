"""Exceptions shared across layers. Owns no behaviour."""


class MaildeskError(Exception):
    """Base class for errors maildesk reports to operators."""


class ConfigError(MaildeskError):
    """The configuration is invalid; the message names the key and the problem."""


class UnparseableMessage(MaildeskError):
    """The raw bytes cannot be understood as a mail message."""


class SpoolError(MaildeskError):
    """The spool cannot take or give a message."""


class StageError(MaildeskError):
    """A pipeline stage raised; carries the stage name."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
