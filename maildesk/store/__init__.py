"""Storage: SQLAlchemy models, the unit of work, queries and migrations. SQL lives here only.

`Session` is re-exported so that the layers above can type their transaction parameter
without importing SQLAlchemy themselves.
"""

from sqlalchemy.orm import Session

__all__ = ["Session"]
