"""The worker (PRODUCT §7): ``tick --all`` round after round, and in between a sleep until
the next due time, the interval, or a wake-up from ``start``/``resume``/``emit``.

A round is ``ops.runs.tick_all`` (the kernel's ``Runtime.runnable`` decides what can
move), over a session whose runtime is seen through two small wrappers:

- each run a round moves is reported as it moves (time, run, workflow, from -> to), not
  when the round ends;
- once a stop is asked for, no new step starts: every node handler the kernel is given
  checks the stop switch first and raises ``StopRequested`` instead of running. The step
  in flight (a node and its effect) finishes first, bounded by the step time limit; its
  outcome is in the ledger before the next node would start (record before proceeding),
  and the run's lock is released as the exception leaves the kernel. What was not yet
  checkpointed is rolled forward or re-run (pure steps only) by the next tick, exactly
  as after a crash at that instant (PRODUCT §5).

Sleeping is ``Stores.listen(timeout)``: NOTIFY on PostgreSQL, the data dir's wake file
on files; a signal during the sleep ends it at once. ``listen(0)`` is called once before
the first round, so a wake-up sent while that round runs is not missed.

Each round ends with a heartbeat in the store's audit part (``Stores.audit.beat``) that
``doctor`` and ``store info`` read; a worker that stops cleanly leaves a last beat with
``stopped_at``. ``--once`` keeps none: it is ``tick --all`` (cron may run it every minute).
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ..core.models import RunState
from ..core.spec import WorkflowRegistry, WorkflowSpec
from ..errors import AbstractRTError, StoreCapabilityError
from ..settings import Settings
from .runs import TickAllSummary, tick_all
from .session import Session

DEFAULT_INTERVAL = 5.0
# A timer is due when its time is at or before "now": wake a hair after it, not before.
DUE_MARGIN = 0.01
EXIT_SECOND_SIGNAL = 130


class StopRequested(BaseException):
    """A stop was asked for: raised where the next step would start, or in the sleep.

    A BaseException, so that no ``except Exception`` of the kernel (a node that raises
    fails its run) or of ``tick --all`` (one bad run never stalls the others) takes it
    for the failure of a run."""


class StopSwitch:
    """What the signal handlers set, and what the worker and its nodes check."""

    def __init__(self) -> None:
        self.requested = False
        self.reason: Optional[str] = None
        # True while the worker sleeps between rounds: a signal then ends the sleep at
        # once (nothing is in flight).
        self.idle = False

    def request(self, reason: str) -> None:
        self.requested = True
        self.reason = self.reason or reason

    def check(self) -> None:
        if self.requested:
            raise StopRequested()


def install_stop_signals(switch: StopSwitch, say: Callable[[str], None]) -> Callable[[], None]:
    """SIGTERM and SIGINT stop the worker gently; a second one exits at once with 130.

    ``say`` must be safe inside a signal handler (``os.write``: a handler may interrupt
    a write to the same buffered stream). Returns what restores the previous handlers."""

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if switch.requested:
            say(f"worker: second {name}: exiting now; the step in flight runs again later")
            os._exit(EXIT_SECOND_SIGNAL)
        switch.request(name)
        if switch.idle:
            raise StopRequested()
        say(f"worker: {name}: taking no new step; finishing the step in flight "
            f"(again to exit at once)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def write_stderr(message: str) -> None:
    """One line on stderr without Python's buffered streams (safe in a signal handler)."""
    try:
        os.write(2, (message.rstrip("\n") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


# ---------------------------------------------------------------------------- what moved


class MovedRun:
    """One run a round moved: from the state the query saw to the state the tick left."""

    def __init__(self, *, at: str, before: RunState, after: RunState, reason: str) -> None:
        self.at = at
        self.run_id = after.run_id
        self.workflow_id = after.workflow_id
        self.before = before.status.value
        self.after = after.status.value
        self.before_wait = _wait_reason(before)
        self.after_wait = _wait_reason(after)
        self.reason = reason  # why it could move: running, timer due, child ended...
        self.node = after.current_node
        self.error = after.error if after.status.value == "failed" else None

    def to_jsonable(self) -> Dict[str, Any]:
        doc = {"at": self.at, "run_id": self.run_id, "workflow_id": self.workflow_id,
               "from": self.before, "to": self.after, "reason": self.reason, "node": self.node}
        if self.before_wait:
            doc["from_wait"] = self.before_wait
        if self.after_wait:
            doc["to_wait"] = self.after_wait
        if self.error:
            doc["error"] = self.error
        return doc


def _wait_reason(run: RunState) -> Optional[str]:
    w = run.waiting
    return w.reason.value if run.status.value == "waiting" and w is not None else None


class _ReportingRuntime:
    """The runtime ``tick_all`` drives, seen through: the runs it moves are reported as
    they move, and no run is ticked once a stop was asked for."""

    def __init__(self, rt: Any, switch: StopSwitch, on_moved: Callable[[MovedRun], None]) -> None:
        self._rt = rt
        self._switch = switch
        self._on_moved = on_moved
        self._found: Dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rt, name)

    def runnable(self, now: Optional[datetime] = None, *, on_corrupt: Any = None) -> List[Any]:
        found = self._rt.runnable(now, on_corrupt=on_corrupt)
        self._found = {r.run_id: r for r in found}
        return found

    def tick(self, *, run_id: str, max_steps: int = 100, **kw: Any) -> RunState:
        self._switch.check()
        after = self._rt.tick(run_id=run_id, max_steps=max_steps, **kw)
        seen = self._found.pop(run_id, None)
        if seen is not None:
            before = seen.run
            if (after.status, after.updated_at) != (before.status, before.updated_at):
                self._on_moved(MovedRun(at=_now_iso(), before=before, after=after,
                                        reason=seen.reason))
        return after


def _guarded(handler: Callable[..., Any], switch: StopSwitch) -> Callable[..., Any]:
    @wraps(handler)
    def node(run: Any, ctx: Any) -> Any:
        if switch.requested:
            raise StopRequested()  # before the step starts: nothing of it has happened
        return handler(run, ctx)

    return node


class _SpecView:
    """A workflow look-alike (not a WorkflowSpec) with guarded nodes; the rest as it is."""

    def __init__(self, spec: Any, nodes: Dict[str, Any]) -> None:
        self._spec = spec
        self.workflow_id = spec.workflow_id
        self.entry_node = spec.entry_node
        self.nodes = nodes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spec, name)


