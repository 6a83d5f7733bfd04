"""SQLAlchemy 2 typed tables. Importing this package registers every table on Base.metadata."""

from models.base import Base
from models.idempotency import IdempotencyKey
from models.marketplace import (
    Booking,
    BookingEvent,
    Message,
    ProviderCategory,
    ProviderProfile,
    Review,
    RoleChange,
)
from models.user import User

__all__ = [
    "Base",
    "Booking",
    "BookingEvent",
    "IdempotencyKey",
    "Message",
    "ProviderCategory",
    "ProviderProfile",
    "Review",
    "RoleChange",
    "User",
]
