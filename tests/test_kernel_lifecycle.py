"""Retry, rebuilding a past state, and forks (PRODUCT §9) in the kernel."""

from __future__ import annotations

import pytest

from kernel_helpers import finish, node

from abstractrt_cli import Effect, InMemoryRunStore, RunStatus, RuntimeConfig, StepPlan, WorkflowSpec
from abstractrt_cli.core.integrity import verify_run
from abstractrt_cli.errors import LedgerSeqError, RunNotFailedError, UnknownNodeError


class Recorder(InMemoryRunStore):
    """Keeps every checkpoint, by the ledger count it covers."""

    def __init__(self):
        super().__init__()
        self.by_count = {}

    def save(self, run):
        super().save(run)
        self.by_count[run.ledger_count] = run.to_jsonable()


def mixed_wf():
    return WorkflowSpec("mixed", "a", {
        "a": node("a", effect=Effect("ask_user", {"prompt": "first?"}, "first"), next="b"),
        "b": node("b", effect=Effect("work", {"n": 1}, "w1"), next="c"),
        "c": node("c", effect=Effect("ask_user", {"prompt": "second?"}, "second"), next="d"),
        "d": node("d", effect=Effect("work", {"n": 2}, "w2"), next="end"),
        "end": finish()})


def test_state_at_every_checkpointed_record_equals_the_state_then(make_runtime, registry):
    calls = []
    store = Recorder()
    registry.register(mixed_wf())
    rt = make_runtime(run_store=store, config=RuntimeConfig(effects_per_checkpoint=1),
                      effect_handlers={"work": lambda run, eff: calls.append(1) or {"n": len(calls)}})
    rid = rt.start(workflow=registry.get("mixed"))
    rt.tick(run_id=rid)
    rt.resume(run_id=rid, payload={"response": "one"})
    rt.resume(run_id=rid, payload={"response": "two"})
    records = rt.get_ledger(rid)
    assert rt.get_state(rid).status is RunStatus.COMPLETED and len(calls) == 2
    checked = 0
    for seq in range(len(records)):
        state = rt.state_at(rid, seq).to_jsonable()
        truth = store.by_count.get(seq + 1)
        if truth is None:
            continue
        for k in ("status", "current_node", "vars", "waiting", "output", "effect_seq"):
            assert state[k] == truth[k], (seq, k)
        checked += 1
    assert checked >= 5 and len(calls) == 2  # rebuilding ran no effect


def test_fork_at_a_wait_waits_there_anchored_to_the_source(make_runtime, registry):
    calls = []
    registry.register(mixed_wf())
    rt = make_runtime(effect_handlers={"work": lambda run, eff: calls.append(1) or {"n": len(calls)}})
    rid = rt.start(workflow=registry.get("mixed"))
    rt.tick(run_id=rid)
    rt.resume(run_id=rid, payload={"response": "one"})
    rt.resume(run_id=rid, payload={"response": "two"})
    source_before = (rt.get_state(rid).to_jsonable(), rt.get_ledger(rid))
    records = rt.get_ledger(rid)
    second_wait = [r for r in records if r["kind"] == "effect" and r["status"] == "waiting"][1]
    fork = rt.fork(rid, at_seq=second_wait["seq"])
    assert fork.run_id != rid and fork.status is RunStatus.WAITING
    assert fork.waiting.prompt == "second?" and fork.vars["first"] == {"response": "one"}
    first = rt.get_ledger(fork.run_id)[0]
    assert first["kind"] == "fork"
    assert first["result"]["source_run_id"] == rid and first["result"]["source_seq"] == second_wait["seq"]
    assert first["result"]["source_record_hash"] == second_wait["record_hash"]
    assert (rt.get_state(rid).to_jsonable(), rt.get_ledger(rid)) == source_before
    done = rt.resume(run_id=fork.run_id, payload={"response": "other"})
    assert done.status is RunStatus.COMPLETED and done.vars["second"] == {"response": "other"}
    assert len(calls) == 3  # only the fork's own new effect ran
    assert verify_run(done, rt.get_ledger(fork.run_id))["ok"]


def test_fork_past_the_end_is_refused(make_runtime, registry):
    registry.register(mixed_wf())
    rt = make_runtime()
    rid = rt.start(workflow=registry.get("mixed"))
    with pytest.raises(LedgerSeqError, match="no ledger record 99"):
        rt.fork(rid, at_seq=99)