class _StoppingRegistry(WorkflowRegistry):
    """The session's workflows (the same entries: sources, fingerprints, handlers,
    policies, step time limits), each handed out with nodes that check the stop switch."""

    def __init__(self, inner: WorkflowRegistry, switch: StopSwitch) -> None:
        super().__init__()
        for wid in inner:
            entry = inner.entry(wid)
            if entry is not None:
                self._entries[wid] = entry
        self._switch = switch
        self._guarded: Dict[str, Any] = {}

    def get(self, workflow_id: str) -> Any:
        spec = super().get(workflow_id)
        if spec is None:
            return None
        got = self._guarded.get(workflow_id)
        if got is None:
            nodes = {nid: _guarded(fn, self._switch) for nid, fn in spec.nodes.items()}
            if isinstance(spec, WorkflowSpec):
                got = WorkflowSpec(spec.workflow_id, spec.entry_node, nodes)
            else:
                got = _SpecView(spec, nodes)
            self._guarded[workflow_id] = got
        return got

    def get_or_raise(self, workflow_id: str) -> Any:
        super().get_or_raise(workflow_id)  # the precise error, if unknown
        return self.get(workflow_id)


class WorkerSession(Session):
    """The session of a worker: its runtimes report moves and honour a stop, and its
    workflows are loaded again when the workflows directory changes."""

    # A worker may start before any run exists (a systemd unit at boot): it creates the
    # store as ``start`` would, so it sees the runs made after it started.
    creates_runs = True

    def __init__(self, settings: Settings, *, switch: StopSwitch,
                 on_moved: Callable[[MovedRun], None]) -> None:
        super().__init__(settings)
        self.switch = switch
        self.on_moved = on_moved
        self._workflows_seen: Optional[Tuple[Any, ...]] = None

    def runtime(self, *, lock_timeout: Optional[float] = None) -> Any:
        rt = super().runtime(lock_timeout=lock_timeout)
        registry = rt.workflow_registry
        if isinstance(registry, WorkflowRegistry):
            rt.set_workflow_registry(_StoppingRegistry(registry, self.switch))
        return _ReportingRuntime(rt, self.switch, self.on_moved)

    def refresh_workflows(self) -> bool:
        """Load the workflows again if a file of the directory changed (new code, a new
        workflow) since they were loaded; True if they were."""
        seen = workflows_signature(self.settings.workflows_dir)
        changed = self._workflows_seen is not None and seen != self._workflows_seen
        self._workflows_seen = seen
        if changed:
            self.__dict__.pop("workflows", None)
        return changed


