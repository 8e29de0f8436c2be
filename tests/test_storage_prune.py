"""Prune (storage/prune.py) over real runs on the memory and the file store: which runs
go, what goes with them, what stays, and the record each leaves."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict

import pytest
from test_storage_bundle import BLOB, runtime

from abstractrt_cli.core.models import RunStatus
from abstractrt_cli.errors import UsageError
from abstractrt_cli.storage import memory_stores, open_file_bundle
from abstractrt_cli.storage.base import Stores
from abstractrt_cli.storage.prune import apply_prune, plan_prune, prune


@pytest.fixture(params=["memory", "files"])
def stores(request: Any, tmp_path: Path) -> Any:
    s = memory_stores() if request.param == "memory" else open_file_bundle(tmp_path / "data")
    yield s
    s.close()


def ask(rt: Any, rid: str) -> Any:
    rt.start(workflow=rt.workflow_registry.get("ask"), run_id=rid)
    return rt.tick(run_id=rid)


def population(stores: Stores, clock: Any) -> Dict[str, Any]:
    """Runs ended long ago and just now, waiting and running ones, a parent waiting on a
    child, and artifacts shared in every way prune must respect."""
    rt = runtime(stores, clock)
    out: Dict[str, Any] = {}
    # Ended a day ago.
    ask(rt, "old-done")
    only_old = stores.artifacts.put_artifact(b"only the old run's", run_id="old-done")
    shared = stores.artifacts.put_artifact(BLOB, run_id="old-done")
    rt.resume(run_id="old-done", payload={"response": "yes", "doc": {"$artifact": only_old["ref"]}})
    stores.snapshots.put_snapshot({"run_id": "old-done", "name": "s", "tags": [], "state":
                                   stores.runs.load("old-done").to_jsonable(), "ledger_count": 1,
                                   "ledger_head": None, "created_at": clock.now.isoformat()})
    stores.logs.append_log("old-done", [{"at": clock.now.isoformat(), "node_id": "a",
                                         "effect_seq": 0, "stream": "stdout", "text": "hi\n"}])
    ask(rt, "old-cancelled")
    rt.cancel_run("old-cancelled")
    # The old run mentions an artifact a kept run stored: it stays.
    ask(rt, "old-failed")
    ask(rt, "keeper")
    kept_art = stores.artifacts.put_artifact(b"the keeper's", run_id="keeper")
    rt.resume(run_id="old-failed", payload={"response": "x", "see": kept_art["ref"]})
    failed = stores.runs.load("old-failed")
    failed.status, failed.error = RunStatus.FAILED, "failed on purpose"
    with stores.runs.lock("old-failed", timeout=5):
        stores.runs.save(failed)
    # The keeper stored the shared blob too, and is still waiting.
    stores.artifacts.put_artifact(BLOB, run_id="keeper")
    # A parent waiting on its child (both live: neither is pruned).
    rt.start(workflow=rt.workflow_registry.get("parent"), run_id="parent")
    rt.tick(run_id="parent")
    (child,) = stores.runs.list_children(parent_run_id="parent")
    out["child"] = child.run_id
    clock.advance(86400)
    # Ended just now.
    ask(rt, "new-done")
    rt.resume(run_id="new-done", payload={"response": "yes"})
    running = rt.start(workflow=rt.workflow_registry.get("ask"), run_id="running")
    out.update(only_old=only_old["ref"], shared=shared["ref"], kept_art=kept_art["ref"],
               running=running)
    return out


def test_prune_old_ended_runs_and_what_goes_with_them(stores: Stores, clock: Any) -> None:
    p = population(stores, clock)
    now = clock.now
    heads = {rid: stores.ledger.head(rid) for rid in ("old-done", "old-cancelled", "old-failed")}
    plan = prune(stores, older_than=timedelta(hours=1), now=now, dry_run=True)
    assert sorted(r["run_id"] for r in plan["runs"]) == ["old-cancelled", "old-done", "old-failed"]
    assert plan["artifacts"] == [p["only_old"]] and plan["dry_run"]
    assert stores.runs.load("old-done") is not None  # a dry run changes nothing
    assert stores.audit.list_prune_records() == []

    done = prune(stores, older_than=timedelta(hours=1), now=now, actor_id="alice")
    records = {r["run_id"]: r for r in done["pruned"]}
    assert sorted(records) == ["old-cancelled", "old-done", "old-failed"]
    for rid, (count, head) in heads.items():
        rec = records[rid]
        assert (rec["ledger_count"], rec["ledger_head"]) == (count, head) and count > 0
        assert rec["actor_id"] == "alice" and rec["pruned_at"] and rec["workflow_id"] == "ask"
        assert stores.runs.load(rid) is None and stores.ledger.list(rid) == []
    assert records["old-failed"]["status"] == "failed"
    assert records["old-cancelled"]["status"] == "cancelled"
    assert stores.audit.list_prune_records() == done["pruned"]
    assert stores.snapshots.list_snapshots(run_id="old-done") == []
    assert stores.logs.read_log("old-done") == ([], 0)
    # Its own artifact went; the ones a kept run stored stayed.
    assert done["artifacts"] == [p["only_old"]]
    assert stores.artifacts.artifact_meta(p["only_old"]) is None
    assert stores.artifacts.get_artifact(p["shared"]) == BLOB
    assert stores.artifacts.artifact_meta(p["kept_art"]) is not None
    # Never a running or waiting run, or one that ended after the cutoff.
    for rid in ("new-done", "keeper", "running", "parent", p["child"]):
        assert stores.runs.load(rid) is not None
    assert sorted(stores.runs.iter_run_ids()) == sorted(
        ["new-done", "keeper", "running", "parent", p["child"]])
    # 0s: every ended run.
    again = prune(stores, older_than=timedelta(0), now=now)
    assert [r["run_id"] for r in again["pruned"]] == ["new-done"]
    assert len(stores.audit.list_prune_records()) == 4


def test_status_filter_and_bad_statuses(stores: Stores, clock: Any) -> None:
    population(stores, clock)
    got = prune(stores, older_than=timedelta(0), statuses=["cancelled"], now=clock.now)
    assert [r["run_id"] for r in got["pruned"]] == ["old-cancelled"]
    for bad in (["waiting"], ["running"], ["bogus"]):
        with pytest.raises(UsageError):
            prune(stores, older_than=timedelta(0), statuses=bad, now=clock.now)
    with pytest.raises(UsageError):
        prune(stores, older_than=timedelta(seconds=-1), now=clock.now)


def test_family_rules(stores: Stores, clock: Any) -> None:
    p = population(stores, clock)
    rt = runtime(stores, clock)
    # The child ends (its parent ends with it): then both go.
    rt.resume(run_id=p["child"], payload={"response": "yes"})
    assert stores.runs.load("parent").status == RunStatus.COMPLETED
    plan = plan_prune(stores, older_than=timedelta(0), now=clock.now)
    assert {"parent", p["child"]} <= {r.run_id for r in plan.runs}
    # A child whose parent is still waiting stays; so does a parent with a live child.
    rt.start(workflow=rt.workflow_registry.get("parent"), run_id="parent-2")
    rt.tick(run_id="parent-2")
    (kid,) = stores.runs.list_children(parent_run_id="parent-2")
    rt.cancel_run(kid.run_id)  # the parent fails, naming its child
    assert stores.runs.load("parent-2").status.is_terminal
    rt.start(workflow=rt.workflow_registry.get("parent"), run_id="parent-3")
    rt.tick(run_id="parent-3")
    (kid3,) = stores.runs.list_children(parent_run_id="parent-3")
    kid3_run = stores.runs.load(kid3.run_id)
    kid3_run.status, kid3_run.waiting = RunStatus.CANCELLED, None
    with stores.runs.lock(kid3.run_id, timeout=5):
        stores.runs.save(kid3_run)  # ended, while its parent still waits
    plan = plan_prune(stores, older_than=timedelta(0), now=clock.now)
    why = {s["run_id"]: s["why"] for s in plan.skipped}
    assert "parent-3 has not ended" in why[kid3.run_id]
    assert {"parent-2", kid.run_id} <= {r.run_id for r in plan.runs}
    # An ended parent with a child that has not ended stays too.
    done_parent = rt.start(workflow=rt.workflow_registry.get("ask"), run_id="ended-parent")
    rt.tick(run_id=done_parent)
    rt.resume(run_id=done_parent, payload={"response": "y"})
    orphan = rt.start(workflow=rt.workflow_registry.get("ask"), run_id="live-child",
                      parent_run_id="ended-parent")
    rt.tick(run_id=orphan)
    plan = plan_prune(stores, older_than=timedelta(0), now=clock.now)
    why = {s["run_id"]: s["why"] for s in plan.skipped}
    assert "live-child has not ended" in why["ended-parent"]


def test_a_busy_run_is_skipped_and_a_changed_one_is_not_pruned(stores: Stores, clock: Any) -> None:
    population(stores, clock)
    plan = plan_prune(stores, older_than=timedelta(hours=1), now=clock.now)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with stores.runs.lock("old-done", timeout=5):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(10)
    try:
        # Retried (back to running) after the plan was made.
        rt = runtime(stores, clock)
        rt.retry("old-failed")
        got = apply_prune(stores, plan)
    finally:
        release.set()
        t.join(10)
    why = {s["run_id"]: s["why"] for s in got["skipped"]}
    assert why["old-done"] == "busy in another process"
    assert why["old-failed"].startswith("changed since the plan")
    assert [r["run_id"] for r in got["pruned"]] == ["old-cancelled"]
    assert stores.runs.load("old-done") is not None
    # The busy run's own artifact stays with it.
    assert got["artifacts"] == []
    assert len(stores.artifacts.list_artifacts(run_id="old-done")) == 2


def test_prune_needs_an_audit_store(clock: Any) -> None:
    from abstractrt_cli.errors import StoreCapabilityError

    s = memory_stores()
    population(s, clock)
    s.audit = None
    with pytest.raises(StoreCapabilityError):
        prune(s, older_than=timedelta(0), now=clock.now)
    assert s.runs.load("old-done") is not None
