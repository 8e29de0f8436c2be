"""What each command does, as plain functions over the kernel and the stores.

The CLI parses arguments, calls one of these, and renders what comes back. Nothing here
prints or exits; errors are ``AbstractRTError`` subclasses carrying their exit code, with
a hint for people added here (the kernel's messages carry no command-line advice). Every
operation validates everything it can *before* it writes, so a refused command leaves
the store as it was.

Modules, by concern: ``session`` (the composition root: settings, stores, workflows,
runtime), ``runs`` (start, tick, resume, cancel, limits), ``events`` (emit), ``queries``
(workflows, waiting, runs, show, ledger), ``answers`` (answer rules and the answering
drivers), ``admin`` (reindex, config, shell completion).

Names are importable from ``abstractrt_cli.ops`` too, loaded on first use, so that a
command imports only the module it needs.
"""

from __future__ import annotations

from typing import Any, Dict

_WHERE: Dict[str, str] = {
    "Session": "session", "Outcome": "session", "MIN_PREFIX": "session",
    "start": "runs", "StartResult": "runs", "tick": "runs", "tick_all": "runs",
    "TickAllSummary": "runs", "runnable": "runs", "resume": "runs", "cancel": "runs",
    "CancelResult": "runs", "limits": "runs",
    "emit": "events", "EmitResult": "events", "list_events": "events", "prune_events": "events",
    "rehearse": "answers", "form_fields": "answers", "tick_all_plan": "runs",
    "list_workflows": "queries", "waiting": "queries", "list_runs": "queries",
    "RunsListing": "queries", "show": "queries", "ledger": "queries", "verify": "queries",
    "AnswerRule": "answers", "AnswerReport": "answers", "parse_answer_rules": "answers",
    "load_answer_rules": "answers", "answer_with_rules": "answers", "answer_script": "answers",
    "pending_prompts": "answers", "interpret_answer": "answers",
    "answer_interactively": "answers", "InteractiveReport": "answers",
    "reindex": "admin", "config_report": "admin", "complete_run_ids": "admin",
    "complete_workflow_ids": "admin",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
