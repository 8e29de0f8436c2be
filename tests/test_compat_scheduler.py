"""The compatibility Scheduler: a loop over Runtime.runnable() and Runtime.tick()."""

from __future__ import annotations

import threading

import pytest

from abstractrt_cli.compat.abstractruntime import (
    Effect,
    EffectType,
    InMemoryLedgerStore,
    InMemoryRunStore,
    RunStatus,
    Runtime,
    Scheduler,
    StepPlan,
    WaitReason,
    WorkflowRegistry,
    WorkflowSpec,
    create_scheduled_runtime,
)
from abstractrt_cli.compat.abstractruntime.core.config import RuntimeConfig


def timer_flow(until: str = "2026-01-01T01:00:00+00:00") -> WorkflowSpec:
    def wait(run, ctx):
        return StepPlan("wait", effect=Effect(EffectType.WAIT_UNTIL, {"until": until}), next_node="end")

    return WorkflowSpec("timer", "wait", {"wait": wait, "end": lambda r, c: StepPlan("end", complete_output={"ok": 1})})


def ask_flow(workflow_id: str = "ask") -> WorkflowSpec:
    def ask(run, ctx):
        return StepPlan("ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?", "wait_key": "q"}, "a"),
                        next_node="end")

    return WorkflowSpec(workflow_id, "ask", {"ask": ask, "end": lambda r, c: StepPlan("end", complete_output=r.vars["a"])})


def parent_flow(child_id: str) -> WorkflowSpec:
    def start(run, ctx):
        return StepPlan("start", effect=Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": child_id}, "child"),
                        next_node="end")

    return WorkflowSpec(f"parent_of_{child_id}", "start",
                        {"start": start, "end": lambda r, c: StepPlan("end", complete_output=r.vars["child"])})


@pytest.fixture
def setup(clock):
    registry = WorkflowRegistry()
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(),
                 workflow_registry=registry, clock=clock)
    return rt, registry, clock


def test_a_poll_moves_a_due_timer_and_nothing_before_it_is_due(setup):
    rt, registry, clock = setup
    wf = timer_flow()
    registry.register(wf)
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status == RunStatus.WAITING
    moved = []
    scheduler = Scheduler(runtime=rt, registry=registry, on_run_resumed=moved.append)
    assert scheduler.poll_once() == 0
    clock.advance(3600)
    assert scheduler.poll_once() == 1
    assert rt.get_state(run_id).status == RunStatus.COMPLETED
    assert [s.run_id for s in moved] == [run_id]
    assert scheduler.stats.poll_cycles == 2 and scheduler.stats.runs_resumed == 1


def test_running_runs_are_left_to_their_starter_unless_asked(setup):
    rt, registry, _ = setup
    wf = ask_flow()
    registry.register(wf)
    run_id = rt.start(workflow=wf)
    assert Scheduler(runtime=rt, registry=registry).poll_once() == 0
    assert rt.get_state(run_id).status == RunStatus.RUNNING
    assert Scheduler(runtime=rt, registry=registry, include_running=True).poll_once() == 1
    assert rt.get_state(run_id).status == RunStatus.WAITING


def test_a_run_of_an_unregistered_workflow_is_reported_not_fatal(setup):
    rt, registry, clock = setup
    wf = timer_flow()
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    clock.advance(3600)
    failed = []
    scheduler = Scheduler(runtime=rt, registry=registry, on_run_failed=lambda rid, exc: failed.append(rid))
    assert scheduler.poll_once() == 0
    assert failed == [run_id] and scheduler.stats.runs_failed == 1
    assert "not registered" in scheduler.stats.errors[0]
    assert rt.get_state(run_id).status == RunStatus.WAITING


