"""The compatibility Runtime: our kernel with AbstractRuntime's constructor, defaults and errors."""

from __future__ import annotations

import pytest

from abstractrt_cli.compat.abstractruntime import (
    DefaultEffectPolicy,
    Effect,
    EffectType,
    HashChainedLedgerStore,
    InMemoryArtifactStore,
    InMemoryLedgerStore,
    InMemoryRunStore,
    RetryPolicy,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    WorkflowRegistry,
    WorkflowSpec,
    compute_idempotency_key,
    verify_ledger_chain,
)
from abstractrt_cli.compat.abstractruntime.core.config import RuntimeConfig
from abstractrt_cli.compat.abstractruntime.core.models import StepRecord
from abstractrt_cli.compat.abstractruntime.core.runtime import EffectOutcome
from abstractrt_cli.compat.abstractruntime.core.vars import ensure_namespaces, get_limits
from abstractrt_cli.compat.abstractruntime.identity import ActorFingerprint
from abstractrt_cli.core.runtime import Runtime as KernelRuntime
from abstractrt_cli.errors import RunNotWaitingError, WaitKeyMismatchError


def waiting_flow(workflow_id: str = "greet") -> WorkflowSpec:
    def ask(run, ctx):
        return StepPlan("ask", effect=Effect(EffectType.WAIT_EVENT, {"wait_key": "go"}, "event"),
                        next_node="done")

    def done(run, ctx):
        return StepPlan("done", complete_output={"event": run.vars["event"]})

    return WorkflowSpec(workflow_id, "ask", {"ask": ask, "done": done})


def effect_flow(calls: list) -> tuple:
    def handler(run, effect):
        calls.append(effect.payload)
        return EffectOutcome.failed("model busy")

    def call(run, ctx):
        return StepPlan("call", effect=Effect(EffectType.LLM_CALL, {"prompt": "hi"}, "reply"),
                        next_node="done")

    wf = WorkflowSpec("llm", "call", {"call": call, "done": lambda r, c: StepPlan("done", complete_output={})})
    return wf, {EffectType.LLM_CALL: handler}


def make_runtime(**kw) -> Runtime:
    return Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(), **kw)


def test_it_is_the_kernel_runtime_and_keeps_the_artifact_store_it_is_given():
    store = InMemoryArtifactStore()
    rt = make_runtime(artifact_store=store)
    assert isinstance(rt, KernelRuntime)
    assert rt.artifact_store is store
    other = InMemoryArtifactStore()
    rt.set_artifact_store(other)
    assert rt.artifact_store is other


def test_without_a_policy_an_effect_gets_one_attempt_as_in_abstractruntime():
    calls: list = []
    wf, handlers = effect_flow(calls)
    rt = make_runtime(effect_handlers=handlers)
    assert isinstance(rt.effect_policy, DefaultEffectPolicy)
    state = rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert state.status == RunStatus.FAILED
    assert len(calls) == 1
    # the kernel on its own gives llm_call three attempts: the compat default is deliberate
    assert KernelRuntime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore()) \
        .effect_policy.max_attempts(Effect(EffectType.LLM_CALL)) == 3


def test_a_given_policy_is_used_as_is():
    policy = RetryPolicy(llm_max_attempts=1)
    assert make_runtime(effect_policy=policy).effect_policy is policy


def test_resume_refusals_are_value_errors_worded_like_abstractruntime_and_change_nothing():
    rt = make_runtime()
    wf = waiting_flow()
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    ledger_before = rt.get_ledger(run_id)

    with pytest.raises(ValueError, match="wait_key mismatch: expected 'go', got 'stop'") as info:
        rt.resume(workflow=wf, run_id=run_id, wait_key="stop", payload={})
    assert isinstance(info.value, WaitKeyMismatchError)  # the kernel's class, for our callers
    assert rt.get_ledger(run_id) == ledger_before
    assert rt.get_state(run_id).status == RunStatus.WAITING

    done = rt.resume(workflow=wf, run_id=run_id, wait_key="go", payload={"n": 1})
    assert done.output == {"event": {"n": 1}}
    with pytest.raises(ValueError, match="is not waiting") as info:
        rt.resume(workflow=wf, run_id=run_id, wait_key="go", payload={})
    assert isinstance(info.value, RunNotWaitingError)


def test_a_subworkflow_without_a_registry_fails_naming_what_is_missing():
    def parent(run, ctx):
        return StepPlan("p", effect=Effect(EffectType.START_SUBWORKFLOW, {"workflow_id": "child"}, "r"),
                        next_node="end")

    wf = WorkflowSpec("parent", "p", {"p": parent, "end": lambda r, c: StepPlan("end", complete_output={})})
    rt = make_runtime(effect_policy=RetryPolicy(llm_max_attempts=1))
    state = rt.tick(workflow=wf, run_id=rt.start(workflow=wf))
    assert state.status == RunStatus.FAILED
    assert "requires a workflow_registry" in state.error
    # not retried: a missing registry does not appear by trying again
    attempts = [r for r in rt.get_ledger(state.run_id) if r.get("kind") == "effect"]
    assert [r["attempt"] for r in attempts] == [1]

    with_registry = make_runtime(workflow_registry=WorkflowRegistry())
    state = with_registry.tick(workflow=wf, run_id=with_registry.start(workflow=wf))
    assert "'child' not found" in state.error


