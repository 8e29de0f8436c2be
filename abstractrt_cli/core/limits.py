"""Run limits (``vars["_limits"]``): their defaults, their status, and changing them.

One copy of the defaults: ``RuntimeConfig`` starts new runs from them, and a run whose
``_limits`` lacks a key reads the default.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import LimitsError
from .models import LimitWarning, RunState

DEFAULT_MAX_ITERATIONS = 25
DEFAULT_MAX_TOKENS = 32768
DEFAULT_WARN_PCT = 80

# Limit keys a run may change while it lives, and the types each accepts.
LIMIT_KEYS: Dict[str, tuple] = {
    "max_iterations": (int,),
    "current_iteration": (int,),
    "max_tokens": (int,),
    "max_output_tokens": (int, type(None)),
    "estimated_tokens_used": (int,),
    "max_history_messages": (int,),
    "warn_iterations_pct": (int,),
    "warn_tokens_pct": (int,),
}

# A maximum and the amount used that it must stay above.
_USED_BY = {"max_iterations": "current_iteration", "max_tokens": "estimated_tokens_used"}


def _int(limits: Dict[str, Any], key: str, default: int) -> int:
    value = limits.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value else default


def _pct(cur: int, mx: int) -> float:
    return round(cur / mx * 100, 1) if mx > 0 else 0.0


def limit_status(run: RunState) -> Dict[str, Any]:
    """Iterations, tokens and history: current, maximum, percentage, warning."""
    limits = run.vars.get("_limits") or {}
    cur_it = _int(limits, "current_iteration", 0)
    max_it = _int(limits, "max_iterations", DEFAULT_MAX_ITERATIONS)
    used = _int(limits, "estimated_tokens_used", 0)
    max_tok = _int(limits, "max_tokens", DEFAULT_MAX_TOKENS)
    warn_it = _int(limits, "warn_iterations_pct", DEFAULT_WARN_PCT)
    warn_tok = _int(limits, "warn_tokens_pct", DEFAULT_WARN_PCT)
    return {
        "iterations": {"current": cur_it, "max": max_it, "pct": _pct(cur_it, max_it),
                       "warning": _pct(cur_it, max_it) >= warn_it},
        "tokens": {"estimated_used": used, "max": max_tok, "pct": _pct(used, max_tok),
                   "warning": _pct(used, max_tok) >= warn_tok},
        "history": {"max_messages": limits.get("max_history_messages", -1)},
    }


def check_limits(run: RunState) -> List[LimitWarning]:
    """Limits at their warning threshold or exceeded (nodes decide what to do)."""
    st = limit_status(run)
    warnings: List[LimitWarning] = []
    it, tok = st["iterations"], st["tokens"]
    if it["max"] > 0:
        if it["current"] >= it["max"]:
            warnings.append(LimitWarning("iterations", "exceeded", it["current"], it["max"]))
        elif it["warning"]:
            warnings.append(LimitWarning("iterations", "warning", it["current"], it["max"]))
    if tok["max"] > 0 and tok["estimated_used"] > 0:
        if tok["estimated_used"] >= tok["max"]:
            warnings.append(LimitWarning("tokens", "exceeded", tok["estimated_used"], tok["max"]))
        elif tok["warning"]:
            warnings.append(LimitWarning("tokens", "warning", tok["estimated_used"], tok["max"]))
    return warnings


def count_llm_usage(run: RunState, result: Any) -> None:
    """An llm_call counts one iteration and adds its ``usage.total_tokens``."""
    limits = run.vars.setdefault("_limits", {})
    limits["current_iteration"] = _int(limits, "current_iteration", 0) + 1
    usage = result.get("usage") if isinstance(result, dict) else None
    tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
    if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
        limits["estimated_tokens_used"] = _int(limits, "estimated_tokens_used", 0) + tokens


def reached_limit(run: RunState) -> Optional[tuple]:
    """(limit, used, max) of a limit the run has reached and no person has let it pass
    at this amount yet; None otherwise."""
    limits = run.vars.get("_limits") or {}
    ack = limits.get("_acknowledged") or {}
    for limit, used_key, max_key, default in (
            ("iterations", "current_iteration", "max_iterations", DEFAULT_MAX_ITERATIONS),
            ("tokens", "estimated_tokens_used", "max_tokens", DEFAULT_MAX_TOKENS)):
        used = _int(limits, used_key, 0)
        maximum = _int(limits, max_key, default)
        if maximum > 0 and used >= maximum and ack.get(used_key) != used:
            return limit, used, maximum
    return None


def check_updates(updates: Dict[str, Any], run: Optional[RunState] = None) -> None:
    """Refuse unknown keys, wrong types, negative values and, given the run, a maximum
    not above what is used already or any change to a run that has ended."""
    for key, value in updates.items():
        if key not in LIMIT_KEYS:
            raise LimitsError(
                f"unknown limit {key!r}; known limits: {', '.join(sorted(LIMIT_KEYS))}")
        if isinstance(value, bool) or not isinstance(value, LIMIT_KEYS[key]):
            raise LimitsError(f"limit {key!r} must be an integer, not {value!r}")
        if isinstance(value, int) and value < 0 and key != "max_history_messages":
            raise LimitsError(f"limit {key!r} cannot be negative ({value})")
        if key == "max_history_messages" and isinstance(value, int) and value < -1:
            raise LimitsError(f"limit {key!r} must be -1 (no limit) or more, not {value}")
        if key.startswith("warn_") and isinstance(value, int) and value > 100:
            raise LimitsError(f"limit {key!r} is a percentage: 0-100, not {value}")
    if run is None:
        return
    if run.status.is_terminal:
        raise LimitsError(f"run {run.run_id} has ended ({run.status.value}): its limits "
                          "can no longer change")
    limits = run.vars.get("_limits") or {}
    for mx_key, used_key in _USED_BY.items():
        if mx_key in updates:
            used = updates.get(used_key, limits.get(used_key, 0)) or 0
            if updates[mx_key] <= used:
                raise LimitsError(f"limit {mx_key!r} must be above the {used_key} of run "
                                  f"{run.run_id} ({used}), not {updates[mx_key]}")
