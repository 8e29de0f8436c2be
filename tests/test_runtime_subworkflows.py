"""start_subworkflow: sync and async children, and parents that follow their children."""

from __future__ import annotations

from typing import Optional

import pytest
from kernel_helpers import finish, node

from abstractrt_cli import (
    Effect,
    InMemoryLedgerStore,
    InMemoryRunStore,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WorkflowRegistry,
    WorkflowSpec,
    verify_ledger_chain,
)

# ---------------------------------------------------------------------------- helpers




def wf(workflow_id: str, entry: str = "a", **nodes) -> WorkflowSpec:
    return WorkflowSpec(workflow_id=workflow_id, entry_node=entry, nodes=nodes)


def records(rt, rid, kind: str):
    return [r for r in rt.get_ledger(rid) if r["kind"] == kind]


def snapshot(rt, rid):
    return rt.get_state(rid).to_jsonable(), rt.get_ledger(rid)


def assert_ledger_verifies(rt, rid):
    run = rt.get_state(rid)
    report = verify_ledger_chain(rt.get_ledger(rid), expected_count=run.ledger_count,
                                 expected_head=run.ledger_head)
    assert report["ok"], report


class SimulatedCrash(Exception):
    """Stands for the process dying at the instant a checkpoint would be written."""


class CrashingRunStore(InMemoryRunStore):
    """A run store whose next ``save`` of run ``crash_for`` dies."""

    crash_for: Optional[str] = None

    def save(self, run) -> None:
        if run.run_id == self.crash_for:
            self.crash_for = None
            raise SimulatedCrash(f"died before checkpointing {run.run_id}")
        super().save(run)


def sub(workflow_id: str, *, result_key: str = "child", **payload) -> Effect:
    return Effect("start_subworkflow", {"workflow_id": workflow_id, **payload}, result_key)


def parent_wf(child_id: str = "child", **payload):
    return wf("parent", a=node("a", effect=sub(child_id, **payload), next="end"), end=finish())


def child_completing():
    return wf("child", c=lambda run, ctx: StepPlan("c", complete_output={
        "doubled": run.vars.get("x", 0) * 2}), entry="c")


def child_asking():
    return wf("child", entry="ask",
              ask=node("ask", effect=Effect("ask_user", {"prompt": "Child?"}, "ans"),
                       next="done"),
              done=lambda run, ctx: StepPlan("done", complete_output={"ans": run.vars["ans"]}))


def register(rt, *workflows):
    for w in workflows:
        rt.workflow_registry.register(w, replace=True)


def start(rt, workflow, **kw):
    rid = rt.start(workflow=workflow, **kw)
    return rid, rt.tick(run_id=rid)


def only_child(rt, parent_id):
    (child,) = rt.run_store.list_children(parent_run_id=parent_id)
    return child


# ---------------------------------------------------------------------------- sync


def test_sync_child_that_completes_gives_its_output(runtime):
    register(runtime, parent_wf(vars={"x": 21}), child_completing())
    pid, run = start(runtime, parent_wf(vars={"x": 21}), actor_id="me", session_id="s")
    child = only_child(runtime, pid)
    assert run.status is RunStatus.COMPLETED
    assert run.vars["child"] == {"sub_run_id": child.run_id, "output": {"doubled": 42}}
    assert child.status is RunStatus.COMPLETED and child.parent_run_id == pid
    assert (child.actor_id, child.session_id) == ("me", "s")
    assert_ledger_verifies(runtime, pid)
    assert_ledger_verifies(runtime, child.run_id)


def test_sync_child_that_waits_makes_the_parent_wait(runtime):
    register(runtime, parent_wf(), child_asking())
    pid, run = start(runtime, parent_wf())
    child = only_child(runtime, pid)
    assert child.status is RunStatus.WAITING and child.waiting.prompt == "Child?"
    assert run.status is RunStatus.WAITING
    w = run.waiting
    assert w.reason is WaitReason.SUBWORKFLOW
    assert w.wait_key == f"subworkflow:{child.run_id}"
    assert w.details["sub_run_id"] == child.run_id
    assert w.details["sub_waiting"]["prompt"] == "Child?"
    # Ticking the parent while the child still waits changes nothing.
    before = snapshot(runtime, pid)
    runtime.tick(run_id=pid)
    assert snapshot(runtime, pid) == before


