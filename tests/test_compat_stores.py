"""AbstractRuntime's store names and query signatures over our memory and file stores."""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone

import pytest

from abstractrt_cli.compat.abstractruntime import (
    Effect,
    EffectType,
    InMemoryLedgerStore,
    InMemoryRunStore,
    JsonFileRunStore,
    JsonlLedgerStore,
    QueryableRunStore,
    RunState,
    RunStatus,
    Runtime,
    StepPlan,
    WaitReason,
    WaitState,
    WorkflowRegistry,
    WorkflowSpec,
)
from abstractrt_cli.compat.abstractruntime.storage.base import LedgerStore, RunStore
from abstractrt_cli.storage import files, memory


@pytest.fixture(params=["memory", "files"])
def store(request, tmp_path):
    return InMemoryRunStore() if request.param == "memory" else JsonFileRunStore(tmp_path)


def a_run(*, created: str, updated: str, status=RunStatus.RUNNING, wait=None) -> RunState:
    run = RunState.new(workflow_id="wf", entry_node="a")
    run.created_at, run.updated_at, run.status, run.waiting = created, updated, status, wait
    return run


def test_they_are_our_stores_and_abstractruntimes_interfaces(tmp_path):
    assert isinstance(InMemoryRunStore(), memory.InMemoryRunStore)
    assert isinstance(InMemoryLedgerStore(), memory.InMemoryLedgerStore)
    assert isinstance(JsonFileRunStore(tmp_path), files.FileRunStore)
    assert isinstance(JsonlLedgerStore(tmp_path), files.FileLedgerStore)
    for s in (InMemoryRunStore(), JsonFileRunStore(tmp_path)):
        assert isinstance(s, RunStore) and isinstance(s, QueryableRunStore)
    assert isinstance(InMemoryLedgerStore(), LedgerStore)


def test_list_runs_is_newest_updated_first_then_limited(store):
    # created in one order, updated in another: the update time decides
    old_but_fresh = a_run(created="2025-01-01T00:00:00Z", updated="2025-03-01T00:00:00Z")
    new_but_stale = a_run(created="2025-02-01T00:00:00Z", updated="2025-02-02T00:00:00Z")
    # +02:00 is earlier than the string order suggests: compared as instants
    middle = a_run(created="2025-01-15T00:00:00Z", updated="2025-02-20T01:00:00+02:00")
    for run in (new_but_stale, old_but_fresh, middle):
        store.save(run)
    assert [r.run_id for r in store.list_runs()] == [
        old_but_fresh.run_id, middle.run_id, new_but_stale.run_id]
    assert [r.run_id for r in store.list_runs(limit=1)] == [old_but_fresh.run_id]
    assert store.list_runs(limit=0) == []


def test_list_runs_filters_as_abstractruntime_and_keeps_our_filters(store):
    waiting = a_run(created="2025-01-01T00:00:00Z", updated="2025-01-01T00:00:00Z",
                    status=RunStatus.WAITING, wait=WaitState(reason=WaitReason.USER, wait_key="k"))
    store.save(waiting)
    store.save(a_run(created="2025-01-02T00:00:00Z", updated="2025-01-02T00:00:00Z"))
    assert [r.run_id for r in store.list_runs(status=RunStatus.WAITING, wait_reason=WaitReason.USER,
                                              workflow_id="wf")] == [waiting.run_id]
    assert [r.run_id for r in store.list_runs(wait_key="k")] == [waiting.run_id]


def test_list_due_wait_until_takes_now_iso_and_answers_for_timers_only(store):
    def waiting(reason, until):
        return a_run(created="2025-01-01T00:00:00Z", updated="2025-01-01T00:00:00Z",
                     status=RunStatus.WAITING, wait=WaitState(reason=reason, until=until))

    later = waiting(WaitReason.UNTIL, "2025-01-03T00:00:00Z")
    sooner = waiting(WaitReason.UNTIL, "2025-01-02T00:00:00+00:00")
    future = waiting(WaitReason.UNTIL, "2099-01-01T00:00:00Z")
    # 23:30 at -01:00 is 00:30 UTC, after "now" below, though its string sorts before it
    not_yet = waiting(WaitReason.UNTIL, "2025-01-04T23:30:00-01:00")
    for run in (later, sooner, future, not_yet):
        store.save(run)
    now = "2025-01-05T00:00:00+00:00"
    assert [r.run_id for r in store.list_due_wait_until(now_iso=now)] == [sooner.run_id, later.run_id]
    assert [r.run_id for r in store.list_due_wait_until(now_iso=now, limit=1)] == [sooner.run_id]
    # the kernel's own call keeps working on the same store
    kernel = store.list_due_wait_until(now=datetime(2025, 1, 5, tzinfo=timezone.utc))
    assert {r.run_id for r in kernel} == {sooner.run_id, later.run_id}
    with pytest.raises(TypeError):
        store.list_due_wait_until()


def test_the_file_stores_on_one_directory_survive_a_new_process_view(tmp_path):
    registry = WorkflowRegistry()
    def ask(run, ctx):
        return StepPlan("ask", effect=Effect(EffectType.ASK_USER, {"prompt": "?"}, "a"), next_node="end")

    wf = WorkflowSpec("q", "ask", {"ask": ask, "end": lambda r, c: StepPlan("end", complete_output=r.vars["a"])})
    registry.register(wf)
    rt = Runtime(run_store=JsonFileRunStore(tmp_path), ledger_store=JsonlLedgerStore(tmp_path),
                 workflow_registry=registry)
    run_id = rt.start(workflow=wf)
    wait_key = rt.tick(workflow=wf, run_id=run_id).waiting.wait_key

    again = Runtime(run_store=JsonFileRunStore(tmp_path), ledger_store=JsonlLedgerStore(tmp_path),
                    workflow_registry=registry)
    assert again.resume(run_id=run_id, wait_key=wait_key, payload={"x": 1}).output == {"x": 1}
    assert [r["seq"] for r in JsonlLedgerStore(tmp_path).list(run_id)] == list(range(len(again.get_ledger(run_id))))


def test_registry_refuses_duplicates_and_names_unknown_ids():
    registry = WorkflowRegistry()
    wf = WorkflowSpec("w", "a", {})
    registry.register(wf)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(WorkflowSpec("w", "b", {}))
    assert registry.get("w") is wf
    assert registry.list_ids() == ["w"] and len(registry) == 1
    assert registry.get_or_raise("w") is wf
    with pytest.raises(KeyError, match="not registered"):
        registry.get_or_raise("nope")
    registry.unregister("w")
    assert "w" not in registry
    with pytest.raises(KeyError, match="not registered"):
        registry.unregister("w")


def test_the_in_memory_store_answers_queries_while_another_thread_saves():
    # AbstractRuntime's scheduler polls from a thread by default: its queries meet saves.
    store = InMemoryRunStore()
    done = threading.Event()
    problems = []

    def save_many():
        for _ in range(400):
            store.save(RunState.new(workflow_id="wf", entry_node="a"))
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so a save lands mid-query
    try:
        writer = threading.Thread(target=save_many)
        writer.start()
        while not done.is_set():
            try:
                store.list_runs(status=RunStatus.RUNNING)
                store.list_due_wait_until(now_iso="2030-01-01T00:00:00Z")
            except RuntimeError as exc:
                problems.append(exc)
                break
        writer.join()
    finally:
        sys.setswitchinterval(old)
    assert problems == []
    assert len(store.list_runs()) == 400
