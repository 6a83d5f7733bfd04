"""SQLAlchemy 2 typed tables. Importing this package registers every table on Base.metadata."""

from models.accounts import Block, DeletionRequest
from models.analytics import Event, ExportRun, ExportWatermark
from models.base import Base
from models.data_exports import DataExport
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
from models.media import Device, Notification, OutboxMessage, Upload
from models.moderation import Report
from models.realtime import Change, ChangeSequence
from models.scheduling import Availability, BookingTimer
from models.sync import SyncDataset, SyncRecord
from models.user import User

__all__ = [
    "Availability",
    "Base",
    "Block",
    "Booking",
    "BookingEvent",
    "BookingTimer",
    "Change",
    "ChangeSequence",
    "DataExport",
    "DeletionRequest",
    "Device",
    "Event",
    "ExportRun",
    "ExportWatermark",
    "IdempotencyKey",
    "Message",
    "Notification",
    "OutboxMessage",
    "ProviderCategory",
    "ProviderProfile",
    "Report",
    "Review",
    "RoleChange",
    "SyncDataset",
    "SyncRecord",
    "Upload",
    "User",
]