def test_defect_5_waiting_child_completion_resumes_parent(runtime):
    register(runtime, parent_wf(), child_asking())
    pid, _ = start(runtime, parent_wf())
    child = only_child(runtime, pid)
    done_child = runtime.resume(run_id=child.run_id, payload={"response": "yes"})
    assert done_child.status is RunStatus.COMPLETED
    parent = runtime.get_state(pid)  # nobody touched the parent
    assert parent.status is RunStatus.COMPLETED
    assert parent.vars["child"] == {"sub_run_id": child.run_id,
                                    "output": {"ans": {"response": "yes"}}}
    (rec,) = records(runtime, pid, "resume")
    assert rec["actor_id"] == f"subworkflow:{child.run_id}"
    assert rec["result"]["source"] == "subworkflow"
    assert_ledger_verifies(runtime, pid)


def test_child_waiting_on_a_timer_resumes_parent_when_ticked(runtime, clock):
    child = wf("timer", entry="w",
               w=node("w", effect=Effect("wait_until", {"until": "2026-01-01T01:00:00Z"}),
                      next="d"),
               d=node("d", out={"slept": True}))
    register(runtime, parent_wf("timer"), child)
    pid, run = start(runtime, parent_wf("timer"))
    assert run.status is RunStatus.WAITING
    kid = only_child(runtime, pid)
    clock.set("2026-01-01T01:00:00Z")
    runtime.tick(run_id=kid.run_id)
    assert runtime.get_state(pid).status is RunStatus.COMPLETED
    assert runtime.get_state(pid).vars["child"]["output"] == {"slept": True}


def test_parent_continues_past_the_child_and_can_wait_again(runtime):
    parent = wf("parent", a=node("a", effect=sub("child"), next="b"),
                b=node("b", effect=Effect("ask_user", {"prompt": "Parent?"}, "p"), next="end"),
                end=finish())
    register(runtime, parent, child_asking())
    pid, _ = start(runtime, parent)
    runtime.resume(run_id=only_child(runtime, pid).run_id, payload={"response": 1})
    run = runtime.get_state(pid)
    assert run.status is RunStatus.WAITING and run.waiting.prompt == "Parent?"
    assert runtime.resume(run_id=pid, payload={}).status is RunStatus.COMPLETED


def test_child_that_waits_again_keeps_the_parent_waiting(runtime):
    child = wf("child", entry="q1",
               q1=node("q1", effect=Effect("ask_user", {"prompt": "1"}), next="q2"),
               q2=node("q2", effect=Effect("ask_user", {"prompt": "2"}), next="d"),
               d=node("d", out={"two": 2}))
    register(runtime, parent_wf(), child)
    pid, _ = start(runtime, parent_wf())
    kid = only_child(runtime, pid).run_id
    runtime.resume(run_id=kid, payload={})
    assert runtime.get_state(pid).status is RunStatus.WAITING
    runtime.resume(run_id=kid, payload={})
    assert runtime.get_state(pid).vars["child"]["output"] == {"two": 2}


def test_nested_children_resume_all_the_way_up(runtime):
    top = wf("top", a=node("a", effect=sub("middle", result_key="m"), next="end"),
             end=finish())
    middle = wf("middle", a=node("a", effect=sub("child", result_key="c"), next="end"),
                end=finish())
    register(runtime, top, middle, child_asking())
    tid, run = start(runtime, top)
    mid = only_child(runtime, tid)
    leaf = only_child(runtime, mid.run_id)
    assert run.status is mid.status is leaf.status is RunStatus.WAITING
    runtime.resume(run_id=leaf.run_id, payload={"response": "deep"})
    top_run = runtime.get_state(tid)
    assert top_run.status is RunStatus.COMPLETED
    assert top_run.vars["m"]["output"]["c"]["output"] == {"ans": {"response": "deep"}}


