"""The runtime kernel, rule by rule (PRODUCT.md §1), through the library with memory stores.

Tests named ``test_defect_N_...`` pin the AbstractRuntime 0.2.0 defects this project
fixes; each fails on the old behaviour.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any, Dict, List, Optional

import pytest
from kernel_helpers import finish, node

from abstractrt_cli import (
    DefaultEffectPolicy,
    Effect,
    EffectOutcome,
    EffectType,
    InMemoryLedgerStore,
    InMemoryRunStore,
    NonRetryableError,
    RetryPolicy,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WaitState,
    WorkflowSpec,
    verify_ledger_chain,
)
from abstractrt_cli.core import loop as runtime_module
from abstractrt_cli.core.timeutil import parse_timestamp
from abstractrt_cli.errors import (
    InvalidChoiceError,
    LimitsError,
    PayloadError,
    RunBusyError,
    RunNotWaitingError,
    UnknownRunError,
    UnknownWorkflowError,
    WaitKeyMismatchError,
)

# ---------------------------------------------------------------------------- helpers




def wf(workflow_id: str = "wf", entry: str = "a", **nodes) -> WorkflowSpec:
    return WorkflowSpec(workflow_id=workflow_id, entry_node=entry, nodes=nodes)


def effect_wf(etype: Any, payload: Optional[dict] = None, *, result_key: str = "r",
              workflow_id: str = "wf") -> WorkflowSpec:
    return wf(workflow_id, a=node("a", effect=Effect(etype, payload or {}, result_key),
                                  next="end"), end=finish())


def launch(rt, workflow, *, handlers=None, policy=None, tick=True, **start_kw):
    """Register ``workflow`` with the runtime's registry, start a run, tick it once."""
    rt.workflow_registry.register(workflow, effect_handlers=handlers, effect_policy=policy)
    rid = rt.start(workflow=workflow, **start_kw)
    run = rt.tick(run_id=rid) if tick else rt.get_state(rid)
    return rid, run


def records(rt, rid, kind: Optional[str] = None) -> List[dict]:
    recs = rt.get_ledger(rid)
    return [r for r in recs if kind is None or r["kind"] == kind]


def snapshot(rt, rid):
    """Everything a refused operation must leave as it was."""
    return rt.get_state(rid).to_jsonable(), rt.get_ledger(rid)


def runtime_tick_is_stable(rt, rid) -> bool:
    before = snapshot(rt, rid)
    rt.tick(run_id=rid)
    return snapshot(rt, rid) == before


def assert_ledger_verifies(rt, rid):
    run = rt.get_state(rid)
    report = verify_ledger_chain(rt.get_ledger(rid), expected_count=run.ledger_count,
                                 expected_head=run.ledger_head)
    assert report["ok"], report
    assert run.ledger_count == len(rt.get_ledger(rid))


class Handler:
    """A custom effect handler that counts its calls; fails its first ``fail`` calls."""

    def __init__(self, fail: int = 0, exc: type = RuntimeError, result: Any = None):
        self.calls: List[Dict[str, Any]] = []
        self.fail = fail
        self.exc = exc
        self.result = result

    def __call__(self, run, effect, default_next_node):
        self.calls.append({"payload": effect.payload, "next": default_next_node,
                           "node": run.current_node})
        if len(self.calls) <= self.fail:
            raise self.exc(f"failure {len(self.calls)}")
        return self.result if self.result is not None else {"n": len(self.calls)}


class SimulatedCrash(Exception):
    """Stands for the process dying (kill -9) at the instant a checkpoint would be written."""


