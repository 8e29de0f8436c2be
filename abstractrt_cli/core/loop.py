"""One locked operation on one run: roll forward, the tick loop, effects, recording.

A ``RunOp`` exists while the runtime holds a run's lock. It knows the ledger's real head
and the records beyond the checkpoint (``Replay``), so that:

- every record it appends is chained from a head it checked (never onto a damaged tail);
- a record the ledger already holds beyond the checkpoint is reused, not written again;
- every checkpoint is covered by the record before it, which carries the digest of the
  checkpointed state (a ``checkpoint`` record is added in the rare case none does), and
  with a signing key the checkpoint is signed.

Effects are recorded before the run moves past them. The run file is rewritten at every
wait, end and operator action, and at least every ``effects_per_checkpoint`` effects:
after a crash in between, the replayed nodes find their effects' records by idempotency
key, so nothing recorded runs again.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..errors import AbstractRTError, LedgerMismatchError, StateNotSavableError, StepTimeoutError
from .compat import call_handler, check_outcome, coerce_outcome, coerce_plan
from . import effects as effects_module
from .effects import PASSTHROUGH_TYPES, EffectContext, passthrough
from .integrity import json_copy, sign_checkpoint, state_digest
from .limits import count_llm_usage, reached_limit
from .llm import merge_llm_config
from .models import (
    Effect,
    EffectType,
    RecordKind,
    RunState,
    RunStatus,
    StepPlan,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from .outcome import EffectOutcome, NonRetryableError
from .policy import DefaultEffectPolicy
from .replay import Replay, load_beyond
from .output import NO_OUTPUT, StepOutput
from .steptimer import StepLimit, step_time_limit, watching
from .timeutil import parse_timestamp
from .waits import DEADLINE_ACTOR, deadline_due, timeout_payload
from .sha import sha256

if TYPE_CHECKING:
    from .runtime import Runtime

_TRACEBACK_FRAMES = 8
_STEP_STATUS = {"completed": StepStatus.COMPLETED, "waiting": StepStatus.WAITING}


def set_nested(target: Dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``target["a"]["b"] = value`` for ``"a.b"``, creating dicts on the way."""
    parts = dotted_key.split(".")
    cur = target
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def describe_exception(exc: BaseException, source: Optional[str]) -> Dict[str, Any]:
    """The exception, the innermost frame in the workflow's directory, the last frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    here = os.path.dirname(os.path.abspath(__file__))
    frames = [f for f in frames if not f.filename.startswith(here)] or list(frames)
    where = None
    if source:
        wf_dir = os.path.dirname(os.path.abspath(source))
        where = next((f for f in reversed(frames) if os.path.abspath(f.filename).startswith(wf_dir)),
                     None)
    where = where or (frames[-1] if frames else None)
    lines = traceback.format_list(frames[-_TRACEBACK_FRAMES:])
    lines += traceback.format_exception_only(type(exc), exc)
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "file": where.filename if where else None,
        "line": where.lineno if where else None,
        "traceback": [ln.rstrip("\n")[:2000] for ln in lines],
    }


def _json_ok(value: Any) -> Optional[str]:
    """None if ``value`` can be stored as JSON, else why not."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc) or type(exc).__name__
    return None


_HOOKED_WAITS = (WaitReason.USER, WaitReason.EVENT, WaitReason.JOB)
# Built-ins that only make the run wait: nothing outside the store sees them run.
_WAIT_ONLY = frozenset({effects_module.ask_user, effects_module.wait_event,
                        effects_module.wait_until, effects_module.passthrough})


def _transition_key(run: RunState) -> Tuple[Any, ...]:
    w = run.waiting
    return (run.status, w.wait_key if w else None, w.since if w else None)


def open_op(rt: "Runtime", run_id: str) -> "RunOp":
    """Load a locked run and check its ledger against its checkpoint."""
    run = rt.get_state(run_id)
    replay, head, digest = load_beyond(rt.ledger_store, run)
    return RunOp(rt, run, replay, head, digest)