def test_defect_5_child_failure_fails_parent(runtime):
    def boom(run, ctx):
        raise RuntimeError("child broke")

    child = wf("child", entry="ask",
               ask=node("ask", effect=Effect("ask_user", {"prompt": "?"}), next="boom"),
               boom=boom)
    register(runtime, parent_wf(), child)
    pid, _ = start(runtime, parent_wf())
    kid = only_child(runtime, pid).run_id
    assert runtime.resume(run_id=kid, payload={}).status is RunStatus.FAILED
    parent = runtime.get_state(pid)
    assert parent.status is RunStatus.FAILED
    assert kid in parent.error and "'child'" in parent.error and "child broke" in parent.error
    assert records(runtime, pid, "fail")[0]["error"] == parent.error


def test_sync_child_failing_at_once_fails_parent_naming_it(runtime):
    register(runtime, parent_wf(), wf("child", a=node("a", next="nowhere")))
    pid, run = start(runtime, parent_wf())
    kid = only_child(runtime, pid)
    assert kid.status is RunStatus.FAILED
    assert run.status is RunStatus.FAILED and kid.run_id in run.error
    assert "unknown node 'nowhere'" in run.error


def test_defect_5_cancelling_parent_cancels_waiting_children(runtime):
    top = wf("top", a=node("a", effect=sub("middle"), next="end"), end=finish())
    middle = wf("middle", a=node("a", effect=sub("child"), next="end"), end=finish())
    register(runtime, top, middle, child_asking())
    tid, _ = start(runtime, top)
    mid = only_child(runtime, tid)
    leaf = only_child(runtime, mid.run_id)
    runtime.cancel_run(tid, reason="abort", actor_id="ops")
    for rid in (tid, mid.run_id, leaf.run_id):
        run = runtime.get_state(rid)
        assert run.status is RunStatus.CANCELLED and run.waiting is None
        assert len(records(runtime, rid, "cancel")) == 1
    assert tid in runtime.get_state(mid.run_id).error
    assert records(runtime, leaf.run_id, "cancel")[0]["actor_id"] == "ops"


def test_cancelling_parent_leaves_finished_children_alone(runtime):
    register(runtime, child_completing(), child_asking())
    parent = wf("parent", a=node("a", effect=sub("done_child", result_key="x"), next="b"),
                b=node("b", effect=Effect("ask_user", {"prompt": "?"}), next="end"),
                end=finish())
    register(runtime, parent, wf("done_child", a=node("a", out={})))
    pid, _ = start(runtime, parent)
    kid = only_child(runtime, pid)
    before = snapshot(runtime, kid.run_id)
    runtime.cancel_run(pid)
    assert snapshot(runtime, kid.run_id) == before


def test_cancelling_a_waiting_child_fails_its_parent(runtime):
    register(runtime, parent_wf(), child_asking())
    pid, _ = start(runtime, parent_wf())
    kid = only_child(runtime, pid).run_id
    runtime.cancel_run(kid, reason="not needed")
    parent = runtime.get_state(pid)
    assert parent.status is RunStatus.FAILED
    assert kid in parent.error and "cancelled" in parent.error


def test_parent_catches_up_on_a_child_that_ended_unseen(make_runtime, registry, clock):
    """A child finished by a runtime that could not resume the parent (e.g. it lacked the
    parent's workflow): the parent's own next tick takes the child's result."""
    store, ledger = InMemoryRunStore(), InMemoryLedgerStore()
    rt = make_runtime(run_store=store, ledger_store=ledger)
    register(rt, parent_wf(), child_asking())
    pid, _ = start(rt, parent_wf())
    kid = only_child(rt, pid).run_id
    partial = WorkflowRegistry()
    partial.register(child_asking())
    other = make_runtime(run_store=store, ledger_store=ledger, workflow_registry=partial)
    other.resume(run_id=kid, payload={"response": "late"})
    assert rt.get_state(pid).status is RunStatus.WAITING  # not reachable from `other`
    run = rt.tick(run_id=pid)
    assert run.status is RunStatus.COMPLETED
    assert run.vars["child"]["output"] == {"ans": {"response": "late"}}


