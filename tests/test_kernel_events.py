"""The event mailbox in the kernel (PRODUCT §8): emit keeps events for later waiters."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kernel_helpers import finish, node

from abstractrt_cli import Effect, RunStatus, StepPlan, WorkflowSpec
from abstractrt_cli.errors import SchemaError, StoreCapabilityError
from abstractrt_cli.storage.memory_events import InMemoryEventStore


def waiter(key="order:1", workflow_id="w", **extra):
    return WorkflowSpec(workflow_id, "a", {
        "a": node("a", effect=Effect("wait_event", {"wait_key": key, **extra}, "evt"), next="end"),
        "end": finish()})


@pytest.fixture
def events():
    return InMemoryEventStore()


@pytest.fixture
def rt(make_runtime, events, registry):
    registry.register(waiter())
    return make_runtime(event_store=events)


def test_an_event_emitted_before_the_wait_is_received_when_the_run_reaches_it(rt, registry, clock):
    w = registry.get("w")
    rid = rt.start(workflow=w)  # created, not ticked yet
    clock.advance(1)
    report = rt.emit("order:1", {"paid": True})
    assert report.delivered == [] and report.event is not None
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED and run.vars["evt"] == {"paid": True}
    resume = [r for r in rt.get_ledger(rid) if r["kind"] == "resume"][0]
    assert resume["result"]["event_id"] == report.event.event_id
    assert resume["result"]["source"] == "mailbox"
    assert rt.event_store.list_events()[0].received_by == [rid]


def test_a_run_created_after_the_emit_never_receives_it(rt, registry, clock):
    rt.emit("order:1", {"old": True})
    clock.advance(1)
    rid = rt.start(workflow=registry.get("w"))
    assert rt.tick(run_id=rid).status is RunStatus.WAITING


def test_emit_resumes_waiting_runs_and_each_run_gets_an_event_once(make_runtime, registry, events, clock):
    def loop(run, ctx):
        n = run.vars.get("n", 0)
        if n == 2:
            return StepPlan("a", complete_output={"got": run.vars["got"]})
        run.vars["n"] = n + 1
        return StepPlan("a", effect=Effect("wait_event", {"wait_key": "k"}, f"got.{n}"), next_node="a")

    w = WorkflowSpec("loop", "a", {"a": loop})
    registry.register(w)
    rt = make_runtime(event_store=events)
    rid = rt.start(workflow=w)
    assert rt.tick(run_id=rid).status is RunStatus.WAITING
    clock.advance(1)
    report = rt.emit("k", {"i": 1})
    (run,) = report.delivered
    # The loop waits on the same key again: the event it already has is not delivered twice.
    assert run.status is RunStatus.WAITING and run.vars["got"] == {"0": {"i": 1}}
    clock.advance(1)
    run = rt.emit("k", {"i": 2}).delivered[0]
    assert run.output == {"got": {"0": {"i": 1}, "1": {"i": 2}}}


def test_of_several_kept_events_the_oldest_comes_first_and_expired_never(rt, registry, clock):
    rid = rt.start(workflow=registry.get("w"))
    clock.advance(1)
    rt.emit("order:1", {"n": 1}, ttl=timedelta(seconds=10))
    clock.advance(1)
    rt.emit("order:1", {"n": 2})
    clock.advance(20)  # the first has expired
    assert rt.tick(run_id=rid).vars["evt"] == {"n": 2}
    assert rt.event_store.prune(now=clock()) == 1


def test_no_keep_keeps_nothing(rt, registry, clock):
    rid = rt.start(workflow=registry.get("w"))
    clock.advance(1)
    assert rt.emit("order:1", {"x": 1}, keep=False).event is None
    assert rt.tick(run_id=rid).status is RunStatus.WAITING
    assert rt.event_store.list_events() == []


def test_emit_checks_every_receivers_schema_before_delivering_to_any(make_runtime, registry, events):
    strict = waiter(workflow_id="strict", schema={"type": "object", "required": ["amount"]})
    loose = waiter(workflow_id="loose")
    registry.register(strict)
    registry.register(loose)
    rt = make_runtime(event_store=events)
    a, b = rt.start(workflow=loose), rt.start(workflow=strict)
    rt.tick(run_id=a)
    rt.tick(run_id=b)
    with pytest.raises(SchemaError, match=b):
        rt.emit("order:1", {"nothing": 1})
    assert rt.get_state(a).status is RunStatus.WAITING and events.list_events() == []


def test_a_store_without_events_says_so(make_runtime):
    with pytest.raises(StoreCapabilityError):
        make_runtime().emit("k", {})
    assert make_runtime().emit("k", {}, keep=False).delivered == []


def test_transitions_are_reported_once_each_after_the_lock_is_released(make_runtime, registry, events):
    seen = []
    rt = None

    def on_transition(event, run):
        # The lock is free: another operation on the run works from here.
        rt.get_state(run.run_id)
        with rt.run_store.lock(run.run_id, timeout=0):
            pass
        seen.append((event, run.status.value, run.waiting.reason.value if run.waiting else None))

    ask = WorkflowSpec("ask", "a", {
        "a": node("a", effect=Effect("ask_user", {"prompt": "?"}, "x"), next="b"),
        "b": node("b", effect=Effect("wait_until", {"until": "2020-01-01T00:00:00Z"}, "t"), next="end"),
        "end": finish()})
    registry.register(ask)
    rt = make_runtime(event_store=events, on_transition=on_transition)
    rid = rt.start(workflow=ask)
    rt.tick(run_id=rid)
    rt.tick(run_id=rid)  # nothing changes: nothing reported
    rt.resume(run_id=rid, payload={"response": "y"})
    assert seen == [("wait", "waiting", "user"), ("complete", "completed", None)]