class RunOp:
    """Everything the runtime does to one run while holding its lock."""

    def __init__(self, rt: "Runtime", run: RunState, replay: Replay,
                 head: Tuple[int, Optional[str]], head_digest: Optional[str]) -> None:
        self.rt = rt
        self.run = run
        self.replay = replay
        self.head = head
        self.head_digest = head_digest  # state digest carried by the ledger's last record
        self.dirty = False  # the state differs from the checkpoint on disk
        self.unsaved = False  # a new run whose run file is not written yet
        # (event, run) for each transition a checkpoint made durable: hooks fire on them
        # once the lock is released (``Runtime._locked``).
        self.transitions: List[Tuple[str, RunState]] = []
        self._last_saved = _transition_key(run)
        self.effects_since_save = 0
        # Rebuilding a past state (``Runtime.state_at``): replay only, never write.
        self.rebuilding = False
        self.output = StepOutput() if rt.log_store is not None else NO_OUTPUT
        self._commit = getattr(rt.run_store, "commit", None)
        self._append_many = None if self._commit else getattr(rt.ledger_store, "append_many", None)
        self._buffer: List[StepRecord] = []  # for stores that commit records with the run
        self.checkpoint_every = 1 if self._commit else max(1, rt.config.effects_per_checkpoint)

    # ------------------------------------------------------------------ recording

    def _record(self, *, kind: RecordKind, status: StepStatus, node_id: Optional[str] = None,
                effect: Optional[Dict[str, Any]] = None, result: Any = None,
                error: Optional[str] = None, attempt: int = 1,
                idempotency_key: Optional[str] = None, actor_id: Optional[str] = None,
                started_at: Optional[str] = None, digest: Optional[str] = None) -> StepRecord:
        run = self.run
        now = self.rt._now_iso()
        return StepRecord(
            run_id=run.run_id, step_id=str(uuid.uuid4()), node_id=node_id or run.current_node,
            status=status, effect=effect, result=result, error=error,
            started_at=started_at or now, ended_at=now,
            actor_id=actor_id or run.actor_id, session_id=run.session_id, attempt=attempt,
            idempotency_key=idempotency_key, kind=kind, state_digest=digest,
        )

    def append(self, *, checkpoint: bool = False, durable: bool = True, covers: bool = False,
               **fields: Any) -> None:
        """Record. With ``checkpoint`` the record carries the digest of the run's current
        state, and the run is checkpointed right after it (in the same transaction, on
        stores that can). Without, ``durable`` records are on disk before this returns;
        others (a resume) may wait for the checkpoint that follows them. ``covers``: the
        record carries the current digest although the checkpoint comes later."""
        digest = self._digest() if checkpoint or covers else None
        self._write(self._record(digest=digest, **fields))
        self.head_digest = digest
        if checkpoint:
            self.save(digest=digest)
        elif durable:
            self.flush()

    def reuse_or_append(self, kind: RecordKind, **fields: Any) -> None:
        """Append a run-ending record and checkpoint, unless the replay holds it already."""
        if self.replay.take_kind(kind.value) is None:
            self.append(kind=kind, checkpoint=True, **fields)
        else:
            self.save()

    def _write(self, rec: StepRecord) -> None:
        """Chain a record onto the head we checked; written now, or (stores that can
        batch) with the next records at the next durability point."""
        if self.rebuilding:
            raise LedgerMismatchError(self.run.run_id, "its history does not replay to the "
                                      f"record asked for (the workflow's code changed at {rec.node_id!r}?)")
        if self._commit is not None or self._append_many is not None:
            # A buffered record is written later: freeze what it says now (its result may
            # be the very dict the run's vars hold, which the next nodes may change).
            rec.result, rec.effect = json_copy([rec.result, rec.effect])
            self._buffer.append(rec)
            if self._commit is not None:
                # Signing needs the head before the commit that makes it: chain here what
                # the store will chain the same way.
                from ..storage.chain import chain_record

                chained = chain_record(rec.to_jsonable(), seq=self.head[0], prev_hash=self.head[1])
                self.head = (self.head[0] + 1, chained["record_hash"])
            else:
                self.head = (self.head[0] + 1, None)  # the hash is known at the flush
            return
        stored = self.rt.ledger_store.append(rec)
        self.head = (stored["seq"] + 1, stored["record_hash"])

    def flush(self) -> None:
        """Make buffered records durable: one transaction (stores that commit records with
        the run) or one write and one sync (ledgers that append several at once)."""
        if not self._buffer:
            return
        if self._commit is not None:
            self._commit(self._buffer, None)
        else:
            stored = self._append_many(self._buffer)
            if stored[-1]["seq"] + 1 != self.head[0]:
                raise LedgerMismatchError(self.run.run_id, "the ledger changed while the run was locked")
            self.head = (self.head[0], stored[-1]["record_hash"])
        self._buffer = []

    def _digest(self) -> str:
        try:
            return state_digest(self.run)
        except (TypeError, ValueError, RecursionError) as exc:
            raise StateNotSavableError(self.run.run_id, str(exc) or type(exc).__name__) from None

    def save(self, *, digest: Optional[str] = None, force: bool = False) -> None:
        """Checkpoint the run. The ledger's last record must lead to this very state: if
        none does (pure steps after the last record), a ``checkpoint`` record is added.

        While records beyond the checkpoint are still being replayed, the checkpoint is
        put off (moving it past them would lose them); ``force`` (at the end of an
        operation) takes it anyway: what is left then is history the code no longer
        reaches."""
        run = self.run
        if self.rebuilding or (not force and self.replay.peek() is not None):
            self.dirty = not self.rebuilding
            return
        digest = digest or self._digest()
        if digest != self.head_digest:
            self._write(self._record(kind=RecordKind.CHECKPOINT, status=StepStatus.CHECKPOINTED,
                                     result={"status": run.status.value}, digest=digest))
            self.head_digest = digest
        run.updated_at = self.rt._now_iso()
        if self._commit is None:
            self.flush()  # the records first: the head they make is the checkpoint's
        run.ledger_count, run.ledger_head = self.head
        key = self.rt.config.signing_key
        run.checkpoint_sig = sign_checkpoint(key, run.run_id, *self.head, digest) if key else None
        if self._commit is not None:
            self._commit(self._buffer, run)
            self._buffer = []
        else:
            self.rt.run_store.save(run)
        self.dirty = False
        self.unsaved = False
        self.effects_since_save = 0
        if self.rt._on_transition is None:
            return
        key = _transition_key(run)
        if key != self._last_saved:
            self._last_saved = key
            event = {RunStatus.WAITING: "wait", RunStatus.COMPLETED: "complete",
                     RunStatus.FAILED: "fail"}.get(run.status)
            if event is not None and (event != "wait" or run.waiting is None
                                      or run.waiting.reason in _HOOKED_WAITS):
                import copy

                self.transitions.append((event, copy.deepcopy(run)))

    def finish(self) -> RunState:
        """End of the operation: checkpoint whatever is not checkpointed yet."""
        try:
            if self.dirty or self._buffer:
                self.save(force=True)
        except StateNotSavableError as exc:
            return self.fail_unsavable(exc)
        finally:
            self.flush_output()
        return self.run

    def flush_output(self) -> None:
        """What the steps printed, to the run's log (never fails the run: a log that
        cannot be written loses those lines, which were echoed to stderr already)."""
        entries = self.output.take()
        if entries and not self.rebuilding:
            try:
                self.rt.log_store.append_log(self.run.run_id, entries)
            except (OSError, ValueError, AbstractRTError):
                pass

    # ------------------------------------------------------------------ state changes

    def fail(self, error: str, *, error_info: Optional[Dict[str, Any]] = None) -> RunState:
        run = self.run
        run.status = RunStatus.FAILED
        run.error = error
        run.waiting = None
        run.error_info = error_info
        try:
            self.reuse_or_append(RecordKind.FAIL, status=StepStatus.FAILED, error=error)
        except StateNotSavableError as exc:
            return self.fail_unsavable(exc)
        return run

    def fail_unsavable(self, exc: StateNotSavableError) -> RunState:
        """The state cannot be stored: fail the run from its last good checkpoint."""
        last = self.rt.run_store.load(self.run.run_id) or self.run
        last.status = RunStatus.FAILED
        last.waiting = None
        last.error = exc.message
        last.error_info = None
        self.run = last
        self.head_digest = None
        self.append(kind=RecordKind.FAIL, status=StepStatus.FAILED, error=exc.message,
                    checkpoint=True)
        if self.dirty:
            self.save(force=True)
        return last

    def apply_resume(self, payload: Dict[str, Any], *, actor_id: Optional[str], source: str,
                     record: bool = True, event_id: Optional[str] = None) -> None:
        """Record the resume, store the payload, and set the run running at its next node.

        Not checkpointed here: the run goes on to its next wait or end, which is. A crash
        before then leaves the resume beyond the checkpoint, and it is rolled forward."""
        run = self.run
        wait = run.waiting
        assert wait is not None
        details = wait.details or {}
        retry = bool(details.get("retry"))
        if record:
            result = {"source": source, "reason": wait.reason.value, "wait_key": wait.wait_key,
                      "payload": payload}
            if event_id is not None:
                result["event_id"] = event_id
            self.append(kind=RecordKind.RESUME, status=StepStatus.RESUMED, result=result,
                        actor_id=actor_id, durable=False)
        if details.get("guard"):
            # The limit guard is not an effect step: nothing is stored, the node re-runs.
            run.status = RunStatus.RUNNING
            run.waiting = None
            self.dirty = True
            limits = run.vars.setdefault("_limits", {})
            if payload.get("response") == "stop":
                self._set_cancelled(f"stopped at the {details['guard']['limit']} limit "
                                    f"({details['guard']['used']}/{details['guard']['max']})")
                if record:
                    self.append(kind=RecordKind.CANCEL, status=StepStatus.CANCELLED,
                                result={"reason": run.error, "was": "waiting"},
                                actor_id=actor_id, checkpoint=True)
            else:
                limits["_acknowledged"] = {"current_iteration": limits.get("current_iteration", 0),
                                          "estimated_tokens_used": limits.get("estimated_tokens_used", 0)}
            return
        approval = details.get("tool_approval")
        if approval:
            # One call of a tool_calls step approved or denied: the node re-runs the same
            # step (same key), which goes on from this call.
            progress = run.tool_progress if (run.tool_progress or {}).get(
                "effect_key") == approval.get("effect_key") else None
            decisions = dict((progress or {}).get("decisions") or {})
            decisions[str(approval.get("index"))] = str(payload.get("response"))
            run.tool_progress = {"effect_key": approval.get("effect_key"),
                                 "results": (progress or {}).get("results",
                                                                 approval.get("results_so_far") or []),
                                 "decisions": decisions}
            retry = True  # like a deferred retry: the same step again, no result stored
        if not retry:
            if wait.result_key:
                set_nested(run.vars, wait.result_key, payload)
            if details.get("effect_type") == EffectType.LLM_CALL.value:
                count_llm_usage(run, payload)  # a job's reported usage counts too
            run.effect_seq += 1  # the waiting effect step is done
            run.pending_retry = None
        run.status = RunStatus.RUNNING
        run.waiting = None
        if wait.resume_to_node:
            run.current_node = wait.resume_to_node
        self.dirty = True

    # ------------------------------------------------------------------ roll forward

    def roll_forward(self) -> None:
        """Apply the operator records beyond the checkpoint that the state is ready for."""
        run = self.run
        while True:
            rec = self.replay.peek()
            if rec is None:
                return
            kind = rec.get("kind", "effect")
            result = rec.get("result") if isinstance(rec.get("result"), dict) else {}
            if kind in ("start", "checkpoint"):
                self.replay.take()
            elif kind == "resume" and run.status == RunStatus.WAITING and run.waiting is not None:
                self.replay.take()
                payload = result.get("payload")
                self.apply_resume(payload if isinstance(payload, dict) else {},
                                  actor_id=rec.get("actor_id"), source="replay", record=False)
                if result.get("event_id") and self.rt.event_store is not None:
                    self.rt.event_store.mark_received(result["event_id"], run.run_id)
            elif kind == "cancel" and not run.status.is_terminal:
                self.replay.take()
                self._set_cancelled(result.get("reason"))
            elif kind == "retry" and run.status == RunStatus.FAILED:
                self.replay.take()
                self.apply_retry(result.get("from_node"), bool(result.get("new_visit")))
            elif kind == "reminder" and run.waiting is not None:
                self.replay.take()
                run.waiting.reminded = max(run.waiting.reminded or 0,
                                           int(result.get("reminder") or 0))
                self.dirty = True
            elif kind == "fork":
                self.replay.take()  # a fork's first record: its state is the checkpoint's
            elif kind == "limits":
                self.replay.take()
                limits = run.vars.setdefault("_limits", {})
                for k, change in (result.get("changes") or {}).items():
                    if isinstance(change, dict):
                        limits[k] = change.get("new")
                self.dirty = True
            else:
                return

    def roll_forward_ends(self) -> None:
        """Without the workflow (cancel, limits): take a recorded end as it was recorded."""
        self.roll_forward()
        run = self.run
        if run.status.is_terminal:
            return
        for rec in self.replay.records:
            kind = rec.get("kind")
            if kind == "complete":
                run.status = RunStatus.COMPLETED
                run.output = (rec.get("result") or {}).get("output")
            elif kind == "fail":
                run.status = RunStatus.FAILED
                run.error = rec.get("error")
            else:
                continue
            run.waiting = None
            self.dirty = True
            return

    def apply_retry(self, from_node: Optional[str], new_visit: bool) -> None:
        run = self.run
        run.status = RunStatus.RUNNING
        run.error = None
        run.error_info = None
        run.waiting = None
        run.pending_retry = None
        run.tool_progress = None
        if from_node:
            run.current_node = from_node
        if new_visit:
            run.effect_seq += 1  # a new visit: its effects get new idempotency keys
        self.dirty = True

    def _set_cancelled(self, reason: Optional[str]) -> None:
        run = self.run
        run.status = RunStatus.CANCELLED
        run.error = reason or "cancelled"
        run.waiting = None
        self.dirty = True

    def cancel(self, reason: Optional[str], actor_id: Optional[str]) -> None:
        was = self.run.status.value
        self._set_cancelled(reason)
        self.append(kind=RecordKind.CANCEL, status=StepStatus.CANCELLED,
                    result={"reason": reason, "was": was}, actor_id=actor_id, checkpoint=True)

    # ------------------------------------------------------------------ ticking

    def tick(self, wf: Any, max_steps: int) -> RunState:
        """Progress a locked run: a due timer or an ended child resumes it first."""
        self.roll_forward()
        run = self.run
        if run.status.is_terminal:
            return run
        if run.status == RunStatus.WAITING:
            wait = run.waiting
            if wait is None:  # a waiting run without a wait cannot move; leave it
                return run
            if wait.reason == WaitReason.UNTIL and wait.until:
                if parse_timestamp(wait.until) > self.rt.now():
                    return run
                retry = (wait.details or {}).get("retry")
                payload = {} if retry else {"until": wait.until, "ready": True}
                self.apply_resume(payload, actor_id="timer", source="timer")
                return self.run_loop(wf, max_steps)
            if wait.reason == WaitReason.EVENT and self.deliver_kept_event():
                return self.run_loop(wf, max_steps)
            if wait.reason in (WaitReason.USER, WaitReason.EVENT) and deadline_due(wait, self.rt.now()):
                return self._act_on_deadline(wf, max_steps)
            if wait.reason == WaitReason.SUBWORKFLOW:
                # Catch up on a child that ended while nobody could resume us.
                child_id = (wait.details or {}).get("sub_run_id")
                child = self.rt.run_store.load(child_id) if child_id else None
                if child is None or not child.status.is_terminal:
                    return run
                return self.apply_child_end(child, wf, max_steps)
            return run
        return self.run_loop(wf, max_steps)

    def deliver_kept_event(self) -> bool:
        """A run that reaches ``wait_event KEY`` takes the oldest kept event for KEY
        emitted after the run was created that it has not received (and that matches the
        wait's schema, if it has one)."""
        events = self.rt.event_store
        run = self.run
        wait = run.waiting
        if events is None or wait is None or wait.reason != WaitReason.EVENT or not wait.wait_key:
            return False
        created = parse_timestamp(run.created_at)
        skip: List[str] = []
        while True:
            ev = events.oldest_unreceived(wait.wait_key, run_id=run.run_id, emitted_after=created,
                                          now=self.rt.now(), exclude=skip)
            if ev is None:
                return False
            if wait.schema is not None:
                from .waits import validate_payload

                try:
                    validate_payload(wait.schema, ev.payload, run_id=run.run_id)
                except ValueError:
                    skip.append(ev.event_id)
                    continue
            self.apply_resume(dict(ev.payload), actor_id=ev.actor_id or "event", source="mailbox",
                              event_id=ev.event_id)
            self.flush()
            events.mark_received(ev.event_id, run.run_id)
            return True

    def _act_on_deadline(self, wf: Any, max_steps: int) -> RunState:
        """The wait's deadline has passed and nobody answered: do what ``on_timeout`` says,
        recorded as a resume by ``deadline``."""
        run = self.run
        wait = run.waiting
        assert wait is not None
        spec = wait.on_timeout if wait.on_timeout is not None else "fail"
        if spec == "fail":
            return self.fail(f"no answer by the deadline {wait.deadline} "
                             f"({wait.reason.value} wait {wait.wait_key})")
        payload = timeout_payload(wait)
        goto = spec.get("goto") if isinstance(spec, dict) else None
        if goto is not None and goto not in (wf.nodes if isinstance(wf.nodes, dict) else {}):
            return self.fail(f"on_timeout goto {goto!r}: no such node in workflow {wf.workflow_id!r}")
        self.apply_resume(payload, actor_id=DEADLINE_ACTOR, source="deadline")
        if goto is not None:
            run.current_node = goto  # the escalation path
        return self.run_loop(wf, max_steps)

    def apply_child_end(self, child: RunState, wf: Any, max_steps: int) -> RunState:
        if child.status == RunStatus.COMPLETED:
            payload = {"sub_run_id": child.run_id, "output": child.output}
            self.apply_resume(payload, actor_id=f"subworkflow:{child.run_id}", source="subworkflow")
            return self.run_loop(wf, max_steps)
        return self.fail(f"subworkflow {child.workflow_id!r} (run {child.run_id}) "
                         f"{child.status.value}: {child.error}")

    def run_loop(self, wf: Any, max_steps: int) -> RunState:
        """Execute nodes from ``run.current_node`` until the run blocks or ends, or has
        taken ``max_steps`` steps (steps replayed from the ledger do not count)."""
        entry = self.rt._entry(wf.workflow_id)
        timeout = entry.step_timeout if entry and entry.step_timeout is not None else self.rt.config.step_timeout
        try:
            with watching(timeout):
                return self._loop(wf, max_steps)
        except StateNotSavableError as exc:
            return self.fail_unsavable(exc)

    def _loop(self, wf: Any, max_steps: int) -> RunState:
        rt = self.rt
        steps = 0
        nodes = wf.nodes if isinstance(wf.nodes, dict) else {}
        entry = rt._entry(wf.workflow_id)
        timeout = entry.step_timeout if entry and entry.step_timeout is not None else rt.config.step_timeout
        # Steps that replay recorded effects do not count against ``max_steps``.
        bound = max_steps + len(self.replay.records)
        replaying = bool(self.replay.records)
        guard = True  # usage only moves with effects: check the limits after each one
        step_limit = StepLimit(timeout)
        ctx_has_run = hasattr(rt._ctx, "run_id")
        while steps < max_steps or (steps < bound and self.replay.peek() is not None):
            if replaying and self.replay.peek() is not None:
                self.roll_forward()  # a limits change or a cancel recorded mid-tick
            run = self.run
            if run.status != RunStatus.RUNNING:
                return run
            if self.rebuilding:
                nxt = self.replay.peek()
                if nxt is not None and nxt.get("kind") == "fail":
                    # History says the run failed here: take it as recorded (the code
                    # may have been fixed since, which is why it was retried).
                    self.replay.take()
                    run.status, run.error, run.waiting = RunStatus.FAILED, nxt.get("error"), None
                    return run
            if guard:
                guard = False
                if self._guard():
                    nxt = self.replay.peek()
                    if nxt is not None and nxt.get("kind") == "resume":
                        self.roll_forward()  # the person answered before a crash: go on
                        guard = True
                        continue
                    return self.run
            steps += 1
            node_id = run.current_node
            handler = nodes.get(node_id)
            if handler is None:
                return self.fail(f"unknown node {node_id!r} in workflow {wf.workflow_id!r}")
            if ctx_has_run:
                rt._ctx.run_id = run.run_id
            try:
                with step_limit.of(run.run_id, node_id), self.output.of(node_id, run.effect_seq):
                    plan = coerce_plan(handler(run, rt._ctx), node_id)
            except Exception as exc:  # a broken node fails the run, it does not crash us
                info = describe_exception(exc, entry.source if entry else None)
                where = f" ({info['file']}:{info['line']})" if info.get("file") else ""
                if isinstance(exc, StepTimeoutError):
                    return self.fail(str(exc), error_info=info)
                return self.fail(f"node {node_id!r} raised {type(exc).__name__}: {exc}{where}",
                                 error_info=info)

            if plan.complete_output is not None:
                if not isinstance(plan.complete_output, dict):
                    return self.fail(f"node {node_id!r} completed with a non-dict output")
                run.status = RunStatus.COMPLETED
                run.output = plan.complete_output
                run.waiting = None
                self.reuse_or_append(RecordKind.COMPLETE, status=StepStatus.COMPLETED,
                                     node_id=plan.node_id,
                                     result={"completed": True, "output": plan.complete_output})
                return run

            if plan.effect is None:
                if not plan.next_node:
                    return self.fail(f"node {node_id!r} returned no effect, no next_node "
                                     "and no complete_output")
                run.current_node = plan.next_node
                self.dirty = True
                continue

            outcome = self.effect_step(wf, plan)
            guard = True
            if outcome.status == "failed":
                if run.status == RunStatus.WAITING:  # a retry was deferred past its backoff
                    self.save()
                    return run
                return self.fail(outcome.error or "effect failed")
            if outcome.status == "waiting":
                nxt = self.replay.peek()
                if nxt is not None and nxt.get("kind") == "resume":
                    self.roll_forward()  # answered already, before a crash: go on
                    continue
                if self.replay.peek() is None and not self.rebuilding and self.deliver_kept_event():
                    continue
                return run
            if not plan.next_node:
                return self.fail(f"node {node_id!r} ran an effect but has no next_node")
        return self.run

    def _guard(self) -> bool:
        """Before a step: a reached iteration or token limit makes the run wait for a
        person (continue or stop) instead of failing or running on."""
        run = self.run
        hit = reached_limit(run)
        if hit is None:
            return False
        limit, used, maximum = hit
        noun = "iterations" if limit == "iterations" else "tokens"
        run.status = RunStatus.WAITING
        run.waiting = WaitState(
            reason=WaitReason.USER,
            wait_key=f"limit:{run.run_id}:{limit}:{used}",
            resume_to_node=run.current_node,
            prompt=(f"Run {run.run_id[:8]} has used {used} of its {maximum} {noun} "
                    f"(the {limit} limit). Continue or stop?"),
            choices=["continue", "stop"],
            allow_free_text=False,
            details={"guard": {"limit": limit, "used": used, "max": maximum}},
            since=self.rt._now_iso(),
        )
        self.dirty = True
        if self.replay.take_kind(RecordKind.GUARD.value) is None:
            self.append(kind=RecordKind.GUARD, status=StepStatus.WAITING,
                        result={"limit": limit, "used": used, "max": maximum}, checkpoint=True)
        else:
            self.save()
        return True

    # ------------------------------------------------------------------ effects

    def effect_step(self, wf: Any, plan: StepPlan) -> EffectOutcome:
        """Run (or reuse) one effect step, record it, and apply its outcome to the run."""
        effect = plan.effect
        assert effect is not None
        policy = self.rt._policy_for(wf.workflow_id)
        key = policy.idempotency_key(run=self.run, node_id=plan.node_id, effect=effect)
        if not isinstance(policy, DefaultEffectPolicy):
            # A foreign policy (AbstractRuntime's) keys on node and payload alone: add the
            # step's sequence number so a loop's next visit is not taken for a replay.
            key = sha256(f"{key}:{self.run.effect_seq}".encode()).hexdigest()[:32]
        prior = self.replay.effect_records(key)
        reused = self._reuse_outcome(prior)
        if reused is not None:
            self._apply_outcome(plan, reused, recorded=prior[-1])
            return reused
        if self.rebuilding:
            # Never run an effect to rebuild a past state: its recorded failure, or stop.
            if prior and prior[-1].get("error"):
                return EffectOutcome.failed(prior[-1]["error"], retryable=False)
            raise LedgerMismatchError(self.run.run_id, "its history does not replay: node "
                                      f"{plan.node_id!r} asks for an effect the ledger does not hold")
        return self._attempts(wf, plan, key, policy, prior)

    @staticmethod
    def _reuse_outcome(prior: List[Dict[str, Any]]) -> Optional[EffectOutcome]:
        for rec in prior:
            if rec.get("status") == StepStatus.COMPLETED.value:
                return EffectOutcome.completed(rec.get("result"))
            if rec.get("status") == StepStatus.WAITING.value:
                wait = (rec.get("result") or {}).get("wait")
                if isinstance(wait, dict):
                    return EffectOutcome.waiting(WaitState.from_dict(wait))
        return None

    def _apply_outcome(self, plan: StepPlan, outcome: EffectOutcome, *,
                       recorded: Optional[Dict[str, Any]] = None) -> None:
        """Move the run past a completed effect, or set it waiting."""
        run = self.run
        effect = plan.effect
        assert effect is not None
        if outcome.status == "waiting":
            assert outcome.wait is not None
            run.status = RunStatus.WAITING
            run.waiting = outcome.wait
        else:
            if effect.result_key and outcome.result is not None:
                set_nested(run.vars, effect.result_key, outcome.result)
            if effect.type_name == EffectType.LLM_CALL.value:
                count_llm_usage(run, outcome.result)
            run.effect_seq += 1
            run.pending_retry = None
            if plan.next_node:
                run.current_node = plan.next_node
        self.dirty = True
        if recorded is not None:  # replayed: nothing to write; checkpoint a wait
            self.effects_since_save += 1
            if outcome.status == "waiting":
                self.save()

    def _attempts(self, wf: Any, plan: StepPlan, key: str, policy: Any,
                  prior: List[Dict[str, Any]]) -> EffectOutcome:
        run = self.run
        effect = plan.effect
        assert effect is not None
        etype = effect.type_name
        attempts_done = 0
        last_error: Optional[str] = None
        last_failed_at: Optional[str] = None
        if run.pending_retry and run.pending_retry.get("idempotency_key") == key:
            attempts_done = int(run.pending_retry.get("attempt", 0))
        for rec in prior:
            attempts_done = max(attempts_done, int(rec.get("attempt") or 0))
            last_error = rec.get("error") or last_error
            last_failed_at = rec.get("ended_at") or last_failed_at
        max_attempts = policy.max_attempts(effect)
        if attempts_done >= max_attempts and last_error is not None:
            # We crashed after the last allowed attempt failed: do not make one more.
            n = f" after {attempts_done} attempts" if attempts_done > 1 else ""
            return EffectOutcome.failed(
                f"effect {etype!r} at node {plan.node_id!r} failed{n}: {last_error}")
        if last_failed_at is not None:
            # We crashed while deferring a retry: its attempt count is in the ledger but its
            # due time was lost. Wait out the rest of the backoff instead of retrying early.
            backoff = float(policy.backoff_seconds(effect=effect, attempt=attempts_done))
            due = parse_timestamp(last_failed_at) + timedelta(seconds=backoff)
            if backoff > self.rt.config.max_inline_backoff and due > self.rt.now():
                self._defer_retry(plan, key, attempts_done, max_attempts, due, last_error)
                return EffectOutcome.failed(last_error or "effect failed")
        attempt = attempts_done
        while True:
            attempt += 1
            started = self.rt._now_iso()
            outcome = self._invoke(wf, effect, plan, key)
            if outcome.status == "waiting" and outcome.wait is not None:
                wait = outcome.wait
                if wait.resume_to_node is None:
                    wait.resume_to_node = plan.next_node
                if wait.result_key is None:
                    wait.result_key = effect.result_key
                if wait.since is None:
                    wait.since = started
                result: Any = {"wait": wait.to_jsonable()}
            else:
                result = outcome.result
            bad = _json_ok(result) or _json_ok(effect.payload)
            if bad is not None:
                # The outcome cannot be recorded (not JSON): record that, and fail clearly
                # rather than crash the tick and run the effect again on the next one.
                error = (f"effect {etype!r} at node {plan.node_id!r}: its payload or result "
                         f"cannot be stored as JSON ({bad})")
                self.append(kind=RecordKind.EFFECT, status=StepStatus.FAILED,
                            node_id=plan.node_id, effect={"type": etype}, error=error,
                            attempt=attempt, idempotency_key=key, started_at=started)
                return EffectOutcome.failed(error, retryable=False)
            fields = dict(kind=RecordKind.EFFECT, status=_STEP_STATUS.get(outcome.status, StepStatus.FAILED),
                          node_id=plan.node_id, effect=effect.to_jsonable(), result=result,
                          error=outcome.error, attempt=attempt, idempotency_key=key,
                          started_at=started)
            if outcome.status != "failed":
                self._apply_outcome(plan, outcome)
                self.effects_since_save += 1
                checkpoint = (outcome.status == "waiting"
                              or self.effects_since_save >= self.checkpoint_every
                              or not plan.next_node)
                self.append(checkpoint=checkpoint, **fields)
                return outcome
            self.append(**fields)
            if not outcome.retryable or attempt >= max_attempts:
                n = f" after {attempt} attempts" if attempt > 1 else ""
                return EffectOutcome.failed(
                    f"effect {etype!r} at node {plan.node_id!r} failed{n}: {outcome.error}")
            backoff = float(policy.backoff_seconds(effect=effect, attempt=attempt))
            if outcome.retry_after is not None:  # the server said when (HTTP Retry-After)
                backoff = max(backoff, outcome.retry_after)
            if backoff > self.rt.config.max_inline_backoff:
                # Never block a tick (or a cron job) on a long backoff: wait durably instead.
                due = self.rt.now() + timedelta(seconds=backoff)
                self._defer_retry(plan, key, attempt, max_attempts, due, outcome.error)
                return outcome
            if backoff > 0:
                time.sleep(backoff)

    def _defer_retry(self, plan: StepPlan, key: str, attempt: int, max_attempts: int,
                     due: Any, error: Optional[str]) -> None:
        """Set the run waiting (reason ``until``) for attempt ``attempt + 1`` at ``due``."""
        assert plan.effect is not None
        run = self.run
        run.pending_retry = {"idempotency_key": key, "attempt": attempt}
        run.status = RunStatus.WAITING
        run.waiting = WaitState(
            reason=WaitReason.UNTIL,
            until=due.astimezone(timezone.utc).isoformat(),
            resume_to_node=plan.node_id,
            details={"retry": {"effect": plan.effect.type_name, "next_attempt": attempt + 1,
                               "max_attempts": max_attempts, "last_error": error}},
            since=self.rt._now_iso(),
        )
        self.dirty = True

    def _invoke(self, wf: Any, effect: Effect, plan: StepPlan, key: str) -> EffectOutcome:
        rt = self.rt
        run = self.run
        etype = effect.type_name
        entry = rt._entry(wf.workflow_id)
        handler = (entry.effect_handlers.get(etype) if entry else None) or rt._handlers.get(etype)
        timeout = entry.step_timeout if entry and entry.step_timeout is not None else rt.config.step_timeout
        builtin = rt._builtins.get(etype) if handler is None else None
        llm_config = None
        if handler is None and builtin is None:
            if etype == EffectType.LLM_CALL.value:
                try:
                    llm_config = merge_llm_config(rt.config.llm, entry.llm if entry else None)
                except ValueError as exc:
                    return EffectOutcome.failed(str(exc), retryable=False)
            if llm_config is not None:
                from .llm import llm_call

                builtin = llm_call
            elif etype == EffectType.TOOL_CALLS.value and entry is not None and entry.tools is not None:
                from .tools import tool_calls

                builtin = tool_calls
            elif etype in PASSTHROUGH_TYPES:
                builtin = passthrough
            else:
                return EffectOutcome.failed(f"no effect handler registered for {etype!r}",
                                            retryable=False)
        if builtin not in _WAIT_ONLY:
            # Record before proceeding: what this effect may act on (a resume just taken,
            # the run itself) is on disk before it runs.
            if self.unsaved:
                self.save(force=True)
            self.flush()
        try:
            with step_time_limit(timeout, lambda: StepTimeoutError(run.run_id, plan.node_id, timeout)), \
                    self.output.of(plan.node_id, run.effect_seq):
                if builtin is not None:
                    ctx = EffectContext(run=run, effect=effect, next_node=plan.next_node,
                                        idempotency_key=key, clock=rt.now,
                                        start_child=rt._start_child_for(run), llm=llm_config,
                                        tools=entry.tools if entry else None,
                                        tool_approval=entry.tool_approval if entry else None,
                                        has_registry=rt.workflow_registry is not None)
                    return check_outcome(builtin(ctx), etype)
                outcome = coerce_outcome(call_handler(handler, run, effect, plan.next_node))
        except NonRetryableError as exc:
            return EffectOutcome.failed(f"{type(exc).__name__}: {exc}", retryable=False)
        except Exception as exc:
            return EffectOutcome.failed(f"{type(exc).__name__}: {exc}")
        return check_outcome(outcome, etype)