def test_a_run_busy_elsewhere_is_skipped_and_moved_by_a_later_poll(clock):
    registry = WorkflowRegistry()
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(), clock=clock,
                 workflow_registry=registry, config=RuntimeConfig(lock_timeout=0))
    wf = timer_flow()
    registry.register(wf)
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    clock.advance(3600)
    scheduler = Scheduler(runtime=rt, registry=registry)
    with rt.run_store.lock(run_id, timeout=1):  # someone else is moving it
        assert scheduler.poll_once() == 0
        assert scheduler.stats.runs_failed == 0
    assert scheduler.poll_once() == 1


def test_resume_event_refuses_a_run_that_is_not_waiting(setup):
    rt, registry, _ = setup
    wf = ask_flow()
    registry.register(wf)
    scheduler = Scheduler(runtime=rt, registry=registry)
    run_id = rt.start(workflow=wf)
    with pytest.raises(ValueError, match="is not waiting"):
        scheduler.resume_event(run_id=run_id, wait_key="q", payload={})
    rt.tick(workflow=wf, run_id=run_id)
    assert [r.run_id for r in scheduler.find_waiting_runs(wait_reason=WaitReason.USER)] == [run_id]
    assert scheduler.resume_event(run_id=run_id, wait_key="q", payload={"t": 1}).output == {"t": 1}


def test_a_parent_the_kernel_resumed_is_what_resume_subworkflow_parent_returns():
    sr = create_scheduled_runtime(workflows=[ask_flow("child"), parent_flow("child")], auto_start=False)
    parent_id, parent = sr.run(sr.registry.get("parent_of_child"))
    child_id = parent.waiting.details["sub_run_id"]
    # answering the child completes it, and the kernel hands its output to the parent
    sr.respond(child_id, {"answer": 42})
    assert sr.get_state(parent_id).status == RunStatus.COMPLETED
    resumed = sr.resume_subworkflow_parent(child_run_id=child_id, child_output={"ignored": True})
    assert resumed.run_id == parent_id
    assert resumed.output == {"sub_run_id": child_id, "output": {"answer": 42}}
    # a run that is nobody's child has no parent to resume
    lone_id, _ = sr.run(sr.registry.get("child"))
    assert sr.resume_subworkflow_parent(child_run_id=lone_id, child_output={}) is None


def test_cancel_with_children_lists_every_run_the_cascade_cancelled():
    sr = create_scheduled_runtime(workflows=[ask_flow("leaf"), parent_flow("leaf"),
                                            parent_flow("parent_of_leaf")], auto_start=False)
    top_id, top = sr.run(sr.registry.get("parent_of_parent_of_leaf"))
    assert top.status == RunStatus.WAITING
    cancelled = sr.cancel_with_children(top_id, reason="shutdown")
    assert cancelled[0].run_id == top_id and len(cancelled) == 3
    assert all(r.status == RunStatus.CANCELLED for r in cancelled)
    assert sr.cancel_with_children(top_id) == []  # nothing left to cancel
    assert sr.cancel_with_children("no-such-run") == []


def test_a_store_without_queries_is_refused_with_a_type_error():
    class SaveLoad:
        def save(self, run):
            pass

        def load(self, run_id):
            return None

    rt = Runtime(run_store=SaveLoad(), ledger_store=InMemoryLedgerStore())
    with pytest.raises(TypeError, match="QueryableRunStore, but got SaveLoad"):
        Scheduler(runtime=rt, registry=WorkflowRegistry())


def test_the_background_thread_moves_due_runs_and_stops_cleanly(clock):
    moved = threading.Event()
    sr = create_scheduled_runtime(workflows=[timer_flow()], poll_interval_s=0.01, auto_start=False,
                                  on_run_resumed=lambda state: moved.set(), clock=clock)
    run_id, state = sr.run(sr.registry.get("timer"))
    assert state.status == RunStatus.WAITING
    sr.start_scheduler()
    with pytest.raises(RuntimeError, match="already running"):
        sr.scheduler.start()
    try:
        clock.advance(3600)
        assert moved.wait(30), "the scheduler thread did not move the due run"
    finally:
        sr.stop()
    assert not sr.is_running
    assert sr.get_state(run_id).status == RunStatus.COMPLETED
    sr.stop()  # stopping twice is fine