def test_retry_after_the_cause_is_fixed_reuses_what_was_recorded(make_runtime, registry):
    calls = []
    broken = {"on": True}

    def step2(run, ctx):
        if broken["on"]:
            raise RuntimeError("bug")
        return StepPlan("b", effect=Effect("work", {"n": 2}, "w2"), next_node="end")

    w = WorkflowSpec("r", "a", {
        "a": node("a", effect=Effect("work", {"n": 1}, "w1"), next="b"), "b": step2, "end": finish()})
    registry.register(w)
    rt = make_runtime(effect_handlers={"work": lambda run, eff: calls.append(eff.payload["n"]) or {}})
    rid = rt.start(workflow=w)
    assert rt.tick(run_id=rid).status is RunStatus.FAILED
    with pytest.raises(RunNotFailedError):
        rt.retry(rt.start(workflow=w))
    with pytest.raises(UnknownNodeError):
        rt.retry(rid, from_node="nope")
    broken["on"] = False
    run = rt.retry(rid, actor_id="ops")
    assert run.status is RunStatus.COMPLETED and calls == [1, 2]
    retry = [r for r in rt.get_ledger(rid) if r["kind"] == "retry"]
    assert len(retry) == 1 and retry[0]["actor_id"] == "ops" and retry[0]["result"]["was"]["node"] == "b"
    # A past state across the retry still rebuilds.
    assert rt.state_at(rid, len(rt.get_ledger(rid)) - 1).status is RunStatus.COMPLETED
    assert verify_run(run, rt.get_ledger(rid))["ok"]


def test_retry_from_a_node_is_a_new_visit(make_runtime, registry):
    calls = []
    w = WorkflowSpec("r2", "a", {
        "a": node("a", effect=Effect("work", {"n": 1}, "w1"), next="b"),
        "b": lambda run, ctx: (_ for _ in ()).throw(RuntimeError("x")) if not run.vars.get("ok")
        else StepPlan("b", complete_output={}),
        "fix": lambda run, ctx: (run.vars.__setitem__("ok", True), StepPlan("fix", next_node="a"))[1]})
    registry.register(w)
    rt = make_runtime(effect_handlers={"work": lambda run, eff: calls.append(1) or {}})
    rid = rt.start(workflow=w)
    rt.tick(run_id=rid)
    run = rt.retry(rid, from_node="fix")
    assert run.status is RunStatus.COMPLETED and len(calls) == 2  # a new visit of a runs it again


def test_what_nodes_print_and_log_is_kept_with_its_step_and_still_echoed(make_runtime, registry, capsys):
    import logging

    from abstractrt_cli.storage.memory import InMemoryLogStore

    def talk(run, ctx):
        print("hello from a")
        logging.getLogger("wf").warning("careful")
        return StepPlan("a", effect=Effect("work", {}, "w"), next_node="end")

    def work(run, eff):
        print("working")
        return {}

    w = WorkflowSpec("talk", "a", {"a": talk, "end": finish()})
    registry.register(w)
    logs = InMemoryLogStore()
    rt = make_runtime(log_store=logs, effect_handlers={"work": work})
    rid = rt.start(workflow=w)
    rt.tick(run_id=rid)
    entries, dropped = logs.read_log(rid)
    assert dropped == 0
    assert [(e["node_id"], e["stream"], e["text"]) for e in entries] == [
        ("a", "stdout", "hello from a\n"), ("a", "log", "WARNING wf: careful\n"),
        ("a", "stdout", "working\n")]
    assert "hello from a" in capsys.readouterr().out


def test_node_code_puts_and_gets_artifacts_by_ref(make_runtime, registry):
    from abstractrt_cli.storage.memory import InMemoryArtifactStore

    def put(run, ctx):
        run.vars["ref"] = ctx.artifacts.put(b"\x00\xffbytes", content_type="application/x-test",
                                            tags=["raw"])
        return StepPlan("a", next_node="b")

    def get(run, ctx):
        return StepPlan("b", complete_output={"len": len(ctx.artifacts.get(run.vars["ref"]))})

    w = WorkflowSpec("art", "a", {"a": put, "b": get})
    registry.register(w)
    arts = InMemoryArtifactStore()
    rt = make_runtime(artifact_store=arts)
    rid = rt.start(workflow=w)
    run = rt.tick(run_id=rid)
    assert run.output == {"len": 7} and run.vars["ref"].startswith("sha256:")
    (meta,) = arts.list_artifacts(run_id=rid)
    assert meta["content_type"] == "application/x-test" and meta["size"] == 7
