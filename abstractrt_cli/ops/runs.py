"""Commands that move runs: start, tick, tick --all, resume, cancel, limits."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from ..core.models import RunState, RunStatus
from ..errors import AbstractRTError, CorruptRunError, RunBusyError, UnknownWorkflowError
from .session import Outcome, Session, hinted

if TYPE_CHECKING:
    from .answers import AnswerReport, AnswerRule


def still_running_hint(run: RunState, why: str) -> List[str]:
    """Tell a person how to continue a run left ``running`` (by --max-steps or --no-tick)."""
    if run.status != RunStatus.RUNNING:
        return []
    return [f"run {run.run_id} is still running ({why}); continue it with "
            f"`abstractrt tick {run.run_id}`"]


def wake_workers(s: Session, run_id: str) -> None:
    """Tell waiting workers a run may move (or sleep until a new due time): after the
    command's checkpoint is committed. Only a hint (workers poll too), so a failed
    wake-up never fails a command whose work is done."""
    try:
        s.stores.wake(run_id)
    except AbstractRTError:
        pass


def did_you_mean(exc: UnknownWorkflowError, typed: str, known: List[str]) -> UnknownWorkflowError:
    """``start releas``: name the workflow that was probably meant."""
    import difflib

    close = difflib.get_close_matches(typed, known, n=3, cutoff=0.6)
    if close:
        guess = " or ".join(repr(c) for c in close)
        exc.with_hint(f"did you mean {guess}?" + (f" {exc.hint}" if exc.hint else ""))
    return exc


class StartResult:
    def __init__(self, run: RunState, answers: Optional["AnswerReport"] = None,
                 warnings: Optional[List[str]] = None) -> None:
        self.run = run
        self.answers = answers
        self.warnings = warnings if warnings is not None else []


@hinted
def start(s: Session, workflow_id: str, *, vars: Dict[str, Any], tick: bool = True,
          max_steps: int = 100, answers: Optional[List["AnswerRule"]] = None) -> StartResult:
    try:
        entry = s.workflows.entry(workflow_id)
    except UnknownWorkflowError as exc:
        raise did_you_mean(exc, workflow_id, list(s.workflows.registry)) from None
    s.creates_runs = True
    rt = s.runtime()
    if tick:  # one checkpoint for the start and its first wait (Runtime.start_and_tick)
        run = rt.start_and_tick(workflow=entry.spec, vars=vars, actor_id=s.actor(),
                                max_steps=max_steps)
        run_id = run.run_id
    else:
        run_id = rt.start(workflow=entry.spec, vars=vars, actor_id=s.actor())
        run = rt.get_state(run_id)
    wake_workers(s, run_id)
    report = None
    if answers is not None and tick:
        from .answers import answer_with_rules

        report = answer_with_rules(s, answers, scope_run_id=run_id, max_steps=max_steps)
        run = rt.get_state(run_id)
    why = f"stopped after --max-steps {max_steps}" if tick else "created with --no-tick"
    return StartResult(run=run, answers=report, warnings=still_running_hint(run, why))


@hinted
def tick(s: Session, ref: str, *, max_steps: int = 100) -> Outcome:
    run = s.load_run(ref)
    if run.status.is_terminal:
        return Outcome(run, [f"run {run.run_id[:8]} is {run.status.value}; nothing to do"])
    warnings = s.workflow_warnings(run)
    after = s.runtime().tick(run_id=run.run_id, max_steps=max_steps)
    return Outcome(after, warnings + still_running_hint(after, f"stopped after --max-steps {max_steps}"))


class TickAllSummary:
    """What ``tick --all`` did (plain classes here: a cron tick imports this module)."""

    def __init__(self) -> None:
        self.considered = self.moved = self.completed = self.waiting = 0
        self.failed = self.running = self.skipped_busy = self.reminded = 0
        self.errors: List[str] = []
        self.warnings: List[str] = []
        self.moved_runs: List[Dict[str, str]] = []

    def to_jsonable(self) -> Dict[str, Any]:
        return {
            "considered": self.considered, "moved": self.moved, "completed": self.completed,
            "waiting": self.waiting, "failed": self.failed, "running": self.running,
            "skipped_busy": self.skipped_busy, "errors": self.errors, "runs": self.moved_runs,
        }


def runnable(rt: Any, on_corrupt: Callable[[CorruptRunError], None]) -> List[Tuple[str, str]]:
    """The runs that can move now, as (run id, reason): the kernel decides (``tick --all``
    and the worker ask the same question)."""
    return [(r.run_id, r.reason) for r in rt.runnable(rt.now(), on_corrupt=on_corrupt)]


@hinted
def tick_all_plan(s: Session) -> Tuple[List[Any], List[str]]:
    """``tick --all --dry-run``: the runs that would move now and why (the kernel's
    ``runnable``: running, timer due, deadline due, retry due, child ended), and the
    problems met (corrupt runs); nothing is locked, ticked or written."""
    problems: List[str] = []

    def corrupt(exc: CorruptRunError) -> None:
        if str(exc) not in problems:
            problems.append(str(exc))

    rt = s.runtime(lock_timeout=0)
    return list(rt.runnable(rt.now(), on_corrupt=corrupt)), problems


@hinted
def tick_all(s: Session, *, max_steps: int = 100,
             on_progress: Optional[Callable[[int, int], None]] = None) -> TickAllSummary:
    """Progress every run that can move, skipping runs another process holds.

    One bad run never stalls the others: its problem is reported once, naming it, and
    the next run is ticked.
    """
    summary = TickAllSummary()
    rt = s.runtime(lock_timeout=0)  # never wait for a busy run: a later cron tick gets it
    problems: List[str] = []

    def report(message: str) -> None:
        if message not in problems:
            problems.append(message)

    def corrupt(exc: CorruptRunError) -> None:
        report(str(exc))

    candidates = runnable(rt, corrupt)
    total = summary.considered = len(candidates)
    seen_warnings: Set[str] = set()
    for i, (run_id, _reason) in enumerate(candidates):
        if on_progress:
            on_progress(i, total)
        try:
            before = s.run_store.load(run_id)
            if before is None or before.status.is_terminal:
                continue  # ended or removed since the query: nothing to do
            for w in s.workflow_warnings(before):
                if w not in seen_warnings:
                    seen_warnings.add(w)
                    summary.warnings.append(w)
            after = rt.tick(run_id=run_id, max_steps=max_steps)
        except RunBusyError:
            summary.skipped_busy += 1
            continue
        except AbstractRTError as exc:
            text = str(exc) if run_id in str(exc) else f"run {run_id}: {exc}"
            report(text + (f" ({exc.hint})" if exc.hint else ""))
            continue
        except Exception as exc:  # a bug in one run must not stop cron for every other run
            if os.environ.get("ABSTRACTRT_DEBUG"):
                raise
            report(f"run {run_id}: internal error: {type(exc).__name__}: {exc}")
            continue
        if (after.status, after.updated_at) == (before.status, before.updated_at):
            continue
        summary.moved += 1
        summary.moved_runs.append({"run_id": run_id, "status": after.status.value})
        if after.status == RunStatus.COMPLETED:
            summary.completed += 1
        elif after.status == RunStatus.WAITING:
            summary.waiting += 1
        elif after.status == RunStatus.FAILED:
            summary.failed += 1
        elif after.status == RunStatus.RUNNING:
            summary.running += 1
    runner = s.hook_runner
    if runner is not None and runner.hooks.get("on_wait"):
        # Re-run the on_wait hook for open waits whose reminder is due (remind_every).
        # Without an on_wait hook a reminder would reach nobody: no need to read the waits.
        try:
            summary.reminded = len(rt.remind_due())
        except AbstractRTError as exc:
            report(f"reminders: {exc}")
    summary.errors = problems
    if on_progress:
        on_progress(total, total)
    return summary


@hinted
def resume(s: Session, ref: str, payload: Dict[str, Any], *, wait_key: Optional[str] = None,
           max_steps: int = 100) -> Outcome:
    run = s.load_run(ref)
    rt = s.runtime()
    actor = s.actor()
    # Precise refusals (wait key, choices, schema, who may answer) before anything is loaded.
    rt.check_resume(run, wait_key=wait_key, payload=payload, actor_id=actor)
    warnings = s.workflow_warnings(run)
    after = rt.resume(run_id=run.run_id, payload=payload, wait_key=wait_key,
                      max_steps=max_steps, actor_id=actor)
    wake_workers(s, run.run_id)
    return Outcome(after, warnings + still_running_hint(after, f"stopped after --max-steps {max_steps}"))


class CancelResult:
    def __init__(self, run: RunState, cancelled_children: Optional[List[RunState]] = None,
                 warnings: Optional[List[str]] = None) -> None:
        self.run = run
        self.cancelled_children = cancelled_children if cancelled_children is not None else []
        self.warnings = warnings if warnings is not None else []


def _unfinished_descendants(s: Session, run_id: str) -> List[str]:
    out, todo, seen = [], [run_id], {run_id}
    while todo:
        for child in s.run_store.list_children(parent_run_id=todo.pop(0)):
            if child.run_id in seen:
                continue
            seen.add(child.run_id)
            todo.append(child.run_id)
            if not child.status.is_terminal:
                out.append(child.run_id)
    return out


@hinted
def cancel(s: Session, ref: str, *, reason: Optional[str] = None) -> CancelResult:
    run = s.load_run(ref)
    if run.status.is_terminal:
        return CancelResult(run, warnings=[
            f"run {run.run_id[:8]} is already {run.status.value}; left as it is"])
    children = _unfinished_descendants(s, run.run_id)
    after = s.runtime().cancel_run(run.run_id, reason=reason, actor_id=s.actor())
    cancelled = []
    for child_id in children:
        child = s.run_store.load(child_id)
        if child is not None and child.status == RunStatus.CANCELLED:
            cancelled.append(child)
    return CancelResult(after, cancelled)


@hinted
def limits(s: Session, ref: str, updates: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[RunState]]:
    """Show a run's limits, or change them (the kernel refuses nonsense, changing nothing).

    Also the run, if the change resumed it (lifting a reached limit does): else None."""
    run = s.load_run(ref)
    rt = s.runtime()
    moved = None
    if updates:
        before = (run.status, run.waiting.wait_key if run.waiting else None, run.effect_seq)
        run = rt.update_limits(run.run_id, updates, actor_id=s.actor())
        if (run.status, run.waiting.wait_key if run.waiting else None, run.effect_seq) != before:
            moved = run
    return {"run_id": run.run_id, "limits": run.vars.get("_limits") or {},
            "status": rt.get_limit_status(run.run_id), "run_status": run.status.value,
            "moved": moved is not None}, moved

