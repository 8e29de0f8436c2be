"""Models: JSON round trips, tolerant loading, precise errors for wrong types."""

from __future__ import annotations

import json

import pytest

from abstractrt_cli import (
    Effect,
    EffectType,
    LimitWarning,
    RecordKind,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from abstractrt_cli.core.models import effect_type_name


def _full_wait() -> WaitState:
    return WaitState(
        reason=WaitReason.USER, wait_key="user:r:n", until="2026-01-01T00:00:00+00:00",
        resume_to_node="next", result_key="a.b", prompt="Deploy?", choices=["yes", "no"],
        allow_free_text=False, details={"x": [1, 2]},
    )


def _full_run() -> RunState:
    run = RunState.new(workflow_id="wf", entry_node="start", vars={"k": {"n": 1}},
                       actor_id="alice", session_id="s1", parent_run_id="p1", run_id="r1")
    run.status = RunStatus.WAITING
    run.waiting = _full_wait()
    run.output = {"o": 1}
    run.error = "e"
    run.effect_seq = 3
    run.ledger_count = 7
    run.ledger_head = "ab" * 32
    run.pending_retry = {"idempotency_key": "k", "attempt": 2}
    run.workflow_source = "/x/wf.py"
    run.workflow_fingerprint = "f00"
    return run


def test_run_state_json_round_trip():
    run = _full_run()
    data = json.loads(json.dumps(run.to_jsonable()))
    assert RunState.from_dict(data) == run
    assert data["status"] == "waiting" and data["waiting"]["reason"] == "user"


@pytest.mark.parametrize("status", list(RunStatus))
def test_run_state_round_trip_every_status(status):
    run = RunState.new(workflow_id="wf", entry_node="a")
    run.status = status
    assert RunState.from_dict(json.loads(json.dumps(run.to_jsonable()))) == run


def test_run_state_public_fields_present():
    data = _full_run().to_jsonable()
    for name in ("run_id", "workflow_id", "status", "current_node", "vars", "waiting",
                 "output", "error", "created_at", "updated_at", "actor_id", "session_id",
                 "parent_run_id"):
        assert name in data


def test_wait_state_round_trip():
    wait = _full_wait()
    assert WaitState.from_dict(json.loads(json.dumps(wait.to_jsonable()))) == wait


def test_run_state_from_dict_tolerates_missing_optional_keys():
    run = RunState.from_dict({"run_id": "r", "workflow_id": "w", "status": "running",
                              "current_node": "a"})
    assert run.vars == {} and run.waiting is None and run.output is None
    assert run.effect_seq == 0 and run.ledger_count == 0 and run.ledger_head is None
    assert run.created_at and run.updated_at
    assert run.pending_retry is None and run.parent_run_id is None


def test_wait_state_from_dict_tolerates_missing_optional_keys():
    wait = WaitState.from_dict({"reason": "event"})
    assert wait.reason is WaitReason.EVENT
    assert wait.allow_free_text is True and wait.choices is None and wait.details is None


@pytest.mark.parametrize("field,value", [
    ("run_id", 5), ("workflow_id", None), ("current_node", ["a"]), ("vars", []),
    ("output", "done"), ("error", 3), ("created_at", 1.5), ("actor_id", {}),
    ("parent_run_id", 7), ("effect_seq", "3"), ("ledger_count", None), ("ledger_head", 1),
    ("pending_retry", "x"), ("workflow_source", 1),
])
def test_run_state_from_dict_rejects_wrong_type_naming_field(field, value):
    data = _full_run().to_jsonable()
    data[field] = value
    with pytest.raises(ValueError, match=repr(field)):
        RunState.from_dict(data)


def test_run_state_from_dict_rejects_unknown_status():
    data = _full_run().to_jsonable() | {"status": "sleeping"}
    with pytest.raises(ValueError, match="status"):
        RunState.from_dict(data)


def test_run_state_from_dict_rejects_non_dict():
    with pytest.raises(ValueError, match="run"):
        RunState.from_dict(["not", "a", "run"])


@pytest.mark.parametrize("field,value", [
    ("wait_key", 1), ("until", 5), ("resume_to_node", []), ("result_key", 2),
    ("prompt", {}), ("choices", "yes,no"), ("details", [1]), ("allow_free_text", "false"),
])
def test_wait_state_from_dict_rejects_wrong_type_naming_field(field, value):
    data = _full_wait().to_jsonable() | {field: value}
    with pytest.raises(ValueError, match=f"waiting.{field}"):
        WaitState.from_dict(data)


def test_wait_state_from_dict_rejects_unknown_reason():
    with pytest.raises(ValueError, match="waiting.reason"):
        WaitState.from_dict({"reason": "nap"})


def test_nested_wait_error_surfaces_from_run():
    data = _full_run().to_jsonable()
    data["waiting"]["choices"] = 3
    with pytest.raises(ValueError, match="waiting.choices"):
        RunState.from_dict(data)


def test_wait_state_coerce_accepts_look_alike():
    class Foreign:
        reason = type("R", (), {"value": "job"})()
        wait_key = "k"
        until = None
        resume_to_node = "n"
        result_key = "r"
        prompt = None
        choices = None
        allow_free_text = True
        details = {"a": 1}

    wait = WaitState.coerce(Foreign())
    assert wait.reason is WaitReason.JOB and wait.wait_key == "k" and wait.details == {"a": 1}
    assert WaitState.coerce(wait) is wait
    assert WaitState.coerce({"reason": "user"}).reason is WaitReason.USER


def test_terminal_statuses():
    assert {s for s in RunStatus if s.is_terminal} == {
        RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}


def test_effect_type_name_and_json():
    class Foreign:
        value = "tool_calls"

    assert effect_type_name(EffectType.ASK_USER) == "ask_user"
    assert effect_type_name(Foreign()) == "tool_calls"
    assert effect_type_name("custom") == "custom"
    eff = Effect(EffectType.WAIT_EVENT, {"wait_key": "k"}, "r")
    assert eff.to_jsonable() == {"type": "wait_event", "payload": {"wait_key": "k"},
                                 "result_key": "r"}
    assert json.loads(json.dumps(Effect("my_type").to_jsonable()))["type"] == "my_type"


def test_step_record_json_has_abstractruntime_fields():
    rec = StepRecord(run_id="r", step_id="s", node_id="n", status=StepStatus.COMPLETED,
                     kind=RecordKind.RESUME, result={"a": 1})
    data = json.loads(json.dumps(rec.to_jsonable()))
    for name in ("run_id", "step_id", "node_id", "status", "effect", "result", "error",
                 "started_at", "ended_at", "actor_id", "session_id", "attempt",
                 "idempotency_key", "prev_hash", "record_hash"):
        assert name in data
    assert data["status"] == "completed" and data["kind"] == "resume"


def test_limit_warning_pct():
    assert LimitWarning("iterations", "warning", 20, 25).pct == 80.0
    assert LimitWarning("tokens", "exceeded", 5, 0).pct == 0.0


# ------------------------------------------------------- written-out dataclass __init__s


def _marked_classes():
    """Every class whose __init__ scripts/dataclass_methods.py writes out."""
    import importlib

    from abstractrt_cli.core.dc import Plain

    sys_path = __import__("pathlib").Path(__file__).resolve().parent.parent / "scripts"
    spec = importlib.util.spec_from_file_location("dataclass_methods", sys_path / "dataclass_methods.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = []
    for name in tool.FILES:
        module = importlib.import_module("abstractrt_cli." + name[:-3].replace("/", "."))
        out += [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Plain)
                and v.__module__ == module.__name__ and "__dataclass_fields__" in v.__dict__]
    return tool, out


def test_written_out_inits_are_current():
    """A field added to a marked class without re-running the script fails here."""
    tool, classes = _marked_classes()
    assert tool.main(["--check"]) == 0
    assert len(classes) >= 15


_POST_INIT_SAMPLES = {
    "LimitWarning": {"limit_type": "iterations", "status": "warning", "current": 3, "maximum": 4,
                     "pct": 75.0},
    "DefaultEffectPolicy": {"default_max_attempts": 2, "default_backoff_base": 0.5,
                            "default_backoff_max": 9.0, "effect_max_attempts": {"tool_calls": 3}},
}


def test_written_out_classes_behave_as_dataclasses():
    """Same signature, defaults, repr, equality, hashing and frozenness as the
    @dataclass the class would be without its written-out __init__."""
    import dataclasses
    import inspect

    from abstractrt_cli.core.dc import Frozen

    _tool, classes = _marked_classes()
    for cls in classes:
        frozen = issubclass(cls, Frozen)
        spec = []
        for f in dataclasses.fields(cls):
            extra = {}
            if f.default is not dataclasses.MISSING:
                extra["default"] = f.default
            if f.default_factory is not dataclasses.MISSING:
                extra["default_factory"] = f.default_factory
            spec.append((f.name, f.type, dataclasses.field(**extra)))
        twin = dataclasses.make_dataclass(cls.__name__, spec, frozen=frozen)
        ours, theirs = inspect.signature(cls), inspect.signature(twin)
        assert list(ours.parameters) == list(theirs.parameters), cls
        for name, p in ours.parameters.items():
            q = theirs.parameters[name]
            assert p.kind == q.kind, (cls, name)
            assert repr(p.default) == repr(q.default) or p.default == q.default, (cls, name)
        # An instance from the required fields (a sentinel each), and its twin.
        # A distinct value for every field (what __post_init__ can take, where it checks).
        every = {n: object() for n in ours.parameters} | _POST_INIT_SAMPLES.get(cls.__name__, {})
        required = {n: every[n] for n, p in ours.parameters.items() if p.default is p.empty}
        assert repr(cls(**every)).replace(cls.__qualname__, "X") == \
            repr(twin(**every)).replace(twin.__qualname__, "X")
        a, b = cls(**required), twin(**required)
        assert cls(**every) == cls(**every) and cls(**every) != twin(**every)
        assert a != object() and cls(**every) != cls(**{**every, next(iter(every)): "other"})
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING:
                made = f.default_factory()
                assert type(getattr(a, f.name)) is type(made)
                if isinstance(made, (dict, list)):
                    assert getattr(a, f.name) is not getattr(cls(**required), f.name)  # fresh
        if frozen:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(a, next(iter(required), dataclasses.fields(cls)[0].name), 1)
            try:
                assert hash(cls(**every)) == hash(cls(**every))
            except TypeError:  # a field that is not hashable (a dict): as @dataclass's
                with pytest.raises(TypeError):
                    hash(b)
        else:
            with pytest.raises(TypeError):
                hash(a)
            first = dataclasses.fields(cls)[0].name
            setattr(a, first, "changed")
            assert getattr(a, first) == "changed"
        assert dataclasses.replace(cls(**every)) == cls(**every)


def test_the_script_converts_a_dataclass_into_a_marked_one():
    """``--convert`` marks a class and writes its __init__; regenerating it is a no-op."""
    import dataclasses
    import textwrap

    tool, _classes = _marked_classes()
    src = textwrap.dedent('''\
        from dataclasses import dataclass, field
        from typing import List, Optional

        from abstractrt_cli.core.dc import FACTORY, Frozen, Plain


        @dataclass
        class Box:
            """A box."""

            name: str
            tags: List[str] = field(default_factory=list)
            size: Optional[int] = None  # a comment stays


        @dataclass(frozen=True)
        class Key:
            kind: str
            n: int = 0
        ''')
    out = tool.convert(src)
    assert out.count(tool.DECORATOR) == 2 and "class Box(Plain):" in out and "class Key(Frozen):" in out
    assert tool.regenerate(out) == out
    ns: dict = {}
    exec(compile(out, "<converted>", "exec"), ns)
    box = ns["Box"]("b")
    assert box.tags == [] and box.size is None and repr(box) == "Box(name='b', tags=[], size=None)"
    assert [f.name for f in dataclasses.fields(ns["Box"])] == ["name", "tags", "size"]
    key = ns["Key"]("k", 2)
    assert hash(key) == hash(ns["Key"]("k", 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.n = 3
