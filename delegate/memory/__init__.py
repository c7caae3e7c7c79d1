"""Everything that persists: the `Store` (the one gateway to the database), the records read
back from it, the blackboard `Memory` agents share, and the model-call cache.

`import delegate` does not import this package (it pulls in SQLAlchemy); the orchestrator loads
it when a run first needs its store.
"""

from delegate.errors import CorruptRecordError, RunExistsError, StoreError
from delegate.memory.blackboard import Memory, memory_tools, relevant
from delegate.memory.cache import CachedModel
from delegate.memory.records import EventRecord, MemoryRecord, RunRecord, TaskRecord
from delegate.memory.store import Store, default_url

__all__ = [
    "CachedModel",
    "CorruptRecordError",
    "EventRecord",
    "Memory",
    "MemoryRecord",
    "RunExistsError",
    "RunRecord",
    "Store",
    "StoreError",
    "TaskRecord",
    "default_url",
    "memory_tools",
    "relevant",
]