def workflows_signature(directory: Path) -> Tuple[Any, ...]:
    """What changes when a workflow file is added, removed or edited (one scandir)."""
    try:
        with os.scandir(directory) as it:
            return tuple(sorted((e.name, st.st_mtime_ns, st.st_size, st.st_ino)
                                for e in it if e.name.endswith(".py")
                                for st in (e.stat(follow_symlinks=True),)))
    except OSError:
        return ()


# ---------------------------------------------------------------------------- the worker


class ProblemLog:
    """Problems and warnings, each shown when it appears, not again every round while it
    lasts; shown again if it comes back after a round without it. Keeps only those of the
    last round, however long the worker runs."""

    def __init__(self) -> None:
        self._last: Set[str] = set()

    def fresh(self, messages: List[str]) -> List[str]:
        now = list(dict.fromkeys(messages))
        out = [m for m in now if m not in self._last]
        self._last = set(now)
        return out


class Worker:
    """Rounds of ``tick --all`` until stopped; see the module docstring."""

    def __init__(self, settings: Settings, *, interval: float = DEFAULT_INTERVAL,
                 max_steps: int = 100, on_moved: Callable[[MovedRun], None] = lambda m: None,
                 say: Callable[[str], None] = write_stderr,
                 switch: Optional[StopSwitch] = None) -> None:
        self.switch = switch or StopSwitch()
        self.s = WorkerSession(settings, switch=self.switch, on_moved=self._moved)
        self.interval = float(interval)
        self.max_steps = max_steps
        self.on_moved = on_moved
        self.say = say
        self.worker_id = str(uuid.uuid4())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = _now_iso()
        self.rounds = 0
        self.moved = 0
        self.round_moved: List[MovedRun] = []  # this round's, as they moved
        self._problems = ProblemLog()
        self._warnings = ProblemLog()
        self._store_problem: Optional[str] = None
        self._audit: Any = None
        self._audit_checked = False

    def _moved(self, moved: MovedRun) -> None:
        self.round_moved.append(moved)
        self.on_moved(moved)

    def close(self) -> None:
        self.s.close()

    # -- one round

    def round(self) -> TickAllSummary:
        """One ``tick --all`` (after loading the workflows again if they changed); its
        problems and warnings are shown once each, and its hooks' warnings."""
        self.round_moved = []
        self.s.refresh_workflows()
        try:
            summary = tick_all(self.s, max_steps=self.max_steps)
        finally:
            for line in self.s.take_hook_warnings():
                self.say(line)
        self.rounds += 1
        self.moved += summary.moved
        for line in self._warnings.fresh(summary.warnings):
            self.say(line)
        for line in self._problems.fresh(summary.errors):
            self.say(f"error: {line}")
        return summary

    def once(self) -> Tuple[TickAllSummary, bool]:
        """``worker --once``: one round, as ``tick --all``; (its summary, whether a stop
        cut it short). Its problems and warnings are in the summary, not shown here."""
        self.round_moved = []
        try:
            summary = tick_all(self.s, max_steps=self.max_steps)
        except StopRequested:
            return partial_summary(self.round_moved), True
        finally:
            for line in self.s.take_hook_warnings():
                self.say(line)
        return summary, False

    def next_sleep(self, summary: Optional[TickAllSummary]) -> float:
        """Seconds until the next round: none while a run is left running (it stopped at
        --max-steps), else until the earliest due time, at most the interval."""
        if summary is not None and summary.running:
            return 0.0
        due = self.s.stores.runs.earliest_due()
        if due is None:
            return self.interval
        left = (due - datetime.now(timezone.utc)).total_seconds()
        # A due time already past is a run this round could not move (busy elsewhere, or
        # it errs): wait the interval for it, never spin.
        return min(self.interval, left + DUE_MARGIN) if left > 0 else self.interval

    def sleep(self, seconds: float) -> bool:
        """Wait for a wake-up, at most ``seconds``; a signal ends it at once. True if a
        wake-up came."""
        switch = self.switch
        switch.idle = True
        try:
            switch.check()  # a signal that came just before we went idle
            try:
                return self.s.stores.listen(seconds)
            except AbstractRTError as exc:  # the listening connection was lost: poll
                self._problem(exc)
                time.sleep(seconds)
                return False
        finally:
            switch.idle = False

    # -- heartbeats

    @property
    def audit(self) -> Any:
        if not self._audit_checked:
            self._audit_checked = True
            try:
                self._audit = self.s.stores.need("audit")
            except StoreCapabilityError as exc:
                self.say(f"warning: {exc.message}: this worker keeps no heartbeat")
        return self._audit

    def heartbeat(self, *, stopped: bool = False) -> Dict[str, Any]:
        now = _now_iso()
        beat: Dict[str, Any] = {
            "worker_id": self.worker_id, "host": self.host, "pid": self.pid,
            "interval": self.interval, "max_steps": self.max_steps,
            "started_at": self.started_at, "beat_at": now, "last_round_at": now,
            "rounds": self.rounds, "moved": self.moved, "version": _version(),
        }
        if stopped:
            beat["stopped_at"] = now
            beat["stopped_by"] = self.switch.reason
        if self.audit is not None:
            self.audit.beat(beat)
        return beat

    def retire_dead_neighbours(self) -> List[str]:
        """Mark stopped the heartbeats left by workers of this host whose process is gone
        (killed, crashed): ``doctor`` then does not report them as stale for ever."""
        if self.audit is None:
            return []
        retired = []
        for beat in self.audit.heartbeats():
            pid = beat.get("pid")
            if (beat.get("stopped_at") or beat.get("host") != self.host or not isinstance(pid, int)
                    or pid == self.pid or _alive(pid)):
                continue
            self.audit.beat({**beat, "stopped_at": _now_iso(),
                             "stopped_by": f"gone (pid {pid} not running, seen by worker "
                                           f"{self.worker_id})"})
            retired.append(str(beat.get("worker_id")))
        return retired

    # -- the loop

    def run(self) -> None:
        """Rounds until a stop (``StopRequested`` ends it). An error of the first round
        is raised (a wrong URL, a store that cannot be opened: exit 1); later ones are
        shown once and retried after the interval: a database restart must not end it."""
        self.s.stores.listen(0)  # listening before the first query: no wake-up is missed
        self.retire_dead_neighbours()
        while True:
            self.switch.check()
            try:
                summary = self.round()
                self.heartbeat()
                delay = self.next_sleep(summary)
                if self._store_problem is not None:
                    self._store_problem = None
                    self.say("worker: the store answers again")
            except AbstractRTError as exc:
                if self.rounds == 0:
                    raise
                self._problem(exc)
                delay = self.interval
            if delay > 0:
                self.sleep(delay)

    def stopped(self) -> None:
        """The last heartbeat, after a stop (best effort: we are leaving anyway)."""
        try:
            self.heartbeat(stopped=True)
        except AbstractRTError:
            pass

    def _problem(self, exc: AbstractRTError) -> None:
        text = f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        if text != self._store_problem:
            self._store_problem = text
            self.say(f"{text}; retrying every {self.interval:g} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _version() -> str:
    from .. import __version__

    return __version__


def describe_wakeups(stores: Any) -> str:
    """How this store wakes a sleeping worker (for the start line)."""
    if "notify" in (stores.capabilities or ()):
        return "LISTEN/NOTIFY"
    if getattr(stores.runs, "listen", None) is not None:
        return "the data dir's wake file"
    return "polling"


def partial_summary(moved: List[MovedRun], considered: int = 0) -> TickAllSummary:
    """What a round stopped half-way did (``worker --once`` stopped by a signal)."""
    summary = TickAllSummary()
    summary.considered = considered
    for m in moved:
        summary.moved += 1
        summary.moved_runs.append({"run_id": m.run_id, "status": m.after})
        if m.after in ("completed", "waiting", "failed", "running"):
            setattr(summary, m.after, getattr(summary, m.after) + 1)
    return summary


def heartbeat_states(beats: List[Dict[str, Any]], *, now: Optional[datetime] = None,
                     min_stale: float = 60.0) -> Iterator[Dict[str, Any]]:
    """Each heartbeat with ``state``: ``stopped`` (left cleanly, or found dead), ``stale``
    (no beat for 3 intervals, at least ``min_stale`` s) or ``running`` (for ``store
    info`` and ``doctor``)."""
    from ..core.timeutil import parse_timestamp

    now = now or datetime.now(timezone.utc)
    for beat in beats:
        state = "running"
        if beat.get("stopped_at"):
            state = "stopped"
        else:
            try:
                age = (now - parse_timestamp(beat.get("beat_at"))).total_seconds()
                interval = float(beat.get("interval") or 0)
            except (TypeError, ValueError):
                state = "stale"
            else:
                if age > max(3 * interval, min_stale):
                    state = "stale"
        yield {**beat, "state": state}
