"""What a wait for a person or an event can carry beyond its key (PRODUCT §8).

- a deadline (``timeout``: seconds, a duration like ``15m``, or an ISO-8601 time, UTC
  when it has no offset) with ``on_timeout``: ``{"answer": TEXT}``, ``{"payload": {...}}``,
  ``{"goto": NODE}`` or ``"fail"`` (the default);
- a JSON Schema (draft 2020-12) the resume payload must match (``jsonschema``, imported
  only when a wait has a schema);
- ``allowed_actors``: who may answer (the deadline itself always may);
- ``remind_every``: a duration, kept with the wait for the ``on_wait`` hook.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

from ..errors import ActorNotAllowedError, InvalidChoiceError, SchemaError
from .answers import match_choice
from .models import WaitState
from .timeutil import parse_duration, parse_timestamp

DEADLINE_ACTOR = "deadline"


class WaitSpecError(ValueError):
    """A wait's timeout, on_timeout, schema or allowed_actors is malformed."""


def parse_deadline(timeout: Any, since: datetime) -> datetime:
    if isinstance(timeout, bool):
        raise WaitSpecError(f"timeout must be seconds, a duration or an ISO-8601 time, not {timeout!r}")
    if isinstance(timeout, (int, float)):
        if timeout < 0:
            raise WaitSpecError(f"timeout cannot be negative ({timeout})")
        return since + timedelta(seconds=float(timeout))
    if isinstance(timeout, str):
        try:
            return since + parse_duration(timeout)
        except ValueError:
            pass
        try:
            return parse_timestamp(timeout)
        except ValueError:
            raise WaitSpecError(f"timeout {timeout!r} is neither a duration (90s, 15m, 4h, 2d) "
                                "nor an ISO-8601 time") from None
    raise WaitSpecError(f"timeout must be seconds, a duration or an ISO-8601 time, not {timeout!r}")


def check_on_timeout(wait: WaitState) -> Any:
    """The normalised ``on_timeout`` of a wait, or WaitSpecError."""
    spec = wait.on_timeout if wait.on_timeout is not None else "fail"
    if spec == "fail":
        return "fail"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise WaitSpecError("on_timeout must be {\"answer\": TEXT}, {\"payload\": {...}}, "
                            f"{{\"goto\": NODE}} or \"fail\", not {spec!r}")
    (kind, value), = spec.items()
    if kind == "answer":
        if not isinstance(value, str):
            raise WaitSpecError("on_timeout answer must be a string")
        try:
            value = match_choice(wait, value)
        except InvalidChoiceError:
            raise WaitSpecError(f"on_timeout answer {value!r} is not among the choices "
                                + ", ".join(repr(c) for c in wait.choices or [])) from None
        return {"answer": value}
    if kind == "payload":
        if not isinstance(value, dict):
            raise WaitSpecError("on_timeout payload must be a JSON object")
        return {"payload": value}
    if kind == "goto":
        if not isinstance(value, str) or not value:
            raise WaitSpecError("on_timeout goto must name a node")
        return {"goto": value}
    raise WaitSpecError(f"unknown on_timeout {kind!r} (answer, payload, goto or fail)")


def check_schema(schema: Any) -> Dict[str, Any]:
    if not isinstance(schema, dict):
        raise WaitSpecError("schema must be a JSON Schema object")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError as BadSchema

    try:
        Draft202012Validator.check_schema(schema)
    except BadSchema as exc:
        raise WaitSpecError(f"schema is not a valid JSON Schema: {exc.message}") from None
    return schema


def validate_payload(schema: Dict[str, Any], payload: Any, *, run_id: str) -> None:
    """SchemaError with the first error and its JSON path (``$.amount``)."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(payload), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        err = errors[0]
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise SchemaError(run_id, path, err.message)


def check_actor(wait: WaitState, actor: Optional[str], *, run_id: str) -> None:
    if wait.allowed_actors is None or actor == DEADLINE_ACTOR:
        return
    if actor not in wait.allowed_actors:
        raise ActorNotAllowedError(run_id, actor, wait.allowed_actors)


def apply_wait_options(wait: WaitState, payload: Dict[str, Any], since: datetime) -> WaitState:
    """Fill a new wait's deadline, schema, actors and reminders from its effect payload."""
    timeout = payload.get("timeout")
    if timeout is not None:
        wait.deadline = parse_deadline(timeout, since).astimezone(timezone.utc).isoformat()
        wait.on_timeout = payload.get("on_timeout", "fail")
        wait.on_timeout = check_on_timeout(wait)
    elif payload.get("on_timeout") is not None:
        raise WaitSpecError("on_timeout needs a timeout")
    if payload.get("schema") is not None:
        wait.schema = check_schema(payload["schema"])
    actors = payload.get("allowed_actors")
    if actors is not None:
        if (not isinstance(actors, list) or not actors
                or not all(isinstance(a, str) and a for a in actors)):
            raise WaitSpecError("allowed_actors must be a non-empty list of names")
        wait.allowed_actors = list(actors)
    remind = payload.get("remind_every")
    if remind is not None:
        try:
            parse_duration(str(remind))
        except ValueError as exc:
            raise WaitSpecError(f"remind_every: {exc}") from None
        wait.remind_every = str(remind)
    return wait


def reminders_due(wait: Optional[WaitState], now: datetime) -> int:
    """How many reminders a wait should have had by ``now`` (0 without ``remind_every``)."""
    if wait is None or not wait.remind_every or not wait.since:
        return 0
    every = parse_duration(wait.remind_every).total_seconds()
    if every <= 0:
        return 0
    if wait.deadline:
        now = min(now, parse_timestamp(wait.deadline))  # none after the deadline
    return max(0, int((now - parse_timestamp(wait.since)).total_seconds() // every))


def deadline_due(wait: Optional[WaitState], now: datetime) -> bool:
    return bool(wait is not None and wait.deadline and parse_timestamp(wait.deadline) <= now)


def timeout_payload(wait: WaitState) -> Dict[str, Any]:
    """What the deadline resumes a wait with (``goto`` and ``fail`` are handled apart)."""
    spec = wait.on_timeout
    if isinstance(spec, dict) and "answer" in spec:
        return {"response": spec["answer"], "timed_out": True}
    if isinstance(spec, dict) and "payload" in spec:
        return dict(spec["payload"])
    return {"timed_out": True, "deadline": wait.deadline}


__all__: List[str] = ["parse_deadline", "check_on_timeout", "check_schema", "validate_payload",
                      "check_actor", "apply_wait_options", "deadline_due", "timeout_payload",
                      "DEADLINE_ACTOR", "WaitSpecError"]
