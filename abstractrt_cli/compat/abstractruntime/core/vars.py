"""AbstractRuntime's ``RunState.vars`` conventions: namespaces and the ``_limits`` dict.

A convention, not a schema: ``context`` (user-facing inputs), ``scratchpad`` (working
memory), ``_runtime`` (host metadata), ``_temp`` (step-to-step values) and ``_limits``
(what ``RuntimeConfig`` starts every run with, and ``Runtime.update_limits`` changes).
"""

from __future__ import annotations

from typing import Any, Dict

from ....core.config import RuntimeConfig

CONTEXT = "context"
SCRATCHPAD = "scratchpad"
RUNTIME = "_runtime"
TEMP = "_temp"
LIMITS = "_limits"

__all__ = [
    "CONTEXT", "SCRATCHPAD", "RUNTIME", "TEMP", "LIMITS", "ensure_namespaces", "get_namespace",
    "get_context", "get_scratchpad", "get_runtime", "get_temp", "clear_temp", "get_limits",
    "ensure_limits",
]


def ensure_namespaces(vars: Dict[str, Any]) -> Dict[str, Any]:
    """Make the four namespaces exist as dicts (a non-dict value is replaced)."""
    for key in (CONTEXT, SCRATCHPAD, RUNTIME, TEMP):
        if not isinstance(vars.get(key), dict):
            vars[key] = {}
    return vars


def get_namespace(vars: Dict[str, Any], key: str) -> Dict[str, Any]:
    ensure_namespaces(vars)
    return vars[key]


def get_context(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, CONTEXT)


def get_scratchpad(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, SCRATCHPAD)


def get_runtime(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, RUNTIME)


def get_temp(vars: Dict[str, Any]) -> Dict[str, Any]:
    return get_namespace(vars, TEMP)


def clear_temp(vars: Dict[str, Any]) -> None:
    get_temp(vars).clear()


def get_limits(vars: Dict[str, Any]) -> Dict[str, Any]:
    """The ``_limits`` dict (a live reference), created with the runtime's defaults if missing."""
    if not isinstance(vars.get(LIMITS), dict):
        vars[LIMITS] = RuntimeConfig().to_limits_dict()
    return vars[LIMITS]


ensure_limits = get_limits
