"""abstractrt: a command-line durable workflow runner for Python.

The kernel is a library: build a ``WorkflowSpec``, create a ``Runtime`` over a run store
and a ledger store, then ``start``, ``tick`` and ``resume`` runs.

Every name below is imported on first use: ``import abstractrt_cli`` (which every
command does first) costs nothing, and a command loads only the modules it needs —
startup time is a feature for a command that cron runs every minute.
"""

from typing import Any, Dict, Tuple

__version__ = "0.1.0"

# name -> (module, attribute)
_EXPORTS: Dict[str, Tuple[str, str]] = {
    "RuntimeConfig": ("core.config", "RuntimeConfig"),
    **{n: ("core.models", n) for n in (
        "Effect", "EffectType", "LimitWarning", "RecordKind", "RunState", "RunStatus",
        "StepPlan", "StepRecord", "StepStatus", "WaitReason", "WaitState", "KeptEvent")},
    **{n: ("core.policy", n) for n in (
        "DefaultEffectPolicy", "EffectPolicy", "NoRetryPolicy", "RetryPolicy")},
    **{n: ("core.runtime", n) for n in ("EffectOutcome", "NonRetryableError", "Runtime")},
    "WorkflowRegistry": ("core.spec", "WorkflowRegistry"),
    "WorkflowSpec": ("core.spec", "WorkflowSpec"),
    "AbstractRTError": ("errors", "AbstractRTError"),
    "verify_ledger_chain": ("storage.chain", "verify_ledger_chain"),
    "InMemoryRunStore": ("storage.memory", "InMemoryRunStore"),
    "InMemoryLedgerStore": ("storage.memory", "InMemoryLedgerStore"),
    "open_stores": ("storage", "open_stores"),
    "FileRunStore": ("storage.files", "FileRunStore"),
    "FileLedgerStore": ("storage.files", "FileLedgerStore"),
    "open_file_stores": ("storage.files", "open_file_stores"),
    # AbstractRuntime's names for the file stores.
    "JsonFileRunStore": ("storage.files", "FileRunStore"),
    "JsonlLedgerStore": ("storage.files", "FileLedgerStore"),
}


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{target[0]}"), target[1])
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [n for n in _EXPORTS if n not in ("JsonFileRunStore", "JsonlLedgerStore")] + ["__version__"]