def test_busy_parent_catches_up_on_its_own_next_tick(make_runtime, registry):
    rt = make_runtime(config=RuntimeConfig(lock_timeout=0.05))
    register(rt, parent_wf(), child_asking())
    pid, _ = start(rt, parent_wf())
    kid = only_child(rt, pid).run_id
    with rt.run_store.lock(pid, timeout=1):  # another process is busy with the parent
        assert rt.resume(run_id=kid, payload={"response": "x"}).status is RunStatus.COMPLETED
    assert rt.get_state(pid).status is RunStatus.WAITING
    run = rt.tick(run_id=pid)
    assert run.status is RunStatus.COMPLETED
    assert run.vars["child"]["output"] == {"ans": {"response": "x"}}


def test_crash_after_child_completed_does_not_start_a_second_child(make_runtime):
    store = CrashingRunStore()
    rt = make_runtime(run_store=store)

    def c(run, ctx):
        store.crash_for = run.parent_run_id  # the parent dies right after its child ends
        return StepPlan("c", complete_output={"n": 1})

    register(rt, parent_wf(), wf("child", entry="c", c=c))
    pid = rt.start(workflow=parent_wf())
    with pytest.raises(SimulatedCrash):
        rt.tick(run_id=pid)
    assert rt.get_state(pid).status is RunStatus.RUNNING
    run = rt.tick(run_id=pid)
    assert run.status is RunStatus.COMPLETED
    assert len(rt.run_store.list_children(parent_run_id=pid)) == 1
    assert run.vars["child"]["output"] == {"n": 1}
    assert_ledger_verifies(rt, pid)


def test_unknown_subworkflow_fails_the_parent(runtime):
    register(runtime, parent_wf("ghost"))
    _, run = start(runtime, parent_wf("ghost"))
    assert run.status is RunStatus.FAILED and "'ghost' not found" in run.error


def test_subworkflow_needs_a_workflow_id(runtime):
    w = wf("p", a=node("a", effect=Effect("start_subworkflow", {}), next="end"), end=finish())
    register(runtime, w)
    _, run = start(runtime, w)
    assert run.status is RunStatus.FAILED and "requires payload.workflow_id" in run.error


def test_subworkflow_vars_must_be_an_object(runtime):
    register(runtime, parent_wf(vars=[1]), child_completing())
    _, run = start(runtime, parent_wf(vars=[1]))
    assert run.status is RunStatus.FAILED and "vars must be an object" in run.error


def test_subworkflow_in_a_loop_starts_a_child_per_visit(runtime):
    def b(run, ctx):
        run.vars["i"] = run.vars.get("i", 0) + 1
        return StepPlan("b", next_node="a" if run.vars["i"] < 3 else "end")

    parent = wf("parent", a=node("a", effect=sub("child", vars={"x": 1}), next="b"), b=b,
                end=finish())
    register(runtime, parent, child_completing())
    pid, run = start(runtime, parent)
    assert run.status is RunStatus.COMPLETED
    assert len(runtime.run_store.list_children(parent_run_id=pid)) == 3


# ---------------------------------------------------------------------------- async


def test_async_child_returns_at_once(runtime):
    register(runtime, parent_wf(**{"async": True}), child_asking())
    pid, run = start(runtime, parent_wf(**{"async": True}))
    kid = only_child(runtime, pid)
    assert run.status is RunStatus.COMPLETED
    assert run.vars["child"] == {"sub_run_id": kid.run_id, "async": True}
    assert kid.status is RunStatus.RUNNING  # started, not ticked: the caller drives it
    runtime.tick(run_id=kid.run_id)
    assert runtime.resume(run_id=kid.run_id, payload={}).status is RunStatus.COMPLETED
    assert runtime.get_state(pid).to_jsonable() == run.to_jsonable()  # parent unaffected
