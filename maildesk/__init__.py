"""maildesk: an email-first help desk that runs as a daemon."""

__version__ = "0.1.0"
