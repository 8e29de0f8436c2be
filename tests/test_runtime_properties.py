"""Property tests: random linear workflows (with an optional loop), driven to the end.

Whatever the mix of pure nodes, effect nodes (a custom handler), waits (ask_user,
wait_event, wait_until) and flaky effects (one failure, retried after a backoff too long
to sleep), however small ``max_steps`` is, and wherever the process "dies" while
checkpointing: answering every wait (and letting the clock run) drives the run to
``completed``, each effect runs exactly once per visit (a flaky one: twice), and the
ledger verifies.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import List, Optional, Set, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abstractrt_cli import (
    Effect,
    InMemoryLedgerStore,
    InMemoryRunStore,
    RunStatus,
    RetryPolicy,
    Runtime,
    RuntimeConfig,
    StepPlan,
    WaitReason,
    WorkflowSpec,
    verify_ledger_chain,
)

KINDS = ("pure", "effect", "ask", "event", "timer", "flaky")


class SimulatedCrash(Exception):
    pass


class CrashingRunStore(InMemoryRunStore):
    """Dies on the save calls whose (0-based) numbers are in ``crash_at``, once armed."""

    def __init__(self, crash_at: Set[int]) -> None:
        super().__init__()
        self.crash_at = crash_at
        self.armed = False
        self.saves = 0

    def save(self, run) -> None:
        if self.armed:
            n = self.saves
            self.saves += 1
            if n in self.crash_at:
                raise SimulatedCrash(n)
        super().save(run)


@st.composite
def scenarios(draw):
    kinds: List[str] = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=8))
    loop: Optional[Tuple[int, int]] = draw(st.none() | st.tuples(
        st.integers(0, len(kinds) - 1), st.integers(1, 3)))  # (back to node, extra rounds)
    max_steps = draw(st.sampled_from([1, 2, 3, 5, 100]))
    crash_at = draw(st.sets(st.integers(0, 60), max_size=5))
    return kinds, loop, max_steps, crash_at


def _node(i: int, kind: str, nxt: str):
    def handler(run, ctx):
        if kind == "pure":
            eff = None
        elif kind == "effect":
            eff = Effect("work", {"node": i}, f"r{i}")  # the same payload on every visit
        elif kind == "flaky":
            eff = Effect("flaky", {"node": i}, f"f{i}")
        elif kind == "ask":
            eff = Effect("ask_user", {"prompt": f"q{i}"}, f"a{i}")
        elif kind == "event":
            eff = Effect("wait_event", {"wait_key": f"evt{i}"}, f"e{i}")
        else:
            until = ctx.now() + timedelta(minutes=1)
            eff = Effect("wait_until", {"until": until.isoformat()}, f"t{i}")
        return StepPlan(f"n{i}", effect=eff, next_node=nxt)

    return handler


def build(kinds: List[str], loop: Optional[Tuple[int, int]]) -> WorkflowSpec:
    after_last = "loop" if loop else "end"
    nodes = {}
    for i, kind in enumerate(kinds):
        nxt = f"n{i + 1}" if i + 1 < len(kinds) else after_last
        nodes[f"n{i}"] = _node(i, kind, nxt)

    if loop:
        back, extra = loop

        def loop_node(run, ctx):
            run.vars["rounds"] = run.vars.get("rounds", 0) + 1
            again = run.vars["rounds"] <= extra
            return StepPlan("loop", next_node=f"n{back}" if again else "end")

        nodes["loop"] = loop_node
    nodes["end"] = lambda run, ctx: StepPlan("end", complete_output={"ok": True})
    return WorkflowSpec("random", "n0", nodes)


def expected_visits(kinds: List[str], loop: Optional[Tuple[int, int]]) -> List[int]:
    back, extra = loop if loop else (len(kinds), 0)
    return [1 + (extra if i >= back else 0) for i in range(len(kinds))]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_workflows_complete_with_each_effect_once_per_visit(scenario):
    kinds, loop, max_steps, crash_at = scenario
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]
    calls: List[int] = []
    flaky_calls: List[int] = []
    failed_once: Set[Tuple[int, int]] = set()

    def work(run, effect, default_next_node):
        calls.append(effect.payload["node"])
        return {"call": len(calls)}

    def flaky(run, effect):
        flaky_calls.append(effect.payload["node"])
        visit = (effect.payload["node"], run.effect_seq)
        if visit not in failed_once:  # the first attempt of every visit fails
            failed_once.add(visit)
            raise RuntimeError("transient")
        return {"ok": True}

    store, ledger = CrashingRunStore(crash_at), InMemoryLedgerStore()
    rt = Runtime(run_store=store, ledger_store=ledger,
                 effect_handlers={"work": work, "flaky": flaky}, clock=lambda: now[0],
                 effect_policy=RetryPolicy(effect_max_attempts={"flaky": 2}, backoff_base=30),
                 config=RuntimeConfig(max_inline_backoff=1))
    workflow = build(kinds, loop)
    rid = rt.start(workflow=workflow)
    store.armed = True

    crashes = waits = 0
    run = rt.get_state(rid)
    for _ in range(1000):
        try:
            run = rt.tick(run_id=rid, workflow=workflow, max_steps=max_steps)
            if run.status is RunStatus.WAITING and run.waiting.reason is WaitReason.UNTIL:
                now[0] = max(now[0], datetime.fromisoformat(run.waiting.until))
            elif run.status is RunStatus.WAITING:
                run = rt.resume(run_id=rid, workflow=workflow, payload={"response": "ok"},
                                wait_key=run.waiting.wait_key, max_steps=max_steps)
                waits += 1
        except SimulatedCrash:
            crashes += 1
            continue
        if run.status.is_terminal:
            break
    assert run.status is RunStatus.COMPLETED, run.error

    visits = expected_visits(kinds, loop)
    want = Counter({i: v for i, (k, v) in enumerate(zip(kinds, visits)) if k == "effect"})
    assert Counter(calls) == want
    want = Counter({i: 2 * v for i, (k, v) in enumerate(zip(kinds, visits)) if k == "flaky"})
    assert Counter(flaky_calls) == want

    recs = ledger.list(rid)
    final = rt.get_state(rid)
    report = verify_ledger_chain(recs, expected_count=final.ledger_count,
                                 expected_head=final.ledger_head)
    assert report["ok"], report
    records_per_visit = {"pure": 0, "flaky": 2}  # a flaky visit: a failed and a good attempt
    effect_records = sum(v * records_per_visit.get(k, 1) for k, v in zip(kinds, visits))
    assert sum(r["kind"] == "effect" for r in recs) == effect_records
    wait_visits = sum(v for k, v in zip(kinds, visits) if k in ("ask", "event"))
    timer_visits = sum(v for k, v in zip(kinds, visits) if k == "timer")
    retry_visits = sum(v for k, v in zip(kinds, visits) if k == "flaky")
    resumes = [r for r in recs if r["kind"] == "resume"]
    answered = [r for r in resumes if r["result"]["payload"] == {"response": "ok"}]
    # Each wait was answered and each timer (a retry's too) ran out; a crash may add
    # resumes (when the checkpoint after one was lost), never skip one.
    assert len(answered) >= wait_visits
    assert len(resumes) - len(answered) >= timer_visits + retry_visits
    if not crashes:
        assert len(answered) == waits == wait_visits
        assert len(resumes) - len(answered) == timer_visits + retry_visits
        for rec, after in zip(recs, recs[1:]):  # every recorded wait is followed by its end
            if rec["kind"] == "effect" and rec["status"] == "waiting":
                assert after["kind"] == "resume"
    assert [r["kind"] for r in recs][-1] == "complete"


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.data())
def test_any_single_edit_deletion_or_truncation_is_detected(n, data):
    calls: List[int] = []

    def work(run, effect):
        calls.append(1)
        return {"call": len(calls)}

    nodes = {f"n{i}": (lambda i: lambda run, ctx: StepPlan(
        f"n{i}", effect=Effect("work", {"i": i}, f"r{i}"), next_node=f"n{i + 1}"))(i)
        for i in range(n)}
    nodes[f"n{n}"] = lambda run, ctx: StepPlan(f"n{n}", complete_output={})
    workflow = WorkflowSpec("w", "n0", nodes)
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore(),
                 effect_handlers={"work": work})
    rid = rt.start(workflow=workflow)
    run = rt.tick(run_id=rid, workflow=workflow)
    recs = rt.get_ledger(rid)
    assert len(recs) == n + 2  # start, n effects, complete
    check = dict(expected_count=run.ledger_count, expected_head=run.ledger_head)
    assert verify_ledger_chain(recs, **check)["ok"]

    index = data.draw(st.integers(0, len(recs) - 1))
    how = data.draw(st.sampled_from(["edit", "delete", "truncate"]))
    if how == "edit":
        field = data.draw(st.sampled_from(["result", "node_id", "status", "error", "attempt"]))
        recs[index][field] = {"forged": True}
        bad_index = index
    elif how == "delete":
        del recs[index]
        bad_index = index
    else:
        recs = recs[:index]
        bad_index = index
    report = verify_ledger_chain(recs, **check)
    assert not report["ok"]
    assert report["first_bad_index"] == bad_index
