"""Data model of the kernel: runs, waits, effects, plans and ledger records.

Everything here is a dataclass whose JSON form (``to_jsonable``) feeds both the files
and ``--json``; ``from_dict`` tolerates missing keys so older files still load, and
rejects wrong types with a clear error. Enums are stored by value.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Dict, List, Optional

from .dc import FACTORY, Frozen, Plain


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def utc_now_iso() -> str:
    return utc_now().isoformat()


class RunStatus(str, Enum):
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class WaitReason(str, Enum):
    EVENT = "event"
    UNTIL = "until"
    USER = "user"
    JOB = "job"
    SUBWORKFLOW = "subworkflow"


class EffectType(str, Enum):
    WAIT_EVENT = "wait_event"
    WAIT_UNTIL = "wait_until"
    ASK_USER = "ask_user"
    LLM_CALL = "llm_call"
    TOOL_CALLS = "tool_calls"
    START_SUBWORKFLOW = "start_subworkflow"


class StepStatus(str, Enum):
    STARTED = "started"
    CHECKPOINTED = "checkpointed"
    COMPLETED = "completed"
    WAITING = "waiting"
    FAILED = "failed"
    RESUMED = "resumed"
    CANCELLED = "cancelled"
    UPDATED = "updated"


class RecordKind(str, Enum):
    """What a ledger record is about (an extra field beside AbstractRuntime's)."""

    EFFECT = "effect"  # one attempt of an effect
    COMPLETE = "complete"  # the run completed
    FAIL = "fail"  # the run failed
    RESUME = "resume"  # someone (or something) resumed a waiting run
    CANCEL = "cancel"
    LIMITS = "limits"
    START = "start"  # the run was created: by whom, from which workflow, with which vars
    GUARD = "guard"  # a limit was reached: the run waits for a person to continue or stop
    RETRY = "retry"  # a failed run was put back to running (``abstractrt retry``)
    REMINDER = "reminder"  # a person's open wait was reminded (``remind_every``)
    FORK = "fork"  # the first record of a run forked from another run's history
    CHECKPOINT = "checkpoint"  # carries the digest of a state no other record leads to


def effect_type_name(value: Any) -> str:
    """The string name of an effect type: an enum (ours or a look-alike's) or a string."""
    return str(getattr(value, "value", value))


def _check(name: str, value: Any, types: Any, *, optional: bool = True) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, types):
        want = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise ValueError(f"field {name!r} must be {want}, not {type(value).__name__}")
    return value


@dataclass(init=False, repr=False, eq=False)
class Effect(Frozen):
    """A request for a side effect; the runtime stores its result at ``result_key``."""

    type: Any  # EffectType or any string naming a registered handler
    payload: Dict[str, Any] = field(default_factory=dict)
    result_key: Optional[str] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(
        self,
        type: Any,
        payload: Dict[str, Any] = FACTORY,
        result_key: Optional[str] = None,
    ) -> None:
        object.__setattr__(self, 'type', type)
        object.__setattr__(self, 'payload', dict() if payload is FACTORY else payload)
        object.__setattr__(self, 'result_key', result_key)
    # --- end of the written-out __init__ ---

    @property
    def type_name(self) -> str:
        return effect_type_name(self.type)

    def to_jsonable(self) -> Dict[str, Any]:
        return {"type": self.type_name, "payload": self.payload, "result_key": self.result_key}


@dataclass(init=False, repr=False, eq=False)
class StepPlan(Frozen):
    """What a node asks for: an effect, a transition, or completion."""

    node_id: str
    effect: Optional[Effect] = None
    next_node: Optional[str] = None
    complete_output: Optional[Dict[str, Any]] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (frozen) ---
    def __init__(
        self,
        node_id: str,
        effect: Optional[Effect] = None,
        next_node: Optional[str] = None,
        complete_output: Optional[Dict[str, Any]] = None,
    ) -> None:
        object.__setattr__(self, 'node_id', node_id)
        object.__setattr__(self, 'effect', effect)
        object.__setattr__(self, 'next_node', next_node)
        object.__setattr__(self, 'complete_output', complete_output)
    # --- end of the written-out __init__ ---


