"""Where runs are kept: the store protocol and its backends.

``MemoryStore`` is the embedded default; ``SQLiteStore`` keeps runs in one file shared by
processes. Both pass the same contract suite.
"""

from ._base import Claimed, Order, Page, Store, StoredRun, Write
from ._memory import MemoryStore
from ._sqlite import SQLiteStore

__all__ = ["Claimed", "MemoryStore", "Order", "Page", "SQLiteStore", "Store", "StoredRun", "Write"]
