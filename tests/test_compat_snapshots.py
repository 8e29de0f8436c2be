"""AbstractRuntime's snapshot stores: named copies of a run's state, tied to its ledger."""

from __future__ import annotations

import os
import stat

import pytest

from abstractrt_cli.compat.abstractruntime import (
    Effect,
    EffectType,
    InMemoryLedgerStore,
    InMemoryRunStore,
    InMemorySnapshotStore,
    JsonSnapshotStore,
    RunStatus,
    Runtime,
    Snapshot,
    StepPlan,
    WorkflowSpec,
)
from abstractrt_cli.compat.abstractruntime._errors import CorruptSnapshotError


@pytest.fixture(params=["memory", "files"])
def store(request, tmp_path):
    return InMemorySnapshotStore() if request.param == "memory" else JsonSnapshotStore(tmp_path / "snaps")


def waiting_run():
    rt = Runtime(run_store=InMemoryRunStore(), ledger_store=InMemoryLedgerStore())

    def ask(run, ctx):
        run.vars["seen"] = True
        return StepPlan("ask", effect=Effect(EffectType.ASK_USER, {"prompt": "ok?"}, "a"), next_node="end")

    wf = WorkflowSpec("snap", "ask", {"ask": ask, "end": lambda r, c: StepPlan("end", complete_output={})})
    run_id = rt.start(workflow=wf, vars={"x": 1})
    return rt, rt.tick(workflow=wf, run_id=run_id)


def test_a_snapshot_keeps_the_state_and_which_history_it_belongs_to(store):
    rt, run = waiting_run()
    snap = Snapshot.from_run(run=run, name="before answer", description="prod case", tags=["Prod"])
    store.save(snap)
    loaded = store.load(snap.snapshot_id)
    assert loaded.run_state["vars"]["x"] == 1
    assert loaded.run_state["ledger_count"] == len(rt.get_ledger(run.run_id))
    assert loaded.run_state["ledger_head"] == rt.get_ledger(run.run_id)[-1]["record_hash"]
    back = loaded.run()
    assert back.status == RunStatus.WAITING and back.waiting.prompt == "ok?"
    run.vars["x"] = 2  # the snapshot is a copy, not a view
    assert store.load(snap.snapshot_id).run_state["vars"]["x"] == 1


def test_listing_filters_by_run_tag_and_text_newest_first(store):
    _, run = waiting_run()
    first = Snapshot.from_run(run=run, name="invoice:1", description="first", tags=["prod", "invoice"])
    first.created_at = "2025-01-01T00:00:00+00:00"
    second = Snapshot.from_run(run=run, name="notes", description="misc", tags=["dev"])
    second.created_at = "2025-01-02T00:00:00+00:00"
    store.save(first)
    store.save(second)
    assert [s.snapshot_id for s in store.list()] == [second.snapshot_id, first.snapshot_id]
    assert [s.snapshot_id for s in store.list(tag="INVOICE")] == [first.snapshot_id]
    assert [s.snapshot_id for s in store.list(query="MISC")] == [second.snapshot_id]
    assert store.list(run_id="other") == [] and len(store.list(limit=1)) == 1
    assert store.delete(first.snapshot_id) and not store.delete(first.snapshot_id)
    assert store.load(first.snapshot_id) is None


def test_snapshot_ids_cannot_name_another_path(store):
    _, run = waiting_run()
    snap = Snapshot.from_run(run=run, name="n")
    snap.snapshot_id = "../escape"
    with pytest.raises(ValueError, match="Invalid snapshot_id"):
        store.save(snap)


def test_the_file_store_writes_private_files_and_refuses_unreadable_ones(tmp_path):
    store = JsonSnapshotStore(tmp_path / "snaps")
    _, run = waiting_run()
    snap = Snapshot.from_run(run=run, name="n")
    store.save(snap)
    assert os.listdir(tmp_path / "snaps") == [f"snapshot_{snap.snapshot_id}.json"]
    assert stat.S_IMODE((tmp_path / "snaps" / f"snapshot_{snap.snapshot_id}.json").stat().st_mode) == 0o600
    assert JsonSnapshotStore(tmp_path / "snaps").load(snap.snapshot_id).name == "n"
    (tmp_path / "snaps" / "snapshot_broken.json").write_text("[]")
    with pytest.raises(CorruptSnapshotError, match="snapshot_broken.json"):
        store.list()
    problems = []
    assert [s.snapshot_id for s in store.list(on_corrupt=problems.append)] == [snap.snapshot_id]
    assert len(problems) == 1