@dataclass(init=False, repr=False, eq=False)
class WaitState(Plain):
    """A durable pause: what the run waits for and where it goes next."""

    reason: WaitReason
    wait_key: Optional[str] = None
    until: Optional[str] = None  # ISO-8601, normalised to UTC
    resume_to_node: Optional[str] = None
    result_key: Optional[str] = None
    prompt: Optional[str] = None
    choices: Optional[List[str]] = None
    allow_free_text: bool = True
    details: Optional[Dict[str, Any]] = None
    since: Optional[str] = None  # when the wait began (kept when limits or retries touch the run)
    # PRODUCT §8: a deadline (UTC ISO) and what happens then; a JSON Schema for the
    # payload; who may answer; how often to remind.
    deadline: Optional[str] = None
    on_timeout: Any = None  # {"answer": TEXT} | {"payload": {...}} | {"goto": NODE} | "fail"
    schema: Optional[Dict[str, Any]] = None
    allowed_actors: Optional[List[str]] = None
    remind_every: Optional[str] = None
    reminded: Optional[int] = None  # how many reminders were sent for this wait

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        reason: WaitReason,
        wait_key: Optional[str] = None,
        until: Optional[str] = None,
        resume_to_node: Optional[str] = None,
        result_key: Optional[str] = None,
        prompt: Optional[str] = None,
        choices: Optional[List[str]] = None,
        allow_free_text: bool = True,
        details: Optional[Dict[str, Any]] = None,
        since: Optional[str] = None,
        deadline: Optional[str] = None,
        on_timeout: Any = None,
        schema: Optional[Dict[str, Any]] = None,
        allowed_actors: Optional[List[str]] = None,
        remind_every: Optional[str] = None,
        reminded: Optional[int] = None,
    ) -> None:
        self.reason = reason
        self.wait_key = wait_key
        self.until = until
        self.resume_to_node = resume_to_node
        self.result_key = result_key
        self.prompt = prompt
        self.choices = choices
        self.allow_free_text = allow_free_text
        self.details = details
        self.since = since
        self.deadline = deadline
        self.on_timeout = on_timeout
        self.schema = schema
        self.allowed_actors = allowed_actors
        self.remind_every = remind_every
        self.reminded = reminded
    # --- end of the written-out __init__ ---

    def to_jsonable(self) -> Dict[str, Any]:
        return {
            "reason": self.reason.value,
            "wait_key": self.wait_key,
            "until": self.until,
            "resume_to_node": self.resume_to_node,
            "result_key": self.result_key,
            "prompt": self.prompt,
            "choices": self.choices,
            "allow_free_text": self.allow_free_text,
            "details": self.details,
            "since": self.since,
            **({"deadline": self.deadline, "on_timeout": self.on_timeout}
               if self.deadline else {}),
            **({"schema": self.schema} if self.schema is not None else {}),
            **({"allowed_actors": self.allowed_actors} if self.allowed_actors is not None else {}),
            **({"remind_every": self.remind_every} if self.remind_every else {}),
            **({"reminded": self.reminded} if self.reminded else {}),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "WaitState":
        _check("waiting", data, dict, optional=False)
        reason = data.get("reason")
        try:
            reason = WaitReason(getattr(reason, "value", reason))
        except ValueError:
            raise ValueError(f"field 'waiting.reason' has unknown value {reason!r}") from None
        choices = _check("waiting.choices", data.get("choices"), list)
        return cls(
            reason=reason,
            wait_key=_check("waiting.wait_key", data.get("wait_key"), str),
            until=_check("waiting.until", data.get("until"), str),
            resume_to_node=_check("waiting.resume_to_node", data.get("resume_to_node"), str),
            result_key=_check("waiting.result_key", data.get("result_key"), str),
            prompt=_check("waiting.prompt", data.get("prompt"), str),
            choices=[str(c) for c in choices] if choices is not None else None,
            allow_free_text=_check("waiting.allow_free_text", data.get("allow_free_text"),
                                   bool) is not False,
            details=_check("waiting.details", data.get("details"), dict),
            since=_check("waiting.since", data.get("since"), str),
            deadline=_check("waiting.deadline", data.get("deadline"), str),
            on_timeout=data.get("on_timeout"),
            schema=_check("waiting.schema", data.get("schema"), dict),
            allowed_actors=_check("waiting.allowed_actors", data.get("allowed_actors"), list),
            remind_every=_check("waiting.remind_every", data.get("remind_every"), str),
            reminded=_check("waiting.reminded", data.get("reminded"), int),
        )

    @classmethod
    def coerce(cls, obj: Any) -> "WaitState":
        """Accept our WaitState or a look-alike (e.g. AbstractRuntime's)."""
        if isinstance(obj, cls):
            return obj
        if isinstance(obj, dict):
            return cls.from_dict(obj)
        return cls.from_dict({f.name: getattr(obj, f.name, None) for f in fields(cls)}
                             | {"allow_free_text": getattr(obj, "allow_free_text", True)})


@dataclass(init=False, repr=False, eq=False)
class RunState(Plain):
    """Durable state of one run; its JSON form is the run file."""

    run_id: str
    workflow_id: str
    status: RunStatus
    current_node: str
    vars: Dict[str, Any] = field(default_factory=dict)
    waiting: Optional[WaitState] = None
    output: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    created_at: str = field(default_factory=utc_now_iso)
    updated_at: str = field(default_factory=utc_now_iso)
    actor_id: Optional[str] = None
    session_id: Optional[str] = None
    parent_run_id: Optional[str] = None
    # Fields beyond AbstractRuntime's:
    effect_seq: int = 0  # effect steps finished so far; part of the idempotency key
    ledger_count: int = 0  # ledger records at the last checkpoint
    ledger_head: Optional[str] = None  # hash of the last of them
    pending_retry: Optional[Dict[str, Any]] = None  # {"idempotency_key", "attempt"}
    workflow_source: Optional[str] = None
    workflow_fingerprint: Optional[str] = None
    # A node's exception: {"type", "message", "file", "line", "traceback": [lines]}.
    error_info: Optional[Dict[str, Any]] = None
    # HMAC-SHA256 over (run id, ledger count, ledger head, state digest), with a signing key.
    checkpoint_sig: Optional[str] = None
    # A tool_calls step between approval waits: {"effect_key", "results", "decisions"}.
    tool_progress: Optional[Dict[str, Any]] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        run_id: str,
        workflow_id: str,
        status: RunStatus,
        current_node: str,
        vars: Dict[str, Any] = FACTORY,
        waiting: Optional[WaitState] = None,
        output: Optional[Dict[str, Any]] = None,
        error: Optional[str] = None,
        created_at: str = FACTORY,
        updated_at: str = FACTORY,
        actor_id: Optional[str] = None,
        session_id: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        effect_seq: int = 0,
        ledger_count: int = 0,
        ledger_head: Optional[str] = None,
        pending_retry: Optional[Dict[str, Any]] = None,
        workflow_source: Optional[str] = None,
        workflow_fingerprint: Optional[str] = None,
        error_info: Optional[Dict[str, Any]] = None,
        checkpoint_sig: Optional[str] = None,
        tool_progress: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.status = status
        self.current_node = current_node
        self.vars = dict() if vars is FACTORY else vars
        self.waiting = waiting
        self.output = output
        self.error = error
        self.created_at = utc_now_iso() if created_at is FACTORY else created_at
        self.updated_at = utc_now_iso() if updated_at is FACTORY else updated_at
        self.actor_id = actor_id
        self.session_id = session_id
        self.parent_run_id = parent_run_id
        self.effect_seq = effect_seq
        self.ledger_count = ledger_count
        self.ledger_head = ledger_head
        self.pending_retry = pending_retry
        self.workflow_source = workflow_source
        self.workflow_fingerprint = workflow_fingerprint
        self.error_info = error_info
        self.checkpoint_sig = checkpoint_sig
        self.tool_progress = tool_progress
    # --- end of the written-out __init__ ---

    @classmethod
    def new(
        cls,
        *,
        workflow_id: str,
        entry_node: str,
        vars: Optional[Dict[str, Any]] = None,
        actor_id: Optional[str] = None,
        session_id: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        run_id: Optional[str] = None,
    ) -> "RunState":
        return cls(
            run_id=run_id or str(uuid.uuid4()),
            workflow_id=workflow_id,
            status=RunStatus.RUNNING,
            current_node=entry_node,
            vars=vars if vars is not None else {},
            actor_id=actor_id,
            session_id=session_id,
            parent_run_id=parent_run_id,
        )

    def to_jsonable(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "status": self.status.value,
            "current_node": self.current_node,
            "vars": self.vars,
            "waiting": self.waiting.to_jsonable() if self.waiting else None,
            "output": self.output,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "actor_id": self.actor_id,
            "session_id": self.session_id,
            "parent_run_id": self.parent_run_id,
            "effect_seq": self.effect_seq,
            "ledger_count": self.ledger_count,
            "ledger_head": self.ledger_head,
            "pending_retry": self.pending_retry,
            "workflow_source": self.workflow_source,
            "workflow_fingerprint": self.workflow_fingerprint,
            "error_info": self.error_info,
            "checkpoint_sig": self.checkpoint_sig,
            "tool_progress": self.tool_progress,
        }

    @classmethod
    def from_dict(cls, data: Any) -> "RunState":
        """Build a run from its JSON form; raises ValueError naming a bad field."""
        _check("run", data, dict, optional=False)
        for name in ("run_id", "workflow_id", "current_node"):
            _check(name, data.get(name), str, optional=False)
        status = data.get("status")
        try:
            status = RunStatus(status)
        except ValueError:
            raise ValueError(f"field 'status' has unknown value {status!r}") from None
        waiting = data.get("waiting")
        now = utc_now_iso()
        return cls(
            run_id=data["run_id"],
            workflow_id=data["workflow_id"],
            status=status,
            current_node=data["current_node"],
            vars=_check("vars", data.get("vars"), dict) or {},
            waiting=WaitState.from_dict(waiting) if waiting is not None else None,
            output=_check("output", data.get("output"), dict),
            error=_check("error", data.get("error"), str),
            created_at=_check("created_at", data.get("created_at"), str) or now,
            updated_at=_check("updated_at", data.get("updated_at"), str) or now,
            actor_id=_check("actor_id", data.get("actor_id"), str),
            session_id=_check("session_id", data.get("session_id"), str),
            parent_run_id=_check("parent_run_id", data.get("parent_run_id"), str),
            effect_seq=_check("effect_seq", data.get("effect_seq", 0), int, optional=False),
            ledger_count=_check("ledger_count", data.get("ledger_count", 0), int, optional=False),
            ledger_head=_check("ledger_head", data.get("ledger_head"), str),
            pending_retry=_check("pending_retry", data.get("pending_retry"), dict),
            workflow_source=_check("workflow_source", data.get("workflow_source"), str),
            workflow_fingerprint=_check(
                "workflow_fingerprint", data.get("workflow_fingerprint"), str
            ),
            error_info=_check("error_info", data.get("error_info"), dict),
            checkpoint_sig=_check("checkpoint_sig", data.get("checkpoint_sig"), str),
            tool_progress=_check("tool_progress", data.get("tool_progress"), dict),
        )


@dataclass(init=False, repr=False, eq=False)
class StepRecord(Plain):
    """One append-only ledger entry."""

    run_id: str
    step_id: str
    node_id: str
    status: StepStatus
    effect: Optional[Dict[str, Any]] = None
    result: Optional[Any] = None
    error: Optional[str] = None
    started_at: str = field(default_factory=utc_now_iso)
    ended_at: Optional[str] = None
    actor_id: Optional[str] = None
    session_id: Optional[str] = None
    attempt: int = 1
    idempotency_key: Optional[str] = None
    prev_hash: Optional[str] = None
    record_hash: Optional[str] = None
    # Beyond AbstractRuntime: what the record is about, and its position in the chain.
    kind: RecordKind = RecordKind.EFFECT
    seq: Optional[int] = None
    # The digest of the run's state as checkpointed right after this record (if it is).
    state_digest: Optional[str] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        run_id: str,
        step_id: str,
        node_id: str,
        status: StepStatus,
        effect: Optional[Dict[str, Any]] = None,
        result: Optional[Any] = None,
        error: Optional[str] = None,
        started_at: str = FACTORY,
        ended_at: Optional[str] = None,
        actor_id: Optional[str] = None,
        session_id: Optional[str] = None,
        attempt: int = 1,
        idempotency_key: Optional[str] = None,
        prev_hash: Optional[str] = None,
        record_hash: Optional[str] = None,
        kind: RecordKind = RecordKind.EFFECT,
        seq: Optional[int] = None,
        state_digest: Optional[str] = None,
    ) -> None:
        self.run_id = run_id
        self.step_id = step_id
        self.node_id = node_id
        self.status = status
        self.effect = effect
        self.result = result
        self.error = error
        self.started_at = utc_now_iso() if started_at is FACTORY else started_at
        self.ended_at = ended_at
        self.actor_id = actor_id
        self.session_id = session_id
        self.attempt = attempt
        self.idempotency_key = idempotency_key
        self.prev_hash = prev_hash
        self.record_hash = record_hash
        self.kind = kind
        self.seq = seq
        self.state_digest = state_digest
    # --- end of the written-out __init__ ---

    def to_jsonable(self) -> Dict[str, Any]:
        return {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "node_id": self.node_id,
            "status": self.status.value,
            "effect": self.effect,
            "result": self.result,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "actor_id": self.actor_id,
            "session_id": self.session_id,
            "attempt": self.attempt,
            "idempotency_key": self.idempotency_key,
            "kind": self.kind.value,
            "seq": self.seq,
            "prev_hash": self.prev_hash,
            "record_hash": self.record_hash,
        } | ({"state_digest": self.state_digest} if self.state_digest else {})


