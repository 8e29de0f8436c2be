"""The reliability rules of PRODUCT §5a in the kernel, through the library.

Each test here failed on part one's kernel: a resume recorded beyond the checkpoint
could take a second answer, a damaged ledger tail was appended onto, a state that could
not be saved crashed the tick, a hanging node stalled it forever, and ``--verify`` did
not cover the run file.
"""

from __future__ import annotations

import copy
import datetime as dt
import time
from typing import Any, List

import pytest

from kernel_helpers import finish, node

from abstractrt_cli import (
    Effect,
    InMemoryLedgerStore,
    InMemoryRunStore,
    RetryPolicy,
    RunStatus,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WorkflowSpec,
)
from abstractrt_cli.core.integrity import (
    init_signing_key,
    load_signing_key,
    state_digest,
    verify_run,
)
from abstractrt_cli.errors import (
    InvalidChoiceError,
    LedgerMismatchError,
    LimitsError,
    PromptMovedOnError,
    RunNotWaitingError,
    SignatureError,
)


def wf(workflow_id: str = "wf", **nodes) -> WorkflowSpec:
    return WorkflowSpec(workflow_id, "a", nodes)


def ask_then_work_wf() -> WorkflowSpec:
    """Ask, then an effect, then complete: a resume appends resume + effect + complete."""
    return wf(a=node("a", effect=Effect("ask_user", {"prompt": "pick", "choices": ["a", "b"],
                                                      "allow_free_text": False}, "ans"), next="b"),
              b=node("b", effect=Effect("work", {}, "w"), next="end"), end=finish())


class Work:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, run, effect):
        self.calls += 1
        return {"call": self.calls}


