"""abstractrt: a command-line durable workflow runner for Python.

The kernel is a library: build a ``WorkflowSpec``, create a ``Runtime`` over a run store
and a ledger store, then ``start``, ``tick`` and ``resume`` runs.
"""

from .core.config import RuntimeConfig
from .core.models import (
    Effect,
    EffectType,
    LimitWarning,
    RecordKind,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from .core.policy import DefaultEffectPolicy, EffectPolicy, NoRetryPolicy, RetryPolicy
from .core.runtime import EffectOutcome, NonRetryableError, Runtime
from .core.spec import WorkflowRegistry, WorkflowSpec
from .errors import AbstractRTError
from .storage.chain import verify_ledger_chain
from .storage.memory import InMemoryLedgerStore, InMemoryRunStore

__version__ = "0.1.0"


_ABSTRACTRUNTIME_NAMES = {"JsonFileRunStore": "FileRunStore", "JsonlLedgerStore": "FileLedgerStore"}


def __getattr__(name: str) -> object:
    # The file stores load sqlite3: import them only when asked for.
    if name in ("FileRunStore", "FileLedgerStore", "open_file_stores"):
        from .storage import files

        return getattr(files, name)
    if name in _ABSTRACTRUNTIME_NAMES:  # AbstractRuntime's names for the file stores
        from .storage import files

        return getattr(files, _ABSTRACTRUNTIME_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "WorkflowSpec", "StepPlan", "Effect", "EffectType", "EffectOutcome", "RunState",
    "RunStatus", "WaitState", "WaitReason", "StepRecord", "StepStatus", "RecordKind",
    "Runtime", "RuntimeConfig", "DefaultEffectPolicy", "RetryPolicy", "NoRetryPolicy",
    "EffectPolicy", "NonRetryableError", "LimitWarning", "WorkflowRegistry",
    "InMemoryRunStore", "InMemoryLedgerStore", "FileRunStore", "FileLedgerStore",
    "open_file_stores", "verify_ledger_chain", "AbstractRTError",
    "__version__",
]