@dataclass(init=False, repr=False, eq=False)
class KeptEvent(Plain):
    """An emitted event kept in the store's mailbox (PRODUCT §8) until it expires."""

    event_id: str
    key: str
    payload: Dict[str, Any]
    emitted_at: str
    expires_at: str
    received_by: List[str] = field(default_factory=list)
    actor_id: Optional[str] = None

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        event_id: str,
        key: str,
        payload: Dict[str, Any],
        emitted_at: str,
        expires_at: str,
        received_by: List[str] = FACTORY,
        actor_id: Optional[str] = None,
    ) -> None:
        self.event_id = event_id
        self.key = key
        self.payload = payload
        self.emitted_at = emitted_at
        self.expires_at = expires_at
        self.received_by = list() if received_by is FACTORY else received_by
        self.actor_id = actor_id
    # --- end of the written-out __init__ ---

    def to_jsonable(self) -> Dict[str, Any]:
        return {"event_id": self.event_id, "key": self.key, "payload": self.payload,
                "emitted_at": self.emitted_at, "expires_at": self.expires_at,
                "received_by": list(self.received_by), "actor_id": self.actor_id}

    @classmethod
    def from_dict(cls, data: Any) -> "KeptEvent":
        _check("event", data, dict, optional=False)
        for name in ("event_id", "key", "emitted_at", "expires_at"):
            _check(name, data.get(name), str, optional=False)
        return cls(event_id=data["event_id"], key=data["key"],
                   payload=_check("payload", data.get("payload"), dict) or {},
                   emitted_at=data["emitted_at"], expires_at=data["expires_at"],
                   received_by=[str(r) for r in _check("received_by", data.get("received_by"), list) or []],
                   actor_id=_check("actor_id", data.get("actor_id"), str))


@dataclass(init=False, repr=False, eq=False)
class LimitWarning(Plain):
    """A limit at its warning threshold or exceeded (see ``Runtime.check_limits``)."""

    limit_type: str
    status: str  # "warning" | "exceeded"
    current: int
    maximum: int
    pct: float = 0.0

    # --- __init__ written out by scripts/dataclass_methods.py from the fields (plain) ---
    def __init__(
        self,
        limit_type: str,
        status: str,
        current: int,
        maximum: int,
        pct: float = 0.0,
    ) -> None:
        self.limit_type = limit_type
        self.status = status
        self.current = current
        self.maximum = maximum
        self.pct = pct
        self.__post_init__()
    # --- end of the written-out __init__ ---

    def __post_init__(self) -> None:
        if self.maximum > 0:
            self.pct = round(self.current / self.maximum * 100, 1)
