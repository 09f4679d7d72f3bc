"""Evaluation runs: dataset-level losses fed by many workers, each batch counted exactly once.

The package's two parts::

    RunManager      create / target + add / get / list_runs / finish / delete (what the
                    frontends call)
    RunStore        the storage interface; SqliteStore (embedded) and RedisStore (shared)
"""

from .manager import (
    BatchAnswer,
    BatchTarget,
    Definition,
    RunManager,
    RunPage,
    RunView,
    open_store,
)
from .store import Added, AddOutcome, BatchRecord, Cursor, RunSnapshot, RunStore

__all__ = ["AddOutcome", "Added", "BatchAnswer", "BatchRecord", "BatchTarget", "Cursor",
           "Definition",
           "RunManager", "RunPage", "RunSnapshot", "RunStore", "RunView", "open_store"]