class SaveLoadOnlyStore:
    """A run store as AbstractRuntime's docs describe one: save and load, nothing else."""

    def __init__(self):
        self.runs = {}

    def save(self, run):
        self.runs[run.run_id] = RunState.from_dict(run.to_jsonable())

    def load(self, run_id):
        run = self.runs.get(run_id)
        return RunState.from_dict(run.to_jsonable()) if run else None


def test_a_run_store_with_only_save_and_load_gets_in_process_locks_and_runs():
    store = SaveLoadOnlyStore()
    rt = Runtime(run_store=store, ledger_store=InMemoryLedgerStore())
    wf = waiting_flow()
    run_id = rt.start(workflow=wf)
    assert rt.tick(workflow=wf, run_id=run_id).status == RunStatus.WAITING
    assert rt.resume(workflow=wf, run_id=run_id, wait_key="go", payload={}).status == RunStatus.COMPLETED
    assert store.runs[run_id].status == RunStatus.COMPLETED
    with pytest.raises(TypeError, match="cannot list a run's children"):
        rt.cancel_run(rt.start(workflow=wf))


class UnchainedLedger:
    def append(self, record):
        pass

    def list(self, run_id):
        return []


def test_a_ledger_store_that_cannot_chain_is_refused_up_front():
    with pytest.raises(TypeError, match="hash-chained ledger store"):
        Runtime(run_store=InMemoryRunStore(), ledger_store=UnchainedLedger())
    with pytest.raises(TypeError, match="chain every record themselves"):
        HashChainedLedgerStore(UnchainedLedger())


def test_compute_idempotency_key_is_the_key_the_runtime_records_for_a_first_effect():
    rt = make_runtime()
    wf = waiting_flow()
    run_id = rt.start(workflow=wf)
    rt.tick(workflow=wf, run_id=run_id)
    recorded = [r for r in rt.get_ledger(run_id) if r.get("kind") == "effect"][0]["idempotency_key"]
    effect = Effect(EffectType.WAIT_EVENT, {"wait_key": "go"}, "event")
    key = compute_idempotency_key(run_id=run_id, node_id="ask", effect=effect)
    assert key == recorded and len(key) == 32
    assert compute_idempotency_key(run_id=run_id, node_id="ask", effect=effect, effect_seq=1) != key


def test_records_built_with_step_record_builders_are_chained_by_our_ledgers():
    ledger = HashChainedLedgerStore(InMemoryLedgerStore())
    run = RunState.new(workflow_id="wf", entry_node="a")
    started = StepRecord.start(run=run, node_id="a", effect=Effect(EffectType.LLM_CALL, {"p": 1}))
    assert started.status.value == "started" and started.effect["type"] == "llm_call"
    ledger.append(started.finish_success({"ok": True}))
    ledger.append(StepRecord.start(run=run, node_id="b", effect=None).finish_failure("no"))
    records = ledger.list(run.run_id)
    assert [r["seq"] for r in records] == [0, 1]
    assert records[1]["prev_hash"] == records[0]["record_hash"]
    assert verify_ledger_chain(records)["ok"]
    records[0]["result"] = {"ok": False}
    report = verify_ledger_chain(records)
    assert not report["ok"] and report["first_bad_index"] == 0


def test_config_and_vars_helpers_keep_one_copy_of_the_defaults():
    config = RuntimeConfig(max_iterations=7).with_capabilities({"max_tokens": 4096})
    assert isinstance(config, RuntimeConfig)
    assert config.to_limits_dict()["max_tokens"] == 4096
    assert config.max_iterations == 7
    run_vars = ensure_namespaces({"context": "not a dict"})
    assert run_vars["context"] == {} and run_vars["_temp"] == {}
    assert get_limits(run_vars) == RuntimeConfig().to_limits_dict()


def test_actor_fingerprints_are_stable_ids():
    a = ActorFingerprint.from_metadata(kind="agent", display_name="bot", metadata={"v": 1})
    b = ActorFingerprint.from_metadata(kind="agent", display_name="bot", metadata={"v": 1})
    c = ActorFingerprint.from_metadata(kind="agent", display_name="bot", metadata={"v": 2})
    assert a.actor_id == b.actor_id != c.actor_id
    assert a.actor_id.startswith("ar_") and len(a.actor_id) == 27
    assert a.to_dict()["kind"] == "agent"
