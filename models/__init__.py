"""SQLAlchemy 2 typed tables. Importing this package registers every table on Base.metadata."""

from models.base import Base
from models.user import User

__all__ = ["Base", "User"]