class SaveFails(InMemoryRunStore):
    """A run store whose saves fail after ``arm()``: a full disk, a read-only file, or a
    process killed between the ledger append and the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def save(self, run):
        if self.armed:
            raise OSError(28, "No space left on device")
        super().save(run)


_REGISTRY: Any = None


@pytest.fixture(autouse=True)
def _registry(registry):
    global _REGISTRY
    _REGISTRY = registry


def launch(rt, w) -> str:
    """Start a run of ``w`` (registered, as the loader would)."""
    if w.workflow_id not in _REGISTRY:
        _REGISTRY.register(w)
    return rt.start(workflow=w)


def snapshot(rt, rid) -> Any:
    return rt.get_state(rid).to_jsonable(), copy.deepcopy(rt.get_ledger(rid))


# ---------------------------------------------------------------------------- 1. roll forward


def test_resume_recorded_but_not_checkpointed_is_rolled_forward_not_answered_twice(make_runtime):
    store = SaveFails()
    work = Work()
    rt = make_runtime(run_store=store, effect_handlers={"work": work})
    w = ask_then_work_wf()
    rid = launch(rt, w)
    assert rt.tick(run_id=rid).status is RunStatus.WAITING
    store.arm()
    with pytest.raises(OSError):
        rt.resume(run_id=rid, payload={"response": "a"})
    store.armed = False
    # The run file still says waiting, but the ledger recorded the answer and the work.
    assert rt.get_state(rid).status is RunStatus.WAITING
    kinds = [r["kind"] for r in rt.get_ledger(rid)]
    assert kinds[-3:] == ["resume", "effect", "complete"]
    # A second, different answer is refused: the ledger shows the prompt answered.
    with pytest.raises(PromptMovedOnError, match="answered elsewhere"):
        rt.resume(run_id=rid, payload={"response": "b"})
    run = rt.get_state(rid)
    assert run.status is RunStatus.COMPLETED
    assert run.vars["ans"] == {"response": "a"} and run.vars["w"] == {"call": 1}
    assert work.calls == 1  # the recorded effect was reused, not run again
    recs = rt.get_ledger(rid)
    assert [r["kind"] for r in recs].count("resume") == 1
    assert [r["kind"] for r in recs].count("complete") == 1
    assert verify_run(run, recs)["ok"], verify_run(run, recs)


def test_tick_rolls_forward_a_resume_beyond_the_checkpoint(make_runtime):
    store = SaveFails()
    work = Work()
    rt = make_runtime(run_store=store, effect_handlers={"work": work})
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    store.arm()
    with pytest.raises(OSError):
        rt.resume(run_id=rid, payload={"response": "b"})
    store.armed = False
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED and run.vars["ans"] == {"response": "b"}
    assert work.calls == 1


@pytest.mark.parametrize("op", ["cancel", "limits"])
def test_cancel_and_limits_beyond_the_checkpoint_are_rolled_forward(make_runtime, op):
    store = SaveFails()
    rt = make_runtime(run_store=store)
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    store.arm()
    with pytest.raises(OSError):
        if op == "cancel":
            rt.cancel_run(rid, reason="stop")
        else:
            rt.update_limits(rid, {"max_iterations": 40})
    store.armed = False
    run = rt.tick(run_id=rid)
    if op == "cancel":
        assert run.status is RunStatus.CANCELLED and run.error == "stop"
        with pytest.raises(RunNotWaitingError):
            rt.resume(run_id=rid, payload={"response": "a"})
    else:
        assert run.vars["_limits"]["max_iterations"] == 40
    recs = rt.get_ledger(rid)
    assert verify_run(rt.get_state(rid), recs)["ok"]


def test_effects_between_checkpoints_are_never_run_twice_after_a_crash(make_runtime):
    """With checkpoints every 4 effects, a crash mid-tick loses no recorded effect."""
    calls: List[int] = []

    class Crash(BaseException):
        pass

    def work(run, effect):
        calls.append(effect.payload["i"])
        if len(calls) == 7 and not getattr(work, "crashed", False):
            work.crashed = True
            raise Crash()  # dies like kill -9 would: nothing after this runs
        return {"i": effect.payload["i"]}

    def step(run, ctx):
        i = run.vars.get("i", 0)
        if i >= 10:
            return StepPlan("a", complete_output={"done": i})
        run.vars["i"] = i + 1
        return StepPlan("a", effect=Effect("work", {"i": i}, f"r.{i}"), next_node="a")

    rt = make_runtime(effect_handlers={"work": work},
                      config=RuntimeConfig(effects_per_checkpoint=4))
    w = WorkflowSpec("wf", "a", {"a": step})
    rid = launch(rt, w)
    with pytest.raises(Crash):
        rt.tick(run_id=rid)
    assert rt.get_state(rid).effect_seq == 4  # checkpointed after 4 effects, not after 6
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED and run.output == {"done": 10}
    # 0-5 ran once each before the crash; 6 was in flight (no record) and ran again.
    assert calls == [0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9]
    assert run.vars["r"] == {str(i): {"i": i} for i in range(10)}
    assert verify_run(run, rt.get_ledger(rid))["ok"]


def test_checkpoints_are_fewer_than_effects(make_runtime):
    saves = []

    class Counting(InMemoryRunStore):
        def save(self, run):
            saves.append(run.effect_seq)
            super().save(run)

    def step(run, ctx):
        i = run.vars.get("i", 0)
        if i >= 64:
            return StepPlan("a", complete_output={})
        run.vars["i"] = i + 1
        return StepPlan("a", effect=Effect("work", {"i": i}, "r"), next_node="a")

    rt = make_runtime(run_store=Counting(), effect_handlers={"work": Work()},
                      config=RuntimeConfig(effects_per_checkpoint=16))
    rid = launch(rt, WorkflowSpec("wf", "a", {"a": step}))
    assert rt.tick(run_id=rid, max_steps=1000).status is RunStatus.COMPLETED
    assert len(saves) <= 1 + 64 // 16 + 1  # start, every 16 effects, the end


# ---------------------------------------------------------------------------- 2. laundering


@pytest.mark.parametrize("damage", ["drop_last", "drop_all", "rewrite_last"])
def test_a_damaged_ledger_tail_is_refused_before_any_append(make_runtime, damage):
    ledger = InMemoryLedgerStore()
    rt = make_runtime(ledger_store=ledger)
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    recs = ledger._records[rid]
    if damage == "drop_last":
        recs.pop()
    elif damage == "drop_all":
        recs.clear()
    else:
        recs[-1] = dict(recs[-1], record_hash="0" * 64)
    before = snapshot(rt, rid)
    for attempt in (lambda: rt.resume(run_id=rid, payload={"response": "a"}),
                    lambda: rt.tick(run_id=rid),
                    lambda: rt.cancel_run(rid),
                    lambda: rt.update_limits(rid, {"max_iterations": 30})):
        with pytest.raises(LedgerMismatchError, match="does not match its checkpoint"):
            attempt()
        assert snapshot(rt, rid) == before


# ---------------------------------------------------------------------------- 4. bad runs


def test_a_state_that_cannot_be_saved_fails_the_run_with_the_reason(make_runtime):
    def bad(run, ctx):
        run.vars["when"] = dt.datetime(2026, 1, 1)
        return StepPlan("a", effect=Effect("ask_user", {"prompt": "?"}, "x"), next_node="end")

    rt = make_runtime()
    rid = launch(rt, WorkflowSpec("wf", "a", {"a": bad, "end": finish()}))
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.FAILED
    assert "cannot be saved" in run.error and "datetime" in run.error and rid in run.error
    stored = rt.get_state(rid)
    assert stored.status is RunStatus.FAILED and "when" not in stored.vars
    assert verify_run(stored, rt.get_ledger(rid))["ok"]


def test_a_hanging_node_is_stopped_by_the_step_time_limit(make_runtime):
    def hang(run, ctx):
        while True:
            pass

    rt = make_runtime(config=RuntimeConfig(step_timeout=0.3))
    rid = launch(rt, WorkflowSpec("wf", "a", {"a": hang}))
    t0 = time.monotonic()
    run = rt.tick(run_id=rid)
    assert time.monotonic() - t0 < 5
    assert run.status is RunStatus.FAILED
    assert "step time limit" in run.error and rid in run.error and "'a'" in run.error


def test_a_hanging_effect_handler_fails_its_attempt_and_is_retried(make_runtime):
    calls = []

    def slow(run, effect):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(30)
        return {"ok": True}

    rt = make_runtime(effect_handlers={"slow": slow}, config=RuntimeConfig(step_timeout=0.3),
                      effect_policy=RetryPolicy(max_attempts=2, backoff_base=0))
    rid = launch(rt, wf(a=node("a", effect=Effect("slow", {}, "r"), next="end"),
                               end=finish()))
    t0 = time.monotonic()
    run = rt.tick(run_id=rid)
    assert time.monotonic() - t0 < 10
    assert run.status is RunStatus.COMPLETED and len(calls) == 2
    failed = [r for r in rt.get_ledger(rid) if r["kind"] == "effect" and r["status"] == "failed"]
    assert len(failed) == 1 and "step time limit" in failed[0]["error"]


def test_a_workflow_can_set_its_own_step_time_limit(make_runtime, registry):
    def hang(run, ctx):
        time.sleep(30)

    w = WorkflowSpec("wf", "a", {"a": hang})
    registry.register(w, step_timeout=0.2)
    rt = make_runtime()
    rid = rt.start(workflow=w)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.FAILED and "0.2 s" in run.error


# ---------------------------------------------------------------------------- 7. tamper evidence


def completed_run(rt) -> str:
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    rt.resume(run_id=rid, payload={"response": "a"})
    return rid


def test_verify_proves_the_run_file_and_flags_records_after_the_end(make_runtime):
    rt = make_runtime(effect_handlers={"work": Work()})
    rid = completed_run(rt)
    run, recs = rt.get_state(rid), rt.get_ledger(rid)
    report = verify_run(run, recs)
    assert report["ok"] and report["state"] == "proved" and report["signature"] == "unsigned"

    edited = copy.deepcopy(run)
    edited.output = {"forged": True}
    assert not verify_run(edited, recs)["ok"]
    edited = copy.deepcopy(run)
    edited.vars["ans"] = {"response": "b"}
    report = verify_run(edited, recs)
    assert not report["ok"] and "edited" in report["message"]

    # A well-chained record appended after the final checkpoint.
    from abstractrt_cli.storage.chain import chain_record

    forged = chain_record(dict(recs[-1], kind="resume", step_id="x"), seq=len(recs),
                          prev_hash=recs[-1]["record_hash"])
    report = verify_run(run, recs + [forged])
    assert not report["ok"] and "after the final checkpoint" in report["message"]


def test_verify_reports_pending_records_on_a_live_run(make_runtime):
    store = SaveFails()
    rt = make_runtime(run_store=store, effect_handlers={"work": Work()})
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    store.arm()
    with pytest.raises(OSError):
        rt.resume(run_id=rid, payload={"response": "a"})
    report = verify_run(rt.get_state(rid), rt.get_ledger(rid))
    assert report["ok"] and report["beyond"] == 3 and "pending" in report["pending"]


def test_signed_checkpoints_detect_a_rewrite_of_chain_and_run_file(make_runtime):
    key = b"k" * 40
    rt = make_runtime(effect_handlers={"work": Work()}, config=RuntimeConfig(signing_key=key))
    rid = completed_run(rt)
    run, recs = rt.get_state(rid), rt.get_ledger(rid)
    assert verify_run(run, recs, key=key)["signature"] == "valid"
    assert verify_run(run, recs, key=b"other" * 10)["signature"] == "invalid"

    # Rewrite: change the answer in vars and output, recompute every hash and digest and
    # the run file's count and head — what a keyless chain cannot notice.
    from abstractrt_cli.storage.chain import chain_record

    forged_run = copy.deepcopy(run)
    forged_run.vars["ans"] = {"response": "b"}
    forged_run.output = dict(run.output, ans={"response": "b"})
    out, prev = [], None
    for i, r in enumerate(recs):
        r = {k: v for k, v in r.items() if k not in ("record_hash", "prev_hash", "seq")}
        if i == len(recs) - 1:
            r["state_digest"] = state_digest(forged_run)
        out.append(chain_record(r, seq=i, prev_hash=prev))
        prev = out[-1]["record_hash"]
    forged_run.ledger_head = prev
    assert verify_run(forged_run, out)["ok"]  # without the key: undetectable, as expected
    report = verify_run(forged_run, out, key=key)
    assert not report["ok"] and report["signature"] == "invalid"


def test_signing_key_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ABSTRACTRT_SIGNING_KEY", raising=False)
    path = tmp_path / "cfg" / "signing.key"
    assert load_signing_key(path) is None
    init_signing_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert len(load_signing_key(path)) == 64
    with pytest.raises(SignatureError, match="exists already"):
        init_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(SignatureError, match="mode 600"):
        load_signing_key(path)
    monkeypatch.setenv("ABSTRACTRT_SIGNING_KEY", "short")
    with pytest.raises(SignatureError, match="too short"):
        load_signing_key(path)


# ---------------------------------------------------------------------------- limits, waits


def test_limits_refuse_nonsense_and_ended_runs(make_runtime):
    rt = make_runtime(effect_handlers={"work": Work()})
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    rt.update_limits(rid, {"current_iteration": 5})
    for bad, match in (({"max_iterations": -3}, "negative"), ({"max_iterations": 5}, "above"),
                       ({"max_tokens": 0}, "above"), ({"warn_tokens_pct": 500}, "percentage")):
        with pytest.raises(LimitsError, match=match):
            rt.update_limits(rid, bad)
    rt.resume(run_id=rid, payload={"response": "a"})
    with pytest.raises(LimitsError, match="ended"):
        rt.update_limits(rid, {"max_iterations": 99})


def test_limits_change_keeps_the_time_the_wait_began(make_runtime, clock):
    rt = make_runtime()
    rid = launch(rt, ask_then_work_wf())
    since = rt.tick(run_id=rid).waiting.since
    assert since == clock().isoformat()
    clock.advance(3600)
    run = rt.update_limits(rid, {"max_iterations": 30})
    assert run.waiting.since == since and run.updated_at != since


def test_runnable_says_why_each_run_can_move(make_runtime, clock):
    rt = make_runtime()
    timer = wf("timer", a=node("a", effect=Effect("wait_until", {"until": "2026-01-01T01:00:00+00:00"},
                                         "t"), next="end"), end=finish())
    running = launch(rt, ask_then_work_wf())
    due = launch(rt, timer)
    rt.tick(run_id=due)
    waiting = launch(rt, ask_then_work_wf())
    rt.tick(run_id=waiting)
    assert {(r.run_id, r.reason) for r in rt.runnable()} == {(running, "running")}
    clock.advance(7200)
    got = {(r.run_id, r.reason) for r in rt.runnable()}
    assert got == {(running, "running"), (due, "timer due")}
    assert rt.get_state(waiting).waiting.reason is WaitReason.USER


def test_choice_refusal_without_response_names_the_choices(make_runtime):
    rt = make_runtime()
    rid = launch(rt, ask_then_work_wf())
    rt.tick(run_id=rid)
    with pytest.raises(InvalidChoiceError) as err:
        rt.resume(run_id=rid, payload={})
    assert "None" not in str(err.value) and "'a', 'b'" in str(err.value)


def test_state_digest_ignores_only_checkpoint_fields(make_runtime):
    rt = make_runtime()
    rid = launch(rt, ask_then_work_wf())
    run = rt.get_state(rid)
    d = state_digest(run)
    run.updated_at, run.ledger_count, run.ledger_head = "x", 99, "y"
    assert state_digest(run) == d
    run.vars["k"] = 1
    assert state_digest(run) != d




# ---------------------------------------------------------------------------- batching, file store


def file_runtime(tmp_path, registry, **kw):
    from abstractrt_cli import Runtime
    from abstractrt_cli.storage import open_stores

    stores = open_stores(None, tmp_path / "data", create=True)
    return Runtime(run_store=stores.runs, ledger_store=stores.ledger, workflow_registry=registry, **kw)


def test_a_resume_is_on_disk_before_the_effect_it_leads_to_runs(tmp_path, registry):
    seen = []

    def work(run, effect):
        seen.append([r["kind"] for r in rt.get_ledger(run.run_id)])
        return {"ok": True}

    w = ask_then_work_wf()
    registry.register(w)
    rt = file_runtime(tmp_path, registry, effect_handlers={"work": work})
    rid = rt.start(workflow=w)
    rt.tick(run_id=rid)
    rt.resume(run_id=rid, payload={"response": "a"})
    assert seen == [["start", "effect", "resume"]]


def test_start_and_tick_writes_the_run_once_and_before_any_outside_effect(tmp_path, registry):
    saves = []
    w = ask_then_work_wf()
    registry.register(w)
    rt = file_runtime(tmp_path, registry, effect_handlers={"work": Work()})
    real = rt.run_store.save
    rt.run_store.save = lambda run: (saves.append(run.status.value), real(run))[1]
    run = rt.start_and_tick(workflow=w)
    assert run.status is RunStatus.WAITING and saves == ["waiting"]
    assert [r["kind"] for r in rt.get_ledger(run.run_id)] == ["start", "effect"]
    assert verify_run(rt.get_state(run.run_id), rt.get_ledger(run.run_id))["ok"]

    seen = []
    effect_first = WorkflowSpec("eff", "b", {
        "b": node("b", effect=Effect("probe", {}, "p"), next="end"), "end": finish()})
    registry.register(effect_first)
    rt.register_effect_handler("probe", lambda run, eff: seen.append(rt.run_store.load(run.run_id)) or {})
    run = rt.start_and_tick(workflow=effect_first)
    assert run.status is RunStatus.COMPLETED and seen[0] is not None  # saved before it ran


def test_batched_records_say_what_was_true_when_they_were_made(tmp_path, registry):
    """A start record and a resume record wait for the next write; nodes that change the
    vars meanwhile must not change what those records say (their hashes would break)."""
    def grow(run, ctx):
        run.vars.setdefault("log", []).append("x")
        run.vars["ans"]["seen"] = True  # the resume's payload dict itself
        return StepPlan("grow", effect=Effect("ask_user", {"prompt": "again?"}, "ans"), next_node="grow")

    w = WorkflowSpec("grow", "ask", {
        "ask": node("ask", effect=Effect("ask_user", {"prompt": "go?"}, "ans"), next="grow"),
        "grow": grow})
    registry.register(w)
    rt = file_runtime(tmp_path, registry)
    run = rt.start_and_tick(workflow=w, vars={"log": []})
    run = rt.resume(run_id=run.run_id, payload={"response": "y"})
    recs = rt.get_ledger(run.run_id)
    assert recs[0]["result"]["vars"]["log"] == []
    assert [r for r in recs if r["kind"] == "resume"][0]["result"]["payload"] == {"response": "y"}
    assert verify_run(rt.get_state(run.run_id), recs)["ok"]
