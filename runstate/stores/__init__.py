"""Where objects are kept: the store protocol and its backends.

``MemoryStore`` is the embedded default; ``SQLiteStore`` keeps runs in one file shared by
processes; ``PostgresStore`` keeps them in PostgreSQL for workers on many machines (its
driver is imported only when one is made). All pass the same contract suite.
"""

from .._webhooks import Delivery, DeliveryStats, Endpoint
from ._async import AsyncStore
from ._base import (
    Claimed,
    ClaimStep,
    IdempotencyKey,
    KeyTaken,
    KindStats,
    Now,
    Order,
    Page,
    Stats,
    Store,
    StoredObject,
    Sweep,
    WebhookStore,
    Write,
    group_of,
    is_active,
    is_waiting,
    restore,
)
from ._bell import Bell
from ._group import GroupCommit
from ._memory import MemoryStore
from ._postgres import AsyncPostgresStore, PostgresStore
from ._sqlite import SQLiteStore

__all__ = [
    "AsyncPostgresStore",
    "AsyncStore",
    "Bell",
    "ClaimStep",
    "Claimed",
    "Delivery",
    "DeliveryStats",
    "Endpoint",
    "GroupCommit",
    "IdempotencyKey",
    "KeyTaken",
    "KindStats",
    "MemoryStore",
    "Now",
    "Order",
    "Page",
    "PostgresStore",
    "SQLiteStore",
    "Stats",
    "Store",
    "StoredObject",
    "Sweep",
    "WebhookStore",
    "Write",
    "group_of",
    "is_active",
    "is_waiting",
    "restore",
]
