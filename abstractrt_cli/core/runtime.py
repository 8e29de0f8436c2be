"""The durable graph runner: the lifecycle API over a run store and a ledger store.

``start`` creates a run (its first ledger record says who started it, from which
workflow, with which vars); ``tick`` progresses it until it blocks, ends, or runs out of
steps; ``resume`` hands a waiting run its payload and ticks it on; ``cancel_run`` and
``update_limits`` are operator actions. Each takes the run's lock, rolls forward what
the ledger holds beyond the run's checkpoint (``core/replay.py``) and records before
proceeding. The work on a locked run is ``core/loop.py``; the built-in effects are
``core/effects.py``; limits ``core/limits.py``; AbstractRuntime look-alikes
``core/compat.py``.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

from ..errors import (
    PayloadError,
    PromptMovedOnError,
    RunBusyError,
    LedgerSeqError,
    RunNotFailedError,
    RunNotWaitingError,
    StoreCapabilityError,
    UnknownNodeError,
    UnknownRunError,
    UnknownWorkflowError,
    WaitKeyMismatchError,
)
from .answers import normalise_payload
from .waits import check_actor, validate_payload
from .config import RuntimeConfig
from .dc import FACTORY, Plain
from .effects import BUILTIN_EFFECTS
from .integrity import json_copy
from .limits import check_limits, check_updates, limit_status, reached_limit
from .loop import RunOp, open_op, set_nested
from .output import ArtifactAccess
from .models import (
    KeptEvent,
    LimitWarning,
    RecordKind,
    RunState,
    RunStatus,
    StepStatus,
    WaitReason,
    effect_type_name,
)
from .outcome import EffectOutcome, NonRetryableError
from .policy import DefaultEffectPolicy
from .replay import Replay
from .spec import WorkflowEntry, WorkflowRegistry

Clock = Callable[[], datetime]
EffectHandler = Callable[..., Any]

__all__ = ["Runtime", "EffectOutcome", "NonRetryableError", "Runnable", "EmitReport", "set_nested"]


class Runnable(NamedTuple):
    """A run that can move now, and why (``tick --all --dry-run`` prints the reason)."""

    run_id: str
    reason: str  # "running" | "timer due" | "retry due" | "deadline due" | "child ended"
    run: RunState


DEFAULT_EVENT_TTL = timedelta(days=7)


@dataclass(init=False, repr=False, eq=False)
class EmitReport(Plain):
    """What ``emit`` did: the kept event (if kept), the runs it resumed, the busy ones."""

    event: Optional[KeptEvent]
    delivered: List[RunState] = field(default_factory=list)
    busy: List[str] = field(default_factory=list)

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        event: Optional[KeptEvent],
        delivered: List[RunState] = FACTORY,
        busy: List[str] = FACTORY,
    ) -> None:
        self.event = event
        self.delivered = list() if delivered is FACTORY else delivered
        self.busy = list() if busy is FACTORY else busy
    # --- end of the written-out __init__ ---


class DefaultRunContext:
    """The ``ctx`` node handlers get: the time, and ``ctx.artifacts`` when the store
    keeps artifacts."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.run_id: Optional[str] = None  # the run whose step is being run
        self.artifacts: Optional[ArtifactAccess] = None

    def now_iso(self) -> str:
        return self.clock().isoformat()

    def now(self) -> datetime:
        return self.clock()


def _utc_clock() -> datetime:
    return datetime.now(timezone.utc)