class CrashingRunStore(InMemoryRunStore):
    """A run store whose next ``save`` dies once ``crash_next`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_next = False

    def save(self, run) -> None:
        if self.crash_next:
            self.crash_next = False
            raise SimulatedCrash(f"died before checkpointing {run.run_id}")
        super().save(run)


class SpyLedger:
    """A ledger store that reports how the runtime reads it."""

    def __init__(self) -> None:
        self.inner = InMemoryLedgerStore()
        self.list_calls = 0
        self.since: List[tuple] = []  # (count asked for, records in ledger, records returned)

    def append(self, record):
        return self.inner.append(record)

    def head(self, run_id):
        return self.inner.head(run_id)

    def list(self, run_id):
        self.list_calls += 1
        return self.inner.list(run_id)

    def records_since(self, run_id, count):
        recs = self.inner.records_since(run_id, count)
        self.since.append((count, self.inner.head(run_id)[0], len(recs)))
        return recs


def counter_loop_wf(etype: str, iterations: int, payload: Optional[dict] = None) -> WorkflowSpec:
    """``a`` runs an effect with the same payload each visit; ``b`` loops back."""

    def a(run, ctx):
        return StepPlan("a", effect=Effect(etype, dict(payload or {"same": True}), "r"),
                        next_node="b")

    def b(run, ctx):
        run.vars.setdefault("seen", []).append(run.vars["r"])
        run.vars["i"] = run.vars.get("i", 0) + 1
        return StepPlan("b", next_node="a" if run.vars["i"] < iterations else "end")

    return wf(a=a, b=b, end=finish())


# ---------------------------------------------------------------------------- ask_user


def ask_wf(**payload) -> WorkflowSpec:
    return effect_wf(EffectType.ASK_USER, {"prompt": "Deploy?", **payload}, result_key="answer")


def test_ask_user_waits_with_default_wait_key(runtime):
    rid, run = launch(runtime, ask_wf())
    assert run.status is RunStatus.WAITING
    w = run.waiting
    assert w.reason is WaitReason.USER
    assert w.wait_key == f"user:{rid}:a"
    assert (w.prompt, w.choices, w.allow_free_text) == ("Deploy?", None, True)
    assert (w.result_key, w.resume_to_node) == ("answer", "end")
    assert runtime.get_state(rid).to_jsonable() == run.to_jsonable()  # checkpointed


def test_ask_user_tick_while_waiting_changes_nothing(runtime):
    rid, _ = launch(runtime, ask_wf())
    before = snapshot(runtime, rid)
    assert runtime.tick(run_id=rid).status is RunStatus.WAITING
    assert snapshot(runtime, rid) == before


def test_ask_user_custom_wait_key_and_resume_node(runtime):
    w = wf(a=node("a", effect=Effect("ask_user", {"prompt": "P", "wait_key": "approval:1",
                                                  "resume_to_node": "other"}, "ans"),
                  next="end"),
           end=node("end", out={"went": "end"}), other=node("other", out={"went": "other"}))
    rid, run = launch(runtime, w)
    assert run.waiting.wait_key == "approval:1"
    done = runtime.resume(run_id=rid, payload={"response": "ok"}, wait_key="approval:1")
    assert done.status is RunStatus.COMPLETED and done.output == {"went": "other"}
    assert done.vars["ans"] == {"response": "ok"}


def test_defect_8_choices_enforced_and_refusal_changes_nothing(runtime):
    rid, run = launch(runtime, ask_wf(choices=["yes", "no"], allow_free_text=False))
    assert run.waiting.choices == ["yes", "no"] and run.waiting.allow_free_text is False
    before = snapshot(runtime, rid)
    for payload in ({"response": "maybe"}, {"response": "ye"}, {}, {"answer": "yes"}):
        with pytest.raises(InvalidChoiceError, match="yes") as err:
            runtime.resume(run_id=rid, payload=payload)
        assert "None" not in str(err.value)
    assert snapshot(runtime, rid) == before
    done = runtime.resume(run_id=rid, payload={"response": "no"})
    assert done.status is RunStatus.COMPLETED and done.vars["answer"] == {"response": "no"}


def test_choice_matches_case_insensitively_and_stores_the_choice_as_written(runtime):
    rid, _ = launch(runtime, ask_wf(choices=["Yes", "no"], allow_free_text=False))
    done = runtime.resume(run_id=rid, payload={"response": "YES"})
    assert done.vars["answer"] == {"response": "Yes"}
    rec = [r for r in runtime.get_ledger(rid) if r["kind"] == "resume"][-1]
    assert rec["result"]["payload"] == {"response": "Yes"}


def test_choice_ambiguous_case_insensitive_match_is_refused(runtime):
    rid, _ = launch(runtime, ask_wf(choices=["yes", "YES"], allow_free_text=False))
    with pytest.raises(InvalidChoiceError):
        runtime.resume(run_id=rid, payload={"response": "Yes"})


def test_ask_user_free_text_allowed_accepts_any_answer(runtime):
    rid, _ = launch(runtime, ask_wf(choices=["yes", "no"]))
    done = runtime.resume(run_id=rid, payload={"response": "only on Tuesdays"})
    assert done.status is RunStatus.COMPLETED
    assert done.vars["answer"] == {"response": "only on Tuesdays"}


def test_check_resume_raises_what_resume_would(runtime):
    rid, run = launch(runtime, ask_wf(choices=["a"], allow_free_text=False))
    runtime.check_resume(run, wait_key=None, payload={"response": "a"})
    with pytest.raises(InvalidChoiceError):
        runtime.check_resume(run, wait_key=None, payload={"response": "b"})
    with pytest.raises(WaitKeyMismatchError):
        runtime.check_resume(run, wait_key="nope", payload={"response": "a"})
    with pytest.raises(PayloadError):
        runtime.check_resume(run, wait_key=None, payload="a")


@pytest.mark.parametrize("payload,message", [
    ({}, "requires payload.prompt"),
    ({"prompt": "P", "choices": "yes,no"}, "choices must be a non-empty list"),
    ({"prompt": "P", "choices": []}, "choices must be a non-empty list"),
])
def test_ask_user_bad_payload_fails_the_run(runtime, payload, message):
    _, run = launch(runtime, effect_wf("ask_user", payload))
    assert run.status is RunStatus.FAILED and message in run.error


# ---------------------------------------------------------------------------- wait_event


def test_wait_event_waits_and_resumes_on_its_key(runtime):
    rid, run = launch(runtime, effect_wf(EffectType.WAIT_EVENT, {"wait_key": "deploy:done"}))
    assert run.status is RunStatus.WAITING
    assert (run.waiting.reason, run.waiting.wait_key) == (WaitReason.EVENT, "deploy:done")
    with pytest.raises(WaitKeyMismatchError, match="deploy:done"):
        runtime.resume(run_id=rid, payload={"x": 1}, wait_key="other")
    done = runtime.resume(run_id=rid, payload={"x": 1}, wait_key="deploy:done")
    assert done.status is RunStatus.COMPLETED and done.vars["r"] == {"x": 1}


def test_wait_event_requires_a_wait_key(runtime):
    _, run = launch(runtime, effect_wf("wait_event", {}))
    assert run.status is RunStatus.FAILED and "wait_event requires payload.wait_key" in run.error


# ---------------------------------------------------------------------------- wait_until


def test_wait_until_in_the_past_completes_at_once(runtime, clock):
    clock.set("2026-01-01T00:00:00Z")
    _, run = launch(runtime, effect_wf("wait_until", {"until": "2025-12-31T23:00:00Z"}))
    assert run.status is RunStatus.COMPLETED
    assert run.vars["r"] == {"until": "2025-12-31T23:00:00+00:00", "ready": True}


def test_wait_until_exactly_now_completes_at_once(runtime, clock):
    clock.set("2026-01-01T00:00:00Z")
    _, run = launch(runtime, effect_wf("wait_until", {"until": "2026-01-01T00:00:00Z"}))
    assert run.status is RunStatus.COMPLETED


def test_wait_until_in_the_future_waits_then_carries_on(runtime, clock):
    clock.set("2026-01-01T00:00:00Z")
    rid, run = launch(runtime, effect_wf("wait_until", {"until": "2026-01-01T01:00:00Z"}))
    assert run.status is RunStatus.WAITING
    assert run.waiting.reason is WaitReason.UNTIL
    assert run.waiting.until == "2026-01-01T01:00:00+00:00"
    clock.advance(3599)
    before = snapshot(runtime, rid)
    assert runtime.tick(run_id=rid).status is RunStatus.WAITING
    assert snapshot(runtime, rid) == before
    clock.advance(1)
    done = runtime.tick(run_id=rid)
    assert done.status is RunStatus.COMPLETED
    assert done.vars["r"] == {"until": "2026-01-01T01:00:00+00:00", "ready": True}
    resume = records(runtime, rid, "resume")
    assert len(resume) == 1 and resume[0]["result"]["source"] == "timer"


def test_wait_until_naive_time_is_utc(runtime, clock):
    clock.set("2026-01-01T00:00:00Z")
    _, run = launch(runtime, effect_wf("wait_until", {"until": "2026-01-01T00:30:00"}))
    assert run.waiting.until == "2026-01-01T00:30:00+00:00"


@pytest.mark.parametrize("until", [None, "", "tomorrow", "2026-13-01T00:00:00Z", 12])
def test_wait_until_bad_time_fails_the_run(runtime, until):
    _, run = launch(runtime, effect_wf("wait_until", {"until": until}))
    assert run.status is RunStatus.FAILED and "wait_until" in run.error


def test_defect_2_wait_until_compares_datetimes_not_strings(runtime, clock):
    # 10:00+05:00 is 05:00Z, an hour *before* 06:00Z; as strings "2026-01-01T10..." sorts after.
    clock.set("2026-01-01T06:00:00Z")
    _, run = launch(runtime, effect_wf("wait_until", {"until": "2026-01-01T10:00:00+05:00"}))
    assert run.status is RunStatus.COMPLETED
    assert run.vars["r"]["until"] == "2026-01-01T05:00:00+00:00"
    # 04:00-05:00 is 09:00Z, three hours *after* 06:00Z; as strings it sorts before.
    rid, run = launch(runtime, effect_wf("wait_until", {"until": "2026-01-01T04:00:00-05:00"},
                                         workflow_id="wf2"))
    assert run.status is RunStatus.WAITING and run.waiting.until == "2026-01-01T09:00:00+00:00"
    clock.set("2026-01-01T08:59:59Z")
    assert runtime.tick(run_id=rid).status is RunStatus.WAITING
    clock.set("2026-01-01T14:00:00+05:00")  # = 09:00Z; the string compares before "…T09"
    assert runtime.tick(run_id=rid).status is RunStatus.COMPLETED


def test_memory_store_finds_due_timers_by_real_time(runtime, clock):
    clock.set("2026-01-01T06:00:00Z")
    rid, _ = launch(runtime, effect_wf("wait_until", {"until": "2026-01-01T04:00:00-05:00"}))
    store = runtime.run_store
    assert store.list_due_wait_until(now=parse_timestamp("2026-01-01T08:59:59Z")) == []
    due = store.list_due_wait_until(now=parse_timestamp("2026-01-01T14:00:00+05:00"))
    assert [r.run_id for r in due] == [rid]


# ---------------------------------------------------------------------------- llm_call / tool_calls


@pytest.mark.parametrize("etype", ["llm_call", "tool_calls"])
def test_passthrough_without_handler_waits_as_a_job(runtime, etype):
    request = {"prompt": "Summarise", "model": "m"}
    rid, run = launch(runtime, effect_wf(etype, request))
    assert run.status is RunStatus.WAITING
    w = run.waiting
    assert w.reason is WaitReason.JOB
    assert w.details == {"effect_type": etype, "request": request}
    assert w.wait_key and w.result_key == "r" and w.resume_to_node == "end"
    done = runtime.resume(run_id=rid, payload={"text": "done"}, wait_key=w.wait_key)
    assert done.status is RunStatus.COMPLETED and done.vars["r"] == {"text": "done"}


def test_passthrough_wait_key_from_payload(runtime):
    _, run = launch(runtime, effect_wf("llm_call", {"wait_key": "job:42"}))
    assert run.waiting.wait_key == "job:42"


@pytest.mark.parametrize("etype", [EffectType.LLM_CALL, EffectType.TOOL_CALLS])
def test_passthrough_types_run_by_a_registered_handler(make_runtime, etype):
    h = Handler(result={"text": "hi"})
    rt = make_runtime(effect_handlers={etype: h})
    _, run = launch(rt, effect_wf(etype, {"q": 1}))
    assert run.status is RunStatus.COMPLETED and run.vars["r"] == {"text": "hi"}
    assert h.calls[0]["payload"] == {"q": 1}


def test_workflow_module_handler_runs_passthrough_type(runtime):
    h = Handler()
    _, run = launch(runtime, effect_wf("tool_calls"), handlers={"tool_calls": h})
    assert run.status is RunStatus.COMPLETED and len(h.calls) == 1


# ---------------------------------------------------------------------------- custom effect types


def test_custom_string_effect_type_with_registered_handler(make_runtime):
    h = Handler(result={"sent": True})
    rt = make_runtime(effect_handlers={"send_email": h})
    _, run = launch(rt, effect_wf("send_email", {"to": "a@b"}))
    assert run.status is RunStatus.COMPLETED and run.vars["r"] == {"sent": True}
    assert h.calls == [{"payload": {"to": "a@b"}, "next": "end", "node": "a"}]


def test_register_effect_handler_later(runtime):
    h = Handler()
    runtime.register_effect_handler("later", h)
    _, run = launch(runtime, effect_wf("later"))
    assert run.status is RunStatus.COMPLETED and len(h.calls) == 1


def test_workflow_module_handler_wins_over_runtime_handler(make_runtime):
    runtime_h, module_h = Handler(result={"who": "runtime"}), Handler(result={"who": "module"})
    rt = make_runtime(effect_handlers={"x": runtime_h})
    _, run = launch(rt, effect_wf("x"), handlers={"x": module_h})
    assert run.vars["r"] == {"who": "module"} and not runtime_h.calls


def test_unknown_effect_type_without_handler_fails_clearly(make_runtime):
    rt = make_runtime(effect_policy=RetryPolicy(max_attempts=3, backoff_base=0))
    rid, run = launch(rt, effect_wf("mystery"))
    assert run.status is RunStatus.FAILED
    assert "no effect handler registered for 'mystery'" in run.error
    assert len(records(rt, rid, "effect")) == 1  # not retried: it can never succeed


# ---------------------------------------------------------------------------- resume


def test_resume_only_a_waiting_run(runtime):
    rid, run = launch(runtime, effect_wf("x"), tick=False)
    with pytest.raises(RunNotWaitingError, match="running"):
        runtime.resume(run_id=rid, payload={})
    rid, run = launch(runtime, wf("done", a=node("a", out={})))
    with pytest.raises(RunNotWaitingError, match="completed"):
        runtime.resume(run_id=rid, payload={})
    with pytest.raises(UnknownRunError):
        runtime.resume(run_id="no-such-run", payload={})


def test_resume_wait_key_must_match_and_changes_nothing(runtime):
    rid, run = launch(runtime, ask_wf())
    before = snapshot(runtime, rid)
    with pytest.raises(WaitKeyMismatchError) as err:
        runtime.resume(run_id=rid, payload={"response": "y"}, wait_key="user:other:a")
    assert err.value.expected == f"user:{rid}:a"
    assert snapshot(runtime, rid) == before


@pytest.mark.parametrize("payload", [["yes"], "yes", None, 3])
def test_resume_payload_must_be_a_dict(runtime, payload):
    rid, _ = launch(runtime, ask_wf())
    before = snapshot(runtime, rid)
    with pytest.raises(PayloadError, match="JSON object"):
        runtime.resume(run_id=rid, payload=payload)
    assert snapshot(runtime, rid) == before


def test_resume_stores_payload_at_dotted_result_key(runtime):
    w = wf(a=node("a", effect=Effect("ask_user", {"prompt": "P"}, "answers.deploy.q1"),
                  next="end"), end=finish())
    rid, _ = launch(runtime, w, vars={"answers": {"other": 1}})
    done = runtime.resume(run_id=rid, payload={"response": "y"})
    assert done.vars["answers"] == {"other": 1, "deploy": {"q1": {"response": "y"}}}


def test_resume_ticks_until_blocked_again(runtime):
    w = wf(a=node("a", effect=Effect("ask_user", {"prompt": "one"}, "one"), next="p"),
           p=node("p", next="b"),
           b=node("b", effect=Effect("ask_user", {"prompt": "two"}, "two"), next="end"),
           end=finish())
    rid, run = launch(runtime, w)
    run = runtime.resume(run_id=rid, payload={"response": 1})
    assert run.status is RunStatus.WAITING and run.waiting.prompt == "two"
    assert run.current_node == "b" and run.vars["one"] == {"response": 1}
    run = runtime.resume(run_id=rid, payload={"response": 2})
    assert run.status is RunStatus.COMPLETED and run.output == {"one": {"response": 1},
                                                               "two": {"response": 2}}


def test_resume_max_steps(runtime):
    w = wf(a=node("a", effect=Effect("ask_user", {"prompt": "P"}), next="b"),
           b=node("b", next="c"), c=node("c", next="d"), d=node("d", out={}))
    rid, _ = launch(runtime, w)
    run = runtime.resume(run_id=rid, payload={}, max_steps=1)
    assert run.status is RunStatus.RUNNING and run.current_node == "c"
    assert runtime.get_state(rid).current_node == "c"  # checkpointed
    assert runtime.tick(run_id=rid).status is RunStatus.COMPLETED


def test_defect_7_resume_is_recorded_in_ledger(runtime):
    rid, run = launch(runtime, ask_wf(), actor_id="owner")
    runtime.resume(run_id=rid, payload={"response": "yes", "note": "ok"}, actor_id="alice")
    (rec,) = records(runtime, rid, "resume")
    assert rec["status"] == "resumed"
    assert rec["actor_id"] == "alice"
    assert rec["result"]["payload"] == {"response": "yes", "note": "ok"}
    assert rec["result"]["wait_key"] == f"user:{rid}:a"
    assert rec["result"]["reason"] == "user"
    assert rec["node_id"] == "a"
    kinds = [r["kind"] for r in records(runtime, rid)]
    assert kinds == ["start", "effect", "resume", "complete"]
    assert_ledger_verifies(runtime, rid)


def test_resume_actor_defaults_to_run_actor(runtime):
    rid, _ = launch(runtime, ask_wf(), actor_id="owner")
    runtime.resume(run_id=rid, payload={})
    assert records(runtime, rid, "resume")[0]["actor_id"] == "owner"


# ---------------------------------------------------------------------------- effect handlers


def test_handler_with_three_params_gets_default_next_node(make_runtime):
    seen = []

    def h(run, effect, default_next_node):
        seen.append(default_next_node)
        return {"ok": 1}

    _, run = launch(make_runtime(effect_handlers={"x": h}), effect_wf("x"))
    assert seen == ["end"] and run.vars["r"] == {"ok": 1}


def test_handler_with_two_params(make_runtime):
    def h(run, effect):
        return {"payload": effect.payload, "node": run.current_node}

    _, run = launch(make_runtime(effect_handlers={"x": h}), effect_wf("x", {"a": 1}))
    assert run.vars["r"] == {"payload": {"a": 1}, "node": "a"}


def test_handler_with_varargs_and_callable_object(make_runtime):
    class Callable3:
        def __call__(self, run, effect, default_next_node=None):
            return {"next": default_next_node}

    def varargs(*args):
        return {"n": len(args)}

    rt = make_runtime(effect_handlers={"v": varargs, "c": Callable3()})
    w = wf(a=node("a", effect=Effect("v", {}, "v"), next="b"),
           b=node("b", effect=Effect("c", {}, "c"), next="end"), end=finish())
    _, run = launch(rt, w)
    assert run.vars["v"] == {"n": 3} and run.vars["c"] == {"next": "end"}


def test_handler_returning_effect_outcomes(make_runtime):
    rt = make_runtime(effect_handlers={
        "done": lambda run, effect: EffectOutcome.completed({"via": "outcome"}),
        "none": lambda run, effect: None,
        "wait": lambda run, effect: EffectOutcome.waiting(
            WaitState(reason=WaitReason.JOB, wait_key="ext:1", details={"job": 7})),
    })
    w = wf(a=node("a", effect=Effect("done", {}, "d"), next="b"),
           b=node("b", effect=Effect("none", {}, "n"), next="c"),
           c=node("c", effect=Effect("wait", {}, "w"), next="end"), end=finish())
    rid, run = launch(rt, w)
    assert run.vars["d"] == {"via": "outcome"} and "n" not in run.vars
    assert run.status is RunStatus.WAITING
    assert (run.waiting.wait_key, run.waiting.details) == ("ext:1", {"job": 7})
    assert (run.waiting.result_key, run.waiting.resume_to_node) == ("w", "end")  # defaults
    done = rt.resume(run_id=rid, payload={"job": "ok"}, wait_key="ext:1")
    assert done.status is RunStatus.COMPLETED and done.vars["w"] == {"job": "ok"}


def test_handler_failed_outcome_fails_the_run(make_runtime):
    rt = make_runtime(effect_handlers={"x": lambda run, effect: EffectOutcome.failed("no disk")})
    _, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.FAILED and "no disk" in run.error and "'x'" in run.error


def test_handler_raising_fails_the_run(make_runtime):
    rt = make_runtime(effect_handlers={"x": Handler(fail=1, exc=ValueError)})
    rid, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.FAILED
    assert "ValueError: failure 1" in run.error and "node 'a'" in run.error
    assert [r["kind"] for r in records(rt, rid)] == ["start", "effect", "fail"]


def test_non_retryable_error_fails_at_once_despite_retry_policy(make_runtime):
    h = Handler(fail=5, exc=NonRetryableError)
    rt = make_runtime(effect_handlers={"x": h},
                      effect_policy=RetryPolicy(max_attempts=5, backoff_base=0))
    rid, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.FAILED and "NonRetryableError" in run.error
    assert len(h.calls) == 1 and len(records(rt, rid, "effect")) == 1


def test_failed_outcome_not_retryable_fails_at_once(make_runtime):
    calls = []

    def h(run, effect):
        calls.append(1)
        return EffectOutcome.failed("permanent", retryable=False)

    rt = make_runtime(effect_handlers={"x": h}, effect_policy=RetryPolicy(max_attempts=4,
                                                                           backoff_base=0))
    _, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.FAILED and len(calls) == 1


@pytest.mark.parametrize("outcome,message", [
    (EffectOutcome(status="waiting"), "waiting outcome without a wait"),
    (EffectOutcome(status="done"), "unknown status 'done'"),
    ([1, 2], "expected a dict or EffectOutcome"),
    ("text", "expected a dict or EffectOutcome"),
])
def test_handler_returning_garbage_fails_the_run_clearly(make_runtime, outcome, message):
    rt = make_runtime(effect_handlers={"x": lambda run, effect: outcome})
    rid, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.FAILED and message in run.error
    assert_ledger_verifies(rt, rid)


def test_handler_result_that_is_not_json_fails_clearly(make_runtime):
    h = Handler(result={"when": object()})
    rt = make_runtime(effect_handlers={"x": h})
    rid, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.FAILED and "cannot be stored as JSON" in run.error
    assert runtime_tick_is_stable(rt, rid) and len(h.calls) == 1  # failed, not re-run
    assert_ledger_verifies(rt, rid)


def test_handler_wait_with_string_reason_is_accepted(make_runtime):
    rt = make_runtime(effect_handlers={"x": lambda run, effect: EffectOutcome.waiting(
        WaitState(reason="event", wait_key="k"))})
    rid, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.WAITING and run.waiting.reason is WaitReason.EVENT
    assert rt.resume(run_id=rid, payload={}, wait_key="k").status is RunStatus.COMPLETED


# ---------------------------------------------------------------------------- retries


def test_retries_record_every_attempt(make_runtime):
    h = Handler(fail=2)
    rt = make_runtime(effect_handlers={"flaky": h},
                      effect_policy=RetryPolicy(effect_max_attempts={"flaky": 3}, backoff_base=0))
    rid, run = launch(rt, effect_wf("flaky"))
    assert run.status is RunStatus.COMPLETED and run.vars["r"] == {"n": 3}
    effects = records(rt, rid, "effect")
    assert [r["attempt"] for r in effects] == [1, 2, 3]
    assert [r["status"] for r in effects] == ["failed", "failed", "completed"]
    assert effects[0]["error"] == "RuntimeError: failure 1"
    assert len({r["idempotency_key"] for r in effects}) == 1


def test_retries_exhausted_fail_the_run(make_runtime):
    h = Handler(fail=10)
    rt = make_runtime(effect_handlers={"flaky": h},
                      effect_policy=DefaultEffectPolicy(default_max_attempts=3,
                                                        default_backoff_base=0))
    rid, run = launch(rt, effect_wf("flaky"))
    assert run.status is RunStatus.FAILED and "after 3 attempts" in run.error
    assert [r["attempt"] for r in records(rt, rid, "effect")] == [1, 2, 3]
    assert len(h.calls) == 3


def test_short_backoff_sleeps_exponentially_and_capped(make_runtime, monkeypatch):
    slept: List[float] = []
    monkeypatch.setattr(runtime_module.time, "sleep", slept.append)
    rt = make_runtime(effect_handlers={"x": Handler(fail=4)},
                      config=RuntimeConfig(max_inline_backoff=2.0),
                      effect_policy=RetryPolicy(max_attempts=5, backoff_base=0.5,
                                                backoff_max=1.5))
    _, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.COMPLETED
    assert slept == [0.5, 1.0, 1.5, 1.5]


def test_workflow_module_policy_wins_over_runtime_policy(make_runtime):
    h = Handler(fail=1)
    rt = make_runtime(effect_handlers={"x": h}, effect_policy=DefaultEffectPolicy())
    _, run = launch(rt, effect_wf("x"), policy=RetryPolicy(max_attempts=2, backoff_base=0))
    assert run.status is RunStatus.COMPLETED and len(h.calls) == 2


def test_defect_6_long_backoff_does_not_sleep_in_tick(make_runtime, clock, monkeypatch):
    slept: List[float] = []
    monkeypatch.setattr(runtime_module.time, "sleep", slept.append)
    h = Handler(fail=2)
    rt = make_runtime(effect_handlers={"x": h}, config=RuntimeConfig(max_inline_backoff=2.0),
                      effect_policy=RetryPolicy(max_attempts=3, backoff_base=30,
                                                backoff_max=3600))
    t0 = time.monotonic()
    rid, run = launch(rt, effect_wf("x"))
    assert time.monotonic() - t0 < 1.0 and slept == []
    assert run.status is RunStatus.WAITING and run.waiting.reason is WaitReason.UNTIL
    assert run.waiting.until == "2026-01-01T00:00:30+00:00"
    assert run.waiting.details["retry"]["next_attempt"] == 2
    assert rt.get_state(rid).status is RunStatus.WAITING  # checkpointed as waiting

    clock.advance(29)
    assert rt.tick(run_id=rid).status is RunStatus.WAITING and len(h.calls) == 1
    clock.advance(1)
    t0 = time.monotonic()
    run = rt.tick(run_id=rid)
    assert time.monotonic() - t0 < 1.0
    assert run.status is RunStatus.WAITING and len(h.calls) == 2  # second backoff: 60 s
    assert run.waiting.until == "2026-01-01T00:01:30+00:00"
    clock.advance(60)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED and run.vars["r"] == {"n": 3}
    assert slept == []
    effects = records(rt, rid, "effect")
    assert [(r["attempt"], r["status"]) for r in effects] == [
        (1, "failed"), (2, "failed"), (3, "completed")]
    assert run.pending_retry is None
    assert_ledger_verifies(rt, rid)


def test_deferred_retry_gives_up_after_max_attempts(make_runtime, clock):
    h = Handler(fail=10)
    rt = make_runtime(effect_handlers={"x": h}, config=RuntimeConfig(max_inline_backoff=0),
                      effect_policy=RetryPolicy(max_attempts=2, backoff_base=5))
    rid, run = launch(rt, effect_wf("x"))
    assert run.status is RunStatus.WAITING
    clock.advance(5)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.FAILED and "after 2 attempts" in run.error
    assert len(h.calls) == 2


# ---------------------------------------------------------------------------- idempotency


def test_crash_after_effect_before_checkpoint_reuses_result(make_runtime):
    store, ledger = CrashingRunStore(), InMemoryLedgerStore()
    calls = []

    def charge(run, effect):
        calls.append(effect.payload)
        store.crash_next = True  # the process dies right after the effect
        return {"charge_id": f"ch_{len(calls)}"}

    rt = make_runtime(run_store=store, ledger_store=ledger, effect_handlers={"charge": charge})
    w = wf(a=node("a", next="b"),
           b=node("b", effect=Effect("charge", {"amount": 5}, "r"), next="end"), end=finish())
    rt.workflow_registry.register(w)
    rid = rt.start(workflow=w)
    with pytest.raises(SimulatedCrash):
        rt.tick(run_id=rid)
    assert rt.get_state(rid).current_node == "a"  # the last checkpoint
    assert len(records(rt, rid, "effect")) == 1

    rt2 = make_runtime(run_store=store, ledger_store=ledger, effect_handlers={"charge": charge})
    run = rt2.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED
    assert len(calls) == 1 and run.vars["r"] == {"charge_id": "ch_1"}
    assert len(records(rt2, rid, "effect")) == 1
    assert_ledger_verifies(rt2, rid)


def test_crash_after_wait_recorded_reuses_the_wait(make_runtime):
    store = CrashingRunStore()
    rt = make_runtime(run_store=store)

    visits = []

    def a(run, ctx):
        visits.append(1)
        store.crash_next = len(visits) == 1  # die in the first visit only
        return StepPlan("a", effect=Effect("ask_user", {"prompt": "P"}, "r"), next_node="end")

    rid, _ = launch(rt, wf(a=a, end=finish()), tick=False)
    with pytest.raises(SimulatedCrash):
        rt.tick(run_id=rid)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.WAITING and run.waiting.prompt == "P"
    assert len(records(rt, rid, "effect")) == 1
    assert rt.resume(run_id=rid, payload={}).status is RunStatus.COMPLETED


def test_crash_after_last_failed_attempt_makes_no_extra_attempt(make_runtime):
    store = CrashingRunStore()
    h = Handler(fail=10)

    def failing(run, effect):
        if len(h.calls) == 1:
            store.crash_next = True  # dies before the failure is checkpointed
        return h(run, effect, None)

    rt = make_runtime(run_store=store, effect_handlers={"x": failing},
                      effect_policy=RetryPolicy(max_attempts=2, backoff_base=0))
    rid, _ = launch(rt, effect_wf("x"), tick=False)
    with pytest.raises(SimulatedCrash):
        rt.tick(run_id=rid)
    assert len(h.calls) == 2
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.FAILED and "after 2 attempts" in run.error
    assert len(h.calls) == 2  # both allowed attempts were made; none more
    assert_ledger_verifies(rt, rid)


def test_crash_while_deferring_a_retry_keeps_attempt_count_and_due_time(make_runtime, clock):
    store = CrashingRunStore()
    h = Handler(fail=1)

    def flaky(run, effect):
        store.crash_next = not h.calls  # dies while checkpointing the deferred retry
        return h(run, effect, None)

    rt = make_runtime(run_store=store, effect_handlers={"x": flaky},
                      effect_policy=RetryPolicy(max_attempts=3, backoff_base=10),
                      config=RuntimeConfig(max_inline_backoff=0))
    rid, _ = launch(rt, effect_wf("x"), tick=False)
    with pytest.raises(SimulatedCrash):
        rt.tick(run_id=rid)
    assert rt.get_state(rid).status is RunStatus.RUNNING  # the deferral was lost …
    clock.advance(4)
    run = rt.tick(run_id=rid)  # … but is rebuilt from the ledger: no early retry
    assert run.status is RunStatus.WAITING and len(h.calls) == 1
    assert run.waiting.until == "2026-01-01T00:00:10+00:00"
    assert run.waiting.details["retry"]["next_attempt"] == 2
    clock.advance(6)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED
    assert [r["attempt"] for r in records(rt, rid, "effect")] == [1, 2]
    assert len(h.calls) == 2
    assert_ledger_verifies(rt, rid)


def test_crash_while_deferring_a_retry_after_its_due_time_retries_at_once(make_runtime, clock):
    store = CrashingRunStore()
    h = Handler(fail=1)

    def flaky(run, effect):
        store.crash_next = not h.calls
        return h(run, effect, None)

    rt = make_runtime(run_store=store, effect_handlers={"x": flaky},
                      effect_policy=RetryPolicy(max_attempts=3, backoff_base=10),
                      config=RuntimeConfig(max_inline_backoff=0))
    rid, _ = launch(rt, effect_wf("x"), tick=False)
    with pytest.raises(SimulatedCrash):
        rt.tick(run_id=rid)
    clock.advance(10)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED
    assert [r["attempt"] for r in records(rt, rid, "effect")] == [1, 2]


def test_defect_3_loop_iterations_do_not_reuse_results(make_runtime):
    h = Handler()
    rt = make_runtime(effect_handlers={"x": h})
    rid, run = launch(rt, counter_loop_wf("x", 3))
    assert run.status is RunStatus.COMPLETED
    assert len(h.calls) == 3 and all(c["payload"] == {"same": True} for c in h.calls)
    assert run.vars["seen"] == [{"n": 1}, {"n": 2}, {"n": 3}]
    keys = [r["idempotency_key"] for r in records(rt, rid, "effect")]
    assert len(keys) == 3 and len(set(keys)) == 3


def test_loop_over_wait_nodes_waits_each_visit(runtime):
    def b(run, ctx):
        run.vars["i"] = run.vars.get("i", 0) + 1
        return StepPlan("b", next_node="a" if run.vars["i"] < 3 else "end")

    w = wf(a=node("a", effect=Effect("ask_user", {"prompt": "again?"}, "r"), next="b"),
           b=b, end=finish())
    rid, run = launch(runtime, w)
    answers = 0
    while run.status is RunStatus.WAITING:
        answers += 1
        run = runtime.resume(run_id=rid, payload={"response": answers})
    assert answers == 3 and run.vars["r"] == {"response": 3}


def test_defect_4_prior_result_lookup_does_not_scan_ledger(make_runtime):
    spy = SpyLedger()
    rt = make_runtime(ledger_store=spy, effect_handlers={"x": Handler()})
    rid, run = launch(rt, counter_loop_wf("x", 300), tick=False)
    while run.status is RunStatus.RUNNING:
        run = rt.tick(run_id=rid, max_steps=1000)
    assert run.status is RunStatus.COMPLETED
    assert spy.list_calls == 0
    # The ledger is read once, when the run is locked: from the checkpoint's last record
    # (to check it) on — one record in a clean run, however long the ledger has grown.
    # No effect step reads it again.
    assert len(spy.since) == 1
    assert all(count == total - 1 and returned == 1 for count, total, returned in spy.since)
    assert run.ledger_count == spy.head(rid)[0] >= 301


def test_lookup_after_resume_reads_only_the_resume_record(make_runtime):
    spy = SpyLedger()
    rt = make_runtime(ledger_store=spy, effect_handlers={"x": Handler()})
    w = wf(a=node("a", effect=Effect("ask_user", {"prompt": "P"}), next="b"),
           b=node("b", effect=Effect("x", {}, "r"), next="end"), end=finish())
    rid, _ = launch(rt, w)
    spy.since.clear()
    rt.resume(run_id=rid, payload={})
    assert spy.list_calls == 0 and [s[2] for s in spy.since] == [1]


# ---------------------------------------------------------------------------- cancellation


def test_defect_1_cancelled_run_is_not_executed_by_tick(make_runtime):
    h = Handler()
    rt = make_runtime(effect_handlers={"x": h})
    rid, _ = launch(rt, effect_wf("x"), tick=False)
    rt.cancel_run(rid, reason="stop")
    before = snapshot(rt, rid)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.CANCELLED
    assert h.calls == [] and snapshot(rt, rid) == before
    assert [r["kind"] for r in records(rt, rid)] == ["start", "cancel"]


def test_cancel_waiting_run_is_a_ledger_record(runtime):
    rid, _ = launch(runtime, ask_wf())
    run = runtime.cancel_run(rid, reason="changed my mind", actor_id="bob")
    assert run.status is RunStatus.CANCELLED and run.waiting is None
    assert run.error == "changed my mind"
    assert runtime.get_state(rid).status is RunStatus.CANCELLED
    (rec,) = records(runtime, rid, "cancel")
    assert rec["status"] == "cancelled" and rec["actor_id"] == "bob"
    assert rec["result"] == {"reason": "changed my mind", "was": "waiting"}
    assert_ledger_verifies(runtime, rid)
    with pytest.raises(RunNotWaitingError, match="cancelled"):
        runtime.resume(run_id=rid, payload={"response": "y"})


@pytest.mark.parametrize("build", ["completed", "failed", "cancelled"])
def test_cancel_terminal_run_leaves_it_as_is(runtime, build):
    w = {"completed": wf("c", a=node("a", out={"x": 1})),
         "failed": wf("f", a=node("a", next="nowhere")),
         "cancelled": ask_wf()}[build]
    rid, _ = launch(runtime, w)
    if build == "cancelled":
        runtime.cancel_run(rid)
    before = snapshot(runtime, rid)
    assert runtime.cancel_run(rid, reason="again").status.value == build
    assert snapshot(runtime, rid) == before


def test_cancel_unknown_run(runtime):
    with pytest.raises(UnknownRunError):
        runtime.cancel_run("nope")


# ---------------------------------------------------------------------------- limits


def test_limits_initialised_from_config(make_runtime):
    cfg = RuntimeConfig(max_iterations=10, max_tokens=1000, warn_iterations_pct=50,
                        warn_tokens_pct=90, max_history_messages=20, max_output_tokens=256)
    rt = make_runtime(config=cfg)
    rid, run = launch(rt, ask_wf())
    assert run.vars["_limits"] == cfg.to_limits_dict() == {
        "max_iterations": 10, "current_iteration": 0, "max_tokens": 1000,
        "max_output_tokens": 256, "estimated_tokens_used": 0, "max_history_messages": 20,
        "warn_iterations_pct": 50, "warn_tokens_pct": 90}


def test_limits_default_max_tokens_from_model_capabilities():
    assert RuntimeConfig().to_limits_dict()["max_tokens"] == 32768
    assert RuntimeConfig(model_capabilities={"max_tokens": 8000}).to_limits_dict()[
        "max_tokens"] == 8000


def test_limits_given_in_vars_are_kept(runtime):
    rid, run = launch(runtime, ask_wf(), vars={"_limits": {"max_iterations": 3}})
    assert run.vars["_limits"] == {"max_iterations": 3}


def test_get_limit_status(make_runtime):
    rt = make_runtime(config=RuntimeConfig(max_iterations=10, max_tokens=1000,
                                           warn_iterations_pct=50))
    rid, _ = launch(rt, ask_wf())
    status = rt.get_limit_status(rid)
    assert status["iterations"] == {"current": 0, "max": 10, "pct": 0.0, "warning": False}
    assert status["tokens"] == {"estimated_used": 0, "max": 1000, "pct": 0.0,
                                "warning": False}
    assert status["history"] == {"max_messages": -1}
    rt.update_limits(rid, {"current_iteration": 5, "estimated_tokens_used": 850})
    status = rt.get_limit_status(rid)
    assert status["iterations"]["pct"] == 50.0 and status["iterations"]["warning"] is True
    assert status["tokens"]["pct"] == 85.0 and status["tokens"]["warning"] is True
    with pytest.raises(UnknownRunError):
        rt.get_limit_status("nope")


def test_check_limits_warnings_and_exceeded(make_runtime):
    rt = make_runtime(config=RuntimeConfig(max_iterations=10, max_tokens=1000))
    rid, _ = launch(rt, ask_wf())
    assert rt.check_limits(rt.get_state(rid)) == []
    rt.update_limits(rid, {"current_iteration": 8, "estimated_tokens_used": 799})
    (w,) = rt.check_limits(rt.get_state(rid))
    assert (w.limit_type, w.status, w.current, w.maximum, w.pct) == (
        "iterations", "warning", 8, 10, 80.0)
    rt.update_limits(rid, {"current_iteration": 10, "estimated_tokens_used": 800})
    got = {(w.limit_type, w.status) for w in rt.check_limits(rt.get_state(rid))}
    assert got == {("iterations", "exceeded"), ("tokens", "warning")}
    rt.update_limits(rid, {"estimated_tokens_used": 1200})
    got = {(w.limit_type, w.status) for w in rt.check_limits(rt.get_state(rid))}
    assert ("tokens", "exceeded") in got


def test_update_limits_is_a_ledger_record(runtime):
    rid, run = launch(runtime, ask_wf())
    old = run.vars["_limits"]["max_iterations"]
    run = runtime.update_limits(rid, {"max_iterations": 50, "max_output_tokens": None},
                                actor_id="ops")
    assert run.vars["_limits"]["max_iterations"] == 50
    assert runtime.get_state(rid).vars["_limits"]["max_iterations"] == 50
    assert runtime.get_state(rid).status is RunStatus.WAITING  # still resumable
    (rec,) = records(runtime, rid, "limits")
    assert rec["actor_id"] == "ops" and rec["status"] == "updated"
    assert rec["result"]["changes"] == {"max_iterations": {"old": old, "new": 50},
                                        "max_output_tokens": {"old": None, "new": None}}
    assert_ledger_verifies(runtime, rid)
    assert runtime.resume(run_id=rid, payload={}).status is RunStatus.COMPLETED


@pytest.mark.parametrize("updates,message", [
    ({"max_iterationz": 5}, "unknown limit 'max_iterationz'"),
    ({"max_iterations": "50"}, "'max_iterations' must be an integer"),
    ({"max_iterations": True}, "'max_iterations' must be an integer"),
    ({"max_tokens": 1.5}, "'max_tokens' must be an integer"),
    ({"max_tokens": None}, "'max_tokens' must be an integer"),
    ({"max_iterations": 5, "bogus": 1}, "unknown limit 'bogus'"),
])
def test_update_limits_refuses_bad_input_and_changes_nothing(runtime, updates, message):
    rid, _ = launch(runtime, ask_wf())
    before = snapshot(runtime, rid)
    with pytest.raises(LimitsError, match=message):
        runtime.update_limits(rid, updates)
    assert snapshot(runtime, rid) == before


# ---------------------------------------------------------------------------- ledger


def test_ledger_records_everything_and_verifies(make_runtime, clock):
    h = Handler(fail=1)
    rt = make_runtime(effect_handlers={"x": h},
                      effect_policy=RetryPolicy(max_attempts=2, backoff_base=0))
    w = wf(a=node("a", effect=Effect("x", {"k": 1}, "x"), next="b"),
           b=node("b", effect=Effect("ask_user", {"prompt": "P"}, "ans"), next="end"),
           end=finish())
    rid, run = launch(rt, w, actor_id="me", session_id="s")
    rt.update_limits(rid, {"max_iterations": 9})
    rt.resume(run_id=rid, payload={"response": "y"}, actor_id="you")
    start, *recs = records(rt, rid)
    assert (start["kind"], start["actor_id"], start["result"]["workflow_id"]) == ("start", "me", "wf")
    assert [(r["kind"], r["status"]) for r in recs] == [
        ("effect", "failed"), ("effect", "completed"), ("effect", "waiting"),
        ("limits", "updated"), ("resume", "resumed"), ("complete", "completed")]
    assert recs[0]["effect"] == {"type": "x", "payload": {"k": 1}, "result_key": "x"}
    assert recs[1]["result"] == {"n": 2}
    assert recs[2]["result"]["wait"]["prompt"] == "P"
    assert recs[-1]["result"] == {"completed": True, "output": {"x": {"n": 2},
                                                                "ans": {"response": "y"}}}
    assert all(r["session_id"] == "s" for r in recs)
    assert [r["actor_id"] for r in recs] == ["me", "me", "me", "me", "you", "me"]
    assert all(r["started_at"] == r["ended_at"] == "2026-01-01T00:00:00+00:00" for r in recs)
    assert len({r["step_id"] for r in recs}) == len(recs)
    assert_ledger_verifies(rt, rid)


def test_failure_is_a_ledger_record(runtime):
    rid, run = launch(runtime, wf(a=node("a", next="nowhere")))
    (rec,) = records(runtime, rid, "fail")
    assert rec["status"] == "failed" and "nowhere" in rec["error"]
    assert_ledger_verifies(runtime, rid)


def _tamper_target(rt):
    rt.register_effect_handler("x", Handler())
    rid, _ = launch(rt, counter_loop_wf("x", 4))
    run = rt.get_state(rid)
    return rid, rt.get_ledger(rid), run.ledger_count, run.ledger_head


def test_edited_ledger_is_detected(runtime):
    rid, recs, count, head = _tamper_target(runtime)
    recs[2]["result"] = {"n": 1000}
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 2
    assert report["first_bad_step_id"] == recs[2]["step_id"]


def test_deleted_ledger_record_is_detected(runtime):
    rid, recs, count, head = _tamper_target(runtime)
    del recs[1]
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 1


def test_truncated_ledger_is_detected(runtime):
    rid, recs, count, head = _tamper_target(runtime)
    assert verify_ledger_chain(recs[:-1])["ok"]  # the chain alone cannot see it
    report = verify_ledger_chain(recs[:-1], expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == count - 1
    assert "truncated" in report["message"]


# ---------------------------------------------------------------------------- node errors


@pytest.mark.parametrize("ret,message", [
    (None, "returned NoneType, not a StepPlan"),
    (42, "returned int, not a StepPlan"),
    ({"node_id": "a", "next_node": "b"}, "returned dict, not a StepPlan"),
])
def test_node_returning_garbage_fails_the_run(runtime, ret, message):
    rid, run = launch(runtime, wf(a=lambda run, ctx: ret))
    assert run.status is RunStatus.FAILED and message in run.error and "'a'" in run.error
    assert_ledger_verifies(runtime, rid)


def test_node_raising_fails_the_run(runtime):
    def boom(run, ctx):
        raise ValueError("bad input")

    _, run = launch(runtime, wf(a=node("a", next="b"), b=boom))
    assert run.status is RunStatus.FAILED
    assert run.error.startswith("node 'b' raised ValueError: bad input (")
    assert run.error_info["type"] == "ValueError" and run.error_info["line"] > 0
    assert run.error_info["file"].endswith("test_runtime.py")
    assert run.current_node == "b"


def test_unknown_next_node_fails_the_run(runtime):
    _, run = launch(runtime, wf(a=node("a", next="nowhere")))
    assert run.status is RunStatus.FAILED
    assert "unknown node 'nowhere'" in run.error and "'wf'" in run.error


@pytest.mark.parametrize("nodes,message", [
    ({"a": node("a")}, "no effect, no next_node and no complete_output"),
    ({"a": node("a", effect=Effect("wait_until", {"until": "2000-01-01T00:00:00Z"}))},
     "ran an effect but has no next_node"),
    ({"a": lambda run, ctx: StepPlan("a", complete_output=["x"])}, "non-dict output"),
])
def test_incomplete_plans_fail_the_run(runtime, nodes, message):
    _, run = launch(runtime, wf(**nodes))
    assert run.status is RunStatus.FAILED and message in run.error


def test_unknown_entry_node_fails_the_run(runtime):
    _, run = launch(runtime, wf(entry="zzz", a=node("a", out={})))
    assert run.status is RunStatus.FAILED and "unknown node 'zzz'" in run.error


def test_tick_with_unknown_workflow_fails_clearly_and_leaves_the_run(make_runtime, registry):
    rt = make_runtime()
    w = wf("gone", a=node("a", out={}))
    rid = rt.start(workflow=w)  # never registered
    before = snapshot(rt, rid)
    with pytest.raises(UnknownWorkflowError, match="gone"):
        rt.tick(run_id=rid)
    with pytest.raises(UnknownWorkflowError):
        rt.tick(run_id=rid, workflow=wf("other", a=node("a", out={})))
    assert snapshot(rt, rid) == before  # never silently marked failed
    assert rt.tick(run_id=rid, workflow=w).status is RunStatus.COMPLETED


def test_busy_run_is_refused_after_the_lock_timeout(make_runtime):
    rt = make_runtime(config=RuntimeConfig(lock_timeout=0.05))
    rid, _ = launch(rt, ask_wf())
    before = snapshot(rt, rid)
    with rt.run_store.lock(rid, timeout=1):  # another worker holds the run
        for call in (lambda: rt.tick(run_id=rid),
                     lambda: rt.resume(run_id=rid, payload={}),
                     lambda: rt.cancel_run(rid),
                     lambda: rt.update_limits(rid, {"max_iterations": 3})):
            with pytest.raises(RunBusyError, match="busy"):
                call()
    assert snapshot(rt, rid) == before
    assert rt.resume(run_id=rid, payload={}).status is RunStatus.COMPLETED


def test_tick_unknown_run(runtime):
    with pytest.raises(UnknownRunError, match="no such run"):
        runtime.tick(run_id="nope")


def test_tick_max_steps_checkpoints_progress(runtime):
    nodes = {f"n{i}": node(f"n{i}", next=f"n{i + 1}") for i in range(10)}
    nodes["n10"] = node("n10", out={"done": True})
    rid, run = launch(runtime, WorkflowSpec("long", "n0", nodes), tick=False)
    run = runtime.tick(run_id=rid, max_steps=3)
    assert run.status is RunStatus.RUNNING and run.current_node == "n3"
    assert runtime.get_state(rid).current_node == "n3"
    assert runtime.tick(run_id=rid).output == {"done": True}


def test_start_rejects_non_dict_vars(runtime):
    with pytest.raises(PayloadError):
        runtime.start(workflow=ask_wf(), vars=["a"])


def test_nodes_see_context_time(runtime, clock):
    clock.set("2026-03-04T05:06:07Z")
    _, run = launch(runtime, wf(a=lambda run, ctx: StepPlan("a", complete_output={
        "now": ctx.now_iso()})))
    assert run.output == {"now": "2026-03-04T05:06:07+00:00"}
    assert run.created_at == "2026-03-04T05:06:07+00:00"


# ---------------------------------------------------------------------------- look-alikes


class LikePlan:
    def __init__(self, node_id, effect=None, next_node=None, complete_output=None):
        self.node_id = node_id
        self.effect = effect
        self.next_node = next_node
        self.complete_output = complete_output


class LikeEffect:
    def __init__(self, type, payload=None, result_key=None):
        self.type = type
        self.payload = payload or {}
        self.result_key = result_key


class LikeType(Enum):
    ASK_USER = "ask_user"
    CUSTOM = "custom"


class LikeWorkflow:
    def __init__(self, workflow_id, entry_node, nodes):
        self.workflow_id = workflow_id
        self.entry_node = entry_node
        self.nodes = nodes


def test_look_alike_plans_effects_and_workflows(make_runtime):
    h = Handler()
    rt = make_runtime(effect_handlers={LikeType.CUSTOM: h})
    w = LikeWorkflow("like", "a", {
        "a": lambda run, ctx: LikePlan("a", LikeEffect("custom", {"v": 1}, "c1"), "b"),
        "b": lambda run, ctx: LikePlan("b", LikeEffect(LikeType.CUSTOM, {"v": 2}, "c2"), "c"),
        "c": lambda run, ctx: LikePlan("c", LikeEffect(LikeType.ASK_USER, {"prompt": "Q"},
                                                       "q"), "d"),
        "d": lambda run, ctx: LikePlan("d", complete_output={"c1": run.vars["c1"],
                                                             "q": run.vars["q"]}),
    })
    rid, run = launch(rt, w)
    assert [c["payload"] for c in h.calls] == [{"v": 1}, {"v": 2}]
    assert run.status is RunStatus.WAITING and run.waiting.wait_key == f"user:{rid}:c"
    done = rt.resume(run_id=rid, payload={"response": "A"})
    assert done.status is RunStatus.COMPLETED
    assert done.output == {"c1": {"n": 1}, "q": {"response": "A"}}
    assert records(rt, rid, "effect")[1]["effect"]["type"] == "custom"


def test_look_alike_plan_without_node_id_attribute_fails_clearly(runtime):
    class NotAPlan:
        next_node = "b"

    _, run = launch(runtime, wf(a=lambda run, ctx: NotAPlan()))
    assert run.status is RunStatus.FAILED and "not a StepPlan" in run.error


def test_abstractruntime_workflow_runs_unchanged(make_runtime):
    ar = pytest.importorskip("abstractruntime")
    from abstractruntime.core.runtime import EffectOutcome as AREffectOutcome

    calls = []

    def tool(run, effect, default_next_node):
        calls.append(dict(effect.payload))
        if len(calls) == 1:
            raise RuntimeError("transient")  # retried per AbstractRuntime's RetryPolicy
        return AREffectOutcome.completed({"call": len(calls)})

    def ask(run, ctx):
        return ar.StepPlan(node_id="ask", effect=ar.Effect(
            type=ar.EffectType.ASK_USER, result_key="answer",
            payload={"prompt": "Go?", "choices": ["go", "stop"], "allow_free_text": False}),
            next_node="tool")

    def tool_node(run, ctx):
        return ar.StepPlan(node_id="tool", effect=ar.Effect(
            type=ar.EffectType.TOOL_CALLS, payload={"calls": [{"name": "ls"}]},
            result_key="tool"), next_node="loop")

    def loop(run, ctx):
        run.vars["i"] = run.vars.get("i", 0) + 1
        return ar.StepPlan(node_id="loop", next_node="tool" if run.vars["i"] < 3 else "event")

    def event(run, ctx):
        return ar.StepPlan(node_id="event", effect=ar.Effect(
            type=ar.EffectType.WAIT_EVENT, payload={"wait_key": "go"}, result_key="evt"),
            next_node="done")

    def done(run, ctx):
        return ar.StepPlan(node_id="done", complete_output={
            "answer": run.vars["answer"], "tool": run.vars["tool"], "evt": run.vars["evt"]})

    spec = ar.WorkflowSpec(workflow_id="ar_wf", entry_node="ask",
                           nodes={"ask": ask, "tool": tool_node, "loop": loop, "event": event,
                                  "done": done})
    rt = make_runtime(effect_handlers={ar.EffectType.TOOL_CALLS: tool},
                      effect_policy=ar.RetryPolicy(backoff_base=0))
    rid, run = launch(rt, spec)
    assert run.waiting.reason is WaitReason.USER and run.waiting.choices == ["go", "stop"]
    with pytest.raises(InvalidChoiceError):
        rt.resume(run_id=rid, payload={"response": "maybe"})
    run = rt.resume(run_id=rid, payload={"response": "go"})
    assert run.status is RunStatus.WAITING and run.waiting.wait_key == "go"
    # 1 failed + 3 loop visits: AbstractRuntime's own key would have reused visit 1's result
    assert len(calls) == 4
    run = rt.resume(run_id=rid, payload={"ok": True}, wait_key="go")
    assert run.status is RunStatus.COMPLETED
    assert run.output == {"answer": {"response": "go"}, "tool": {"call": 4}, "evt": {"ok": True}}
    assert_ledger_verifies(rt, rid)


def test_abstractruntime_handler_outcomes_and_waits(make_runtime):
    ar = pytest.importorskip("abstractruntime")
    from abstractruntime.core.runtime import EffectOutcome as AREffectOutcome

    def llm(run, effect, default_next_node):
        return AREffectOutcome.waiting(ar.WaitState(
            reason=ar.WaitReason.JOB, wait_key="job-1", details={"model": "m"}))

    spec = ar.WorkflowSpec(workflow_id="ar_wait", entry_node="a", nodes={
        "a": lambda run, ctx: ar.StepPlan(node_id="a", next_node="b", effect=ar.Effect(
            type=ar.EffectType.LLM_CALL, payload={"prompt": "hi"}, result_key="llm")),
        "b": lambda run, ctx: ar.StepPlan(node_id="b", complete_output={"llm": run.vars["llm"]}),
    })
    rt = make_runtime(effect_handlers={ar.EffectType.LLM_CALL: llm})
    rid, run = launch(rt, spec)
    assert run.status is RunStatus.WAITING and run.waiting.reason is WaitReason.JOB
    assert (run.waiting.wait_key, run.waiting.resume_to_node) == ("job-1", "b")
    done = rt.resume(run_id=rid, payload={"text": "hello"}, wait_key="job-1")
    assert done.output == {"llm": {"text": "hello"}}