class Runtime:
    """Durable graph runner over a run store and a ledger store (``storage/base.py``).

    The step time limit (``RuntimeConfig.step_timeout``) is enforced with ``SIGALRM``,
    so only when the runtime is driven from the main thread (as every command is).
    """

    def __init__(
        self,
        *,
        run_store: Any,
        ledger_store: Any,
        effect_handlers: Optional[Dict[Any, EffectHandler]] = None,
        context: Optional[Any] = None,
        workflow_registry: Optional[Any] = None,
        effect_policy: Optional[Any] = None,
        config: Optional[RuntimeConfig] = None,
        clock: Optional[Clock] = None,
        event_store: Optional[Any] = None,
        on_transition: Optional[Callable[[str, RunState], None]] = None,
        artifact_store: Optional[Any] = None,
        log_store: Optional[Any] = None,
    ) -> None:
        self._run_store = run_store
        self._ledger = ledger_store
        self._events = event_store
        # Called with ("wait" | "complete" | "fail", run) after each such checkpoint is
        # durable and the run's lock released (notification hooks; never inside a lock).
        self._on_transition = on_transition
        self._clock: Clock = clock or _utc_clock
        self._ctx = context or DefaultRunContext(self._clock)
        self._artifacts = artifact_store
        self._logs = log_store
        if artifact_store is not None and isinstance(self._ctx, DefaultRunContext):
            ctx = self._ctx
            ctx.artifacts = ArtifactAccess(artifact_store, lambda: ctx.run_id)
        self._registry = workflow_registry
        # Without a policy, llm_call gets 3 attempts (backoff 1 s, 2 s): a model server
        # that is busy for a moment should not fail a run. Everything else gets one.
        self._policy = effect_policy or DefaultEffectPolicy(effect_max_attempts={"llm_call": 3})
        self._config = config or RuntimeConfig()
        self._builtins = dict(BUILTIN_EFFECTS)
        self._handlers: Dict[str, EffectHandler] = {}
        for etype, fn in (effect_handlers or {}).items():
            self.register_effect_handler(etype, fn)

    # ------------------------------------------------------------------ accessors

    @property
    def run_store(self) -> Any:
        return self._run_store

    @property
    def ledger_store(self) -> Any:
        return self._ledger

    @property
    def event_store(self) -> Optional[Any]:
        return self._events

    @property
    def artifact_store(self) -> Optional[Any]:
        return self._artifacts

    @property
    def log_store(self) -> Optional[Any]:
        return self._logs

    @property
    def config(self) -> RuntimeConfig:
        return self._config

    @property
    def effect_policy(self) -> Any:
        return self._policy

    def set_effect_policy(self, policy: Any) -> None:
        self._policy = policy

    @property
    def workflow_registry(self) -> Optional[Any]:
        return self._registry

    def set_workflow_registry(self, registry: Any) -> None:
        self._registry = registry

    def register_effect_handler(self, effect_type: Any, handler: EffectHandler) -> None:
        """Register (or replace) the handler of an effect type; any string type is allowed."""
        name = effect_type_name(effect_type)
        self._handlers[name] = handler
        self._builtins.pop(name, None)

    def now(self) -> datetime:
        return self._clock()

    def _now_iso(self) -> str:
        return self._clock().isoformat()

    # ------------------------------------------------------------------ lifecycle

    def start(
        self,
        *,
        workflow: Any,
        vars: Optional[Dict[str, Any]] = None,
        actor_id: Optional[str] = None,
        session_id: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        run_id: Optional[str] = None,
    ) -> str:
        """Create a run at the workflow's entry node (not ticked) and return its id.

        Its ledger starts with a ``start`` record: who started it, from which workflow
        (and fingerprint of its code), with which vars."""
        op = self._new_run(workflow=workflow, vars=vars, actor_id=actor_id,
                           session_id=session_id, parent_run_id=parent_run_id, run_id=run_id)
        op.save()
        return op.run.run_id

    def start_and_tick(
        self,
        *,
        workflow: Any,
        vars: Optional[Dict[str, Any]] = None,
        actor_id: Optional[str] = None,
        session_id: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        run_id: Optional[str] = None,
        max_steps: int = 100,
    ) -> RunState:
        """``start`` then ``tick``, with one checkpoint where the two would make two: the
        start record and the first wait's record share one ledger write, and the run file
        is first written at that wait (or end) — or before the first effect that can act
        on the world, so a crash still loses at most the step in flight."""
        op = self._new_run(workflow=workflow, vars=vars, actor_id=actor_id,
                           session_id=session_id, parent_run_id=parent_run_id, run_id=run_id)
        wf = self._workflow_for(op.run, workflow)
        with self._locked(op.run.run_id, new=op):
            op.unsaved = True
            op.run_loop(wf, max_steps)
        self._propagate_to_parents(op.run, max_steps)
        return op.run

    def _new_run(self, *, workflow: Any, vars: Optional[Dict[str, Any]], actor_id: Optional[str],
                 session_id: Optional[str], parent_run_id: Optional[str],
                 run_id: Optional[str]) -> RunOp:
        """A new run in memory with its start record (not yet written)."""
        if vars is not None and not isinstance(vars, dict):
            raise PayloadError("vars must be a JSON object")
        if run_id is not None and (self._run_store.load(run_id) is not None
                                   or self._ledger.head(run_id)[0] > 0):
            raise ValueError(f"a run with id {run_id!r} already exists")
        run_vars = dict(vars or {})
        run_vars.setdefault("_limits", self._config.to_limits_dict())
        run = RunState.new(
            workflow_id=workflow.workflow_id, entry_node=workflow.entry_node, vars=run_vars,
            actor_id=actor_id, session_id=session_id, parent_run_id=parent_run_id,
            run_id=run_id,
        )
        entry = self._entry(workflow.workflow_id)
        if entry is not None:
            run.workflow_source = entry.source
            run.workflow_fingerprint = entry.fingerprint
        run.created_at = run.updated_at = self._now_iso()
        op = RunOp(self, run, _EMPTY_REPLAY(), (0, None), None)
        op.transitions = []
        op.dirty = True
        # Not written yet: the first checkpoint writes it (with the first wait's record).
        op.append(kind=RecordKind.START, status=StepStatus.STARTED, actor_id=actor_id,
                  result={"workflow_id": run.workflow_id, "entry_node": run.current_node,
                          "vars": run_vars,
                          "workflow_fingerprint": run.workflow_fingerprint,
                          "workflow_source": run.workflow_source,
                          "parent_run_id": parent_run_id},
                  durable=False, covers=True)
        return op

    def get_state(self, run_id: str) -> RunState:
        run = self._run_store.load(run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def get_ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return self._ledger.list(run_id)

    @contextmanager
    def _locked(self, run_id: str, new: Optional[RunOp] = None) -> Iterator[RunOp]:
        """Hold the run's lock; the op checks the ledger and replays what is beyond (or,
        for a run being created, is ``new``). Transitions are reported after the lock is
        released."""
        with self._run_store.lock(run_id, timeout=self._config.lock_timeout):
            op = new if new is not None else open_op(self, run_id)
            try:
                yield op
                op.finish()
            finally:
                transitions, op.transitions = op.transitions, []
        if self._on_transition is not None:
            for event, run in transitions:
                self._on_transition(event, run)

    def tick(self, *, run_id: str, workflow: Optional[Any] = None, max_steps: int = 100) -> RunState:
        """Progress a run until it blocks, ends, or has taken ``max_steps`` steps."""
        with self._locked(run_id) as op:
            wf = None if op.run.status.is_terminal and not op.replay else \
                self._workflow_for(op.run, workflow)
            if wf is None:
                op.roll_forward_ends()
            else:
                op.tick(wf, max_steps)
        run = op.run
        self._propagate_to_parents(run, max_steps)
        return run

    def resume(
        self,
        *,
        run_id: str,
        payload: Dict[str, Any],
        wait_key: Optional[str] = None,
        workflow: Optional[Any] = None,
        max_steps: int = 100,
        actor_id: Optional[str] = None,
        expect_step: Optional[int] = None,
    ) -> RunState:
        """Unblock a waiting run with ``payload`` and tick it on.

        Refused, with nothing changed, when the run is not waiting, the wait key differs,
        the payload is not a JSON object, or an answer is not among the allowed choices.
        ``expect_step`` (the ``effect_seq`` of the wait that was shown to someone) refuses
        the resume if the run has moved on meanwhile — even to a prompt with the same key.
        A resume the ledger holds beyond the checkpoint (a crash after it was recorded)
        is rolled forward first, so the same prompt never takes a second answer.
        """
        if not isinstance(payload, dict):
            raise PayloadError(f"payload must be a JSON object, not {type(payload).__name__}")
        with self._locked(run_id) as op:
            wf = self._workflow_for(op.run, workflow)
            was_waiting = op.run.status == RunStatus.WAITING
            op.roll_forward()
            if was_waiting and op.run.status == RunStatus.RUNNING:
                # The ledger shows this wait answered already (recorded before a crash):
                # carry that answer on, and refuse this one.
                op.run_loop(wf, max_steps)
                raise _after_finish(op, PromptMovedOnError(op.run.run_id))
            if op.replay.has_effects() and op.run.status == RunStatus.RUNNING:
                op.run_loop(wf, 0)  # catch up with the effects a crash left recorded
                op.roll_forward()
            run = op.run
            if expect_step is not None and run.effect_seq != expect_step:
                raise _after_finish(op, PromptMovedOnError(run.run_id))
            try:
                payload = self._check_resumable(run, wait_key, payload, actor_id=actor_id)
            except Exception as exc:
                raise _after_finish(op, exc) from None
            op.apply_resume(payload, actor_id=actor_id, source="resume")
            op.run_loop(wf, max_steps)
        run = op.run
        self._propagate_to_parents(run, max_steps)
        return run

    def check_resume(self, run: RunState, *, wait_key: Optional[str], payload: Any,
                     actor_id: Optional[str] = None) -> Dict[str, Any]:
        """The payload ``resume`` would store (choices matched), or the error it would
        raise for this run, payload and actor (schema, allowed actors), changing nothing."""
        if not isinstance(payload, dict):
            raise PayloadError(f"payload must be a JSON object, not {type(payload).__name__}")
        return self._check_resumable(run, wait_key, payload, actor_id=actor_id)

    def cancel_run(
        self, run_id: str, *, reason: Optional[str] = None, actor_id: Optional[str] = None
    ) -> RunState:
        """Cancel a running or waiting run and, after it, its unfinished children.

        A terminal run is returned as it is."""
        with self._locked(run_id) as op:
            op.roll_forward_ends()
            if not op.run.status.is_terminal:
                op.cancel(reason, actor_id)
        run = op.run
        for child in self._run_store.list_children(parent_run_id=run_id):
            if not child.status.is_terminal:
                self.cancel_run(child.run_id, reason=f"parent run {run_id} was cancelled",
                                actor_id=actor_id)
        # A parent waiting on this run can never get its result: fail it now, naming us.
        self._propagate_to_parents(run, 100)
        return run

    def emit(self, key: str, payload: Dict[str, Any], *, ttl: Optional[timedelta] = DEFAULT_EVENT_TTL,
             keep: bool = True, actor_id: Optional[str] = None, max_steps: int = 100) -> EmitReport:
        """Deliver an event to every run waiting on ``key`` and keep it (for ``ttl``) for
        runs that reach ``wait_event key`` later (PRODUCT §8).

        Every receiving run's schema is checked before anything is delivered or kept: if
        one refuses, the error names it and nothing changes. A run busy in another
        process is skipped (reported); it finds the kept event when it next waits."""
        if not isinstance(payload, dict):
            raise PayloadError(f"payload must be a JSON object, not {type(payload).__name__}")
        if keep and self._events is None:
            raise StoreCapabilityError("this store keeps no events: emit with keep=False")
        waiting = self._run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.EVENT,
                                            wait_key=key)
        for run in waiting:
            self.check_resume(run, wait_key=key, payload=payload)
        now = self._clock()
        event = None
        if keep:
            event = KeptEvent(event_id=str(uuid.uuid4()), key=key, payload=payload,
                              emitted_at=now.isoformat(),
                              expires_at=(now + (ttl if ttl is not None else DEFAULT_EVENT_TTL)).isoformat(),
                              actor_id=actor_id)
            self._events.put(event)
        report = EmitReport(event=event)
        for before in waiting:
            try:
                with self._locked(before.run_id) as op:
                    op.roll_forward()
                    run = op.run
                    wait = run.waiting
                    if (run.status != RunStatus.WAITING or wait is None
                            or wait.reason != WaitReason.EVENT or wait.wait_key != key):
                        continue  # it moved on meanwhile (the kept event may have reached it)
                    wf = self._workflow_for(run, None)
                    if event is not None:
                        # The run may have taken this event from the mailbox already, in
                        # another process, and come back to a wait on the same key: it
                        # takes the oldest kept event it has not received (this one or an
                        # older one), so that no event reaches a run twice.
                        if not op.deliver_kept_event():
                            continue
                    else:
                        checked = self._check_resumable(run, key, payload, actor_id=actor_id)
                        op.apply_resume(checked, actor_id=actor_id, source="emit")
                    op.run_loop(wf, max_steps)
                report.delivered.append(op.run)
                self._propagate_to_parents(op.run, max_steps)
            except RunBusyError:
                report.busy.append(before.run_id)
        return report

    def retry(self, run_id: str, *, from_node: Optional[str] = None,
              actor_id: Optional[str] = None, max_steps: int = 100) -> RunState:
        """Put a failed run back to running at its failed node (or enter ``from_node`` as a
        new visit) and tick it. Effects recorded before the failure are not run again;
        only a run that failed can be retried (RunNotFailedError, nothing changed)."""
        with self._locked(run_id) as op:
            wf = self._workflow_for(op.run, None)
            op.roll_forward_ends()
            run = op.run
            if run.status != RunStatus.FAILED:
                raise _after_finish(op, RunNotFailedError(run.run_id, run.status.value))
            if from_node is not None and from_node not in (wf.nodes if isinstance(wf.nodes, dict) else {}):
                raise _after_finish(op, UnknownNodeError(wf.workflow_id, from_node))
            was = {"error": run.error, "node": run.current_node}
            op.apply_retry(from_node, from_node is not None)
            op.append(kind=RecordKind.RETRY, status=StepStatus.RESUMED, actor_id=actor_id,
                      result={"from_node": run.current_node, "new_visit": from_node is not None,
                              "was": was}, durable=False)
            op.run_loop(wf, max_steps)
        run = op.run
        self._propagate_to_parents(run, max_steps)
        return run

    def state_at(self, run_id: str, seq: int) -> RunState:
        """The run's state right after its ledger record ``seq``, rebuilt by replaying its
        history from the ``start`` record through the workflow's code (recorded effects
        are reused, never run). Needs the run's workflow and a ledger that starts with a
        ``start`` record (runs made by this version of abstractrt)."""
        source = self.get_state(run_id)
        records = self._ledger.list(run_id)
        if not 0 <= seq < len(records):
            raise LedgerSeqError(run_id, seq, len(records))
        first = records[0]
        if first.get("kind") not in ("start", "fork"):
            raise LedgerSeqError(run_id, seq, len(records),
                                 why="its ledger does not start with a start record (an older run)")
        wf = self._workflow_for(source, None)
        if first.get("kind") == "fork":
            base = RunState.from_dict((first.get("result") or {}).get("state") or {})
        else:
            started = first.get("result") or {}
            base = RunState.new(workflow_id=source.workflow_id,
                                entry_node=started.get("entry_node") or wf.entry_node,
                                vars=json_copy(started.get("vars") or {}),
                                actor_id=source.actor_id, session_id=source.session_id,
                                parent_run_id=source.parent_run_id, run_id=run_id)
            base.created_at = source.created_at
        base.workflow_source, base.workflow_fingerprint = source.workflow_source, source.workflow_fingerprint
        op = RunOp(self, base, Replay(records[1:seq + 1]), (seq + 1, records[seq].get("record_hash")),
                   records[seq].get("state_digest"))
        op.rebuilding = True
        while op.replay.peek() is not None:
            done = op.replay.consumed()
            op.roll_forward()
            if op.run.status == RunStatus.RUNNING and op.replay.peek() is not None:
                op.run_loop(wf, 0)
            if op.replay.consumed() == done:
                raise LedgerSeqError(run_id, seq, len(records),
                                     why=f"its history does not replay to record {seq} (at "
                                         f"record {records[done + 1].get('seq', done + 1)}, "
                                         f"kind {records[done + 1].get('kind')!r}: the workflow's "
                                         "code changed?)")
        return op.run

    def fork(self, run_id: str, *, at_seq: Optional[int] = None,
             state: Optional[RunState] = None, snapshot: Optional[str] = None,
             source_seq: Optional[int] = None, actor_id: Optional[str] = None) -> RunState:
        """A new run whose state is ``run_id``'s right after record ``at_seq`` (or the given
        snapshot ``state``), not ticked. Its ledger starts with a ``fork`` record naming
        the source run, the record and its hash, so the new chain is anchored to the old.
        The source never changes."""
        source = self.get_state(run_id)
        records = self._ledger.records_since(run_id, 0) if at_seq is None else None
        if state is None:
            assert at_seq is not None
            state = self.state_at(run_id, at_seq)
            source_seq = at_seq
        if records is not None and source_seq is None:
            source_seq = len(records) - 1
        seq = source_seq if source_seq is not None else 0
        rec = self._ledger.records_since(run_id, seq)
        if not rec:
            raise LedgerSeqError(run_id, seq, self._ledger.head(run_id)[0])
        new = RunState.from_dict(state.to_jsonable())
        new.run_id = str(uuid.uuid4())
        new.ledger_count, new.ledger_head, new.checkpoint_sig = 0, None, None
        new.created_at = new.updated_at = self._now_iso()
        new.parent_run_id = source.parent_run_id if new.parent_run_id is None else new.parent_run_id
        new.actor_id = actor_id or source.actor_id
        result: Dict[str, Any] = {"source_run_id": run_id, "source_seq": seq,
                                  "source_record_hash": rec[0].get("record_hash"),
                                  "state": new.to_jsonable()}
        if snapshot is not None:
            result["snapshot"] = snapshot
        op = RunOp(self, new, Replay([]), (0, None), None)
        op.transitions = []
        op.append(kind=RecordKind.FORK, status=StepStatus.STARTED, actor_id=actor_id,
                  result=result, checkpoint=True)
        return op.run

    def remind_due(self, now: Optional[datetime] = None) -> List[RunState]:
        """Remind the person of every open wait whose next reminder (``remind_every``
        after the wait began, and every period after) has come: a ``reminder`` record,
        and the ``wait`` transition again, so the ``on_wait`` hook runs again.

        Only runs waiting for a person are read (the index's wait reason); a busy run is
        reminded by a later call."""
        from .waits import reminders_due

        now = now or self._clock()
        out: List[RunState] = []
        for before in self._run_store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER):
            if reminders_due(before.waiting, now) <= ((before.waiting.reminded or 0) if before.waiting else 0):
                continue
            try:
                with self._locked(before.run_id) as op:
                    wait = op.run.waiting
                    k = reminders_due(wait, now)
                    if (op.run.status != RunStatus.WAITING or wait is None
                            or k <= (wait.reminded or 0)):
                        continue
                    wait.reminded = k
                    op.dirty = True
                    op.append(kind=RecordKind.REMINDER, status=StepStatus.WAITING,
                              result={"reminder": k, "wait_key": wait.wait_key},
                              actor_id="reminder", checkpoint=True)
                    if self._on_transition is not None:
                        import copy

                        op.transitions.append(("wait", copy.deepcopy(op.run)))
                out.append(op.run)
            except RunBusyError:
                continue
        return out

    def runnable(self, now: Optional[datetime] = None, *, on_corrupt: Any = None) -> List[Runnable]:
        """Every run that can move now, once each: running runs, waiting runs whose time
        (a timer or a deferred retry) has come, and runs waiting on a child that ended.

        Uses the store's queries (``RunQueries``): the cost grows with the matching
        runs, not with every run kept."""
        now = now or self._clock()
        rs = self._run_store
        found: Dict[str, Runnable] = {}
        for run in rs.list_runs(status=RunStatus.RUNNING, on_corrupt=on_corrupt):
            found.setdefault(run.run_id, Runnable(run.run_id, "running", run))
        for run in rs.list_due_wait_until(now=now, on_corrupt=on_corrupt):
            wait = run.waiting
            if wait is not None and wait.reason in (WaitReason.USER, WaitReason.EVENT):
                reason = "deadline due"
            elif wait is not None and (wait.details or {}).get("retry"):
                reason = "retry due"
            else:
                reason = "timer due"
            found.setdefault(run.run_id, Runnable(run.run_id, reason, run))
        for run in rs.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.SUBWORKFLOW,
                                on_corrupt=on_corrupt):
            child_id = ((run.waiting.details or {}) if run.waiting else {}).get("sub_run_id")
            try:
                child = rs.load(child_id) if child_id else None
            except Exception:  # a corrupt child is reported when its own turn comes
                child = None
            if child is not None and child.status.is_terminal:
                found.setdefault(run.run_id, Runnable(run.run_id, "child ended", run))
        return list(found.values())

    # ------------------------------------------------------------------ limits

    def get_limit_status(self, run_id: str) -> Dict[str, Any]:
        return limit_status(self.get_state(run_id))

    def check_limits(self, run: RunState) -> List[LimitWarning]:
        """Limits at their warning threshold or exceeded (nodes decide what to do)."""
        return check_limits(run)

    def update_limits(
        self, run_id: str, updates: Dict[str, Any], *, actor_id: Optional[str] = None,
        max_steps: int = 100,
    ) -> RunState:
        """Change a run's limits. Refused, with nothing changed: unknown keys, wrong
        types, negative values, a maximum not above what is used, a run that has ended.

        A run waiting at a reached limit whose every reached limit this lifts is resumed
        and ticked until it blocks, as ``resume`` would."""
        check_updates(updates)
        with self._locked(run_id) as op:
            op.roll_forward_ends()
            run = op.run
            try:
                check_updates(updates, run)
            except Exception as exc:
                raise _after_finish(op, exc) from None
            limits = run.vars.setdefault("_limits", {})
            changes = {k: {"old": limits.get(k), "new": v} for k, v in updates.items()}
            limits.update(updates)
            op.dirty = True
            op.append(kind=RecordKind.LIMITS, status=StepStatus.UPDATED,
                      result={"changes": changes}, actor_id=actor_id, checkpoint=True)
            wait = run.waiting
            if (run.status == RunStatus.WAITING and wait is not None
                    and (wait.details or {}).get("guard") and reached_limit(run) is None):
                # Every reached limit was lifted: carry on as ``resume`` would.
                wf = self._lookup_workflow(run.workflow_id)
                op.apply_resume({"response": "continue"}, actor_id=actor_id, source="limits")
                if wf is not None:
                    op.run_loop(wf, max_steps)
        run = op.run
        self._propagate_to_parents(run, max_steps)
        return run

    # ------------------------------------------------------------------ internals

    def _entry(self, workflow_id: str) -> Optional[WorkflowEntry]:
        reg = self._registry
        if isinstance(reg, WorkflowRegistry):
            return reg.entry(workflow_id)
        return None

    def _lookup_workflow(self, workflow_id: str) -> Optional[Any]:
        reg = self._registry
        if reg is None:
            return None
        return reg.get(workflow_id)

    def _workflow_for(self, run: RunState, workflow: Optional[Any]) -> Any:
        if workflow is not None:
            if workflow.workflow_id != run.workflow_id:
                raise UnknownWorkflowError(run.workflow_id)
            return workflow
        wf = self._lookup_workflow(run.workflow_id)
        if wf is None:
            raise UnknownWorkflowError(run.workflow_id)
        return wf

    def _policy_for(self, workflow_id: str) -> Any:
        entry = self._entry(workflow_id)
        return entry.effect_policy if entry and entry.effect_policy is not None else self._policy

    def _check_resumable(self, run: RunState, wait_key: Optional[str],
                         payload: Dict[str, Any], *, actor_id: Optional[str] = None) -> Dict[str, Any]:
        if run.status != RunStatus.WAITING or run.waiting is None:
            raise RunNotWaitingError(run.run_id, run.status.value)
        wait = run.waiting
        if wait_key is not None and wait_key != wait.wait_key:
            raise WaitKeyMismatchError(run.run_id, wait.wait_key, wait_key)
        check_actor(wait, actor_id, run_id=run.run_id)
        payload = normalise_payload(wait, payload, run_id=run.run_id)
        if wait.schema is not None:
            validate_payload(wait.schema, payload, run_id=run.run_id)
        return payload

    def _start_child_for(self, parent: RunState) -> Callable[[str, str, Dict[str, Any], bool], Optional[RunState]]:
        """What ``start_subworkflow`` uses to create (once) and tick a child of ``parent``."""

        def start_child(child_id: str, workflow_id: str, child_vars: Dict[str, Any],
                        tick: bool) -> Optional[RunState]:
            child_wf = self._lookup_workflow(workflow_id)
            if child_wf is None:
                return None
            child = self._run_store.load(child_id)
            if child is None:
                self.start(workflow=child_wf, vars=child_vars, actor_id=parent.actor_id,
                           session_id=parent.session_id, parent_run_id=parent.run_id,
                           run_id=child_id)
            if not tick:
                return child or self._run_store.load(child_id)
            try:
                with self._locked(child_id) as op:
                    op.tick(child_wf, 100)
                return op.run
            except RunBusyError:
                # Another process (say a `tick --all`) is driving the child: wait for it.
                return self._run_store.load(child_id)

        return start_child

    def _propagate_to_parents(self, run: RunState, max_steps: int) -> None:
        """When a child ends, resume (or fail) the parent waiting on it, and so on upward.

        Runs after the child's lock is released, so locks are never nested parent-side.
        If the parent is busy, its own next tick catches up."""
        while run.status.is_terminal and run.parent_run_id:
            parent_id = run.parent_run_id
            try:
                with self._locked(parent_id) as op:
                    op.roll_forward()
                    parent = op.run
                    wait = parent.waiting
                    if (parent.status != RunStatus.WAITING or wait is None
                            or wait.reason != WaitReason.SUBWORKFLOW
                            or (wait.details or {}).get("sub_run_id") != run.run_id):
                        return
                    wf = self._lookup_workflow(parent.workflow_id)
                    if wf is None:
                        return  # leave it waiting; ticking it names the missing workflow
                    op.apply_child_end(run, wf, max_steps)
                run = op.run
            except (RunBusyError, UnknownRunError):
                return


def _after_finish(op: RunOp, exc: BaseException) -> BaseException:
    """Checkpoint what a roll-forward changed before a refusal propagates."""
    op.finish()
    return exc


def _EMPTY_REPLAY() -> Replay:
    return Replay([])



