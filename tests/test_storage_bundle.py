"""Export and import (storage/bundle.py) between real stores, with real runs: every chain
verified before anything is written, all or nothing, idempotent."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from kernel_helpers import finish

from abstractrt_cli import Effect, Runtime, RunStatus, StepPlan, WorkflowRegistry, WorkflowSpec
from abstractrt_cli.errors import BundleError, UnknownRunError
from abstractrt_cli.storage import memory_stores, open_file_bundle
from abstractrt_cli.storage.base import Stores
from abstractrt_cli.storage.bundle import export_bundle, import_bundle
from abstractrt_cli.storage.chain import chain_record

BLOB = bytes(range(256)) * 3


def ask_workflow() -> WorkflowSpec:
    return WorkflowSpec("ask", "a", {
        "a": lambda run, ctx: StepPlan("a", effect=Effect("ask_user", {"prompt": "ok?"}, "answer"),
                                       next_node="end"),
        "end": finish()})


def parent_workflow() -> WorkflowSpec:
    return WorkflowSpec("parent", "p", {
        "p": lambda run, ctx: StepPlan("p", effect=Effect(
            "start_subworkflow", {"workflow_id": "ask", "vars": {"from": "parent"}}, "child"),
            next_node="end"),
        "end": finish()})


@pytest.fixture(params=["memory", "files"])
def make_stores(request: Any, tmp_path: Path) -> Any:
    made: List[Stores] = []

    def make(name: str) -> Stores:
        stores = memory_stores() if request.param == "memory" else open_file_bundle(tmp_path / name)
        made.append(stores)
        return stores

    yield make
    for s in made:
        s.close()


def runtime(stores: Stores, clock: Any) -> Runtime:
    reg = WorkflowRegistry()
    reg.register(ask_workflow())
    reg.register(parent_workflow())
    return Runtime(run_store=stores.runs, ledger_store=stores.ledger, workflow_registry=reg,
                   event_store=stores.events, clock=clock)


def populate(stores: Stores, clock: Any) -> Dict[str, str]:
    """A completed run holding an artifact ref, a waiting one with a snapshot, and a parent
    waiting on its child."""
    rt = runtime(stores, clock)
    done = rt.start(workflow=rt.workflow_registry.get("ask"), run_id="done-1")
    rt.tick(run_id=done)
    meta = stores.artifacts.put_artifact(BLOB, content_type="application/x-test", run_id=done,
                                         tags=["evidence"], name="blob.bin")
    rt.resume(run_id=done, payload={"response": "yes", "doc": {"$artifact": meta["ref"]}})
    waiting = rt.start(workflow=rt.workflow_registry.get("ask"), run_id="wait-1")
    clock.advance(1)
    run = rt.tick(run_id=waiting)
    stores.snapshots.put_snapshot({"run_id": waiting, "name": "at the prompt", "tags": ["t"],
                                   "state": run.to_jsonable(), "ledger_count": run.ledger_count,
                                   "ledger_head": run.ledger_head, "created_at": clock.now.isoformat(),
                                   "actor_id": "alice"})
    parent = rt.start(workflow=rt.workflow_registry.get("parent"), run_id="parent-1")
    rt.tick(run_id=parent)
    (child,) = stores.runs.list_children(parent_run_id=parent)
    return {"done": done, "waiting": waiting, "parent": parent, "child": child.run_id,
            "ref": meta["ref"]}


def same_content(a: Stores, b: Stores, run_ids: List[str]) -> None:
    for rid in run_ids:
        assert b.runs.load(rid).to_jsonable() == a.runs.load(rid).to_jsonable()
        assert b.ledger.list(rid) == a.ledger.list(rid)
        assert b.snapshots.list_snapshots(run_id=rid) == a.snapshots.list_snapshots(run_id=rid)


def test_round_trip_and_idempotent(make_stores: Any, clock: Any) -> None:
    src, dst = make_stores("src"), make_stores("dst")
    ids = populate(src, clock)
    bundle = export_bundle(src, [ids["done"], ids["waiting"], ids["parent"]], children=True)
    bundle = json.loads(json.dumps(bundle))  # it is one JSON document
    assert bundle["format"] == 1 and bundle["exported_at"]
    assert [r["run"]["run_id"] for r in bundle["runs"]] == [
        ids["done"], ids["waiting"], ids["parent"], ids["child"]]
    report = import_bundle(dst, bundle)
    assert report["imported"] == [ids["done"], ids["waiting"], ids["parent"], ids["child"]]
    assert report["unchanged"] == [] and report["snapshots"] == 1 and report["artifacts"] == 1
    same_content(src, dst, [ids["done"], ids["waiting"], ids["parent"], ids["child"]])
    assert dst.artifacts.get_artifact(ids["ref"]) == BLOB
    meta = dst.artifacts.artifact_meta(ids["ref"])
    assert meta == src.artifacts.artifact_meta(ids["ref"])  # its time too
    # The same bundle again: fine, nothing written.
    again = import_bundle(dst, bundle)
    assert again["imported"] == [] and again["records"] == 0 and again["snapshots"] == 0
    assert again["unchanged"] == report["imported"] and again["artifacts"] == 0
    # The imported runs go on working: the waiting one takes its answer.
    rt = runtime(dst, clock)
    assert rt.resume(run_id=ids["waiting"], payload={"response": "ok"}).status == RunStatus.COMPLETED


def test_children_only_when_asked_and_unknown_runs(make_stores: Any, clock: Any) -> None:
    src = make_stores("src")
    ids = populate(src, clock)
    bundle = export_bundle(src, [ids["parent"]])
    assert [r["run"]["run_id"] for r in bundle["runs"]] == [ids["parent"]]
    assert bundle["runs"][0]["artifacts"] == [] and bundle["runs"][0]["snapshots"] == []
    with pytest.raises(UnknownRunError):
        export_bundle(src, ["no-such-run"])


def test_an_artifact_of_two_runs_travels_once(make_stores: Any, clock: Any) -> None:
    src, dst = make_stores("src"), make_stores("dst")
    ids = populate(src, clock)
    src.artifacts.put_artifact(BLOB, run_id=ids["waiting"])
    bundle = export_bundle(src, [ids["done"], ids["waiting"]])
    first, second = (r["artifacts"] for r in bundle["runs"])
    assert "data" in first[0] and "data" not in second[0]
    import_bundle(dst, bundle)
    assert dst.artifacts.artifact_meta(ids["ref"])["run_ids"] == [ids["done"], ids["waiting"]]


def tampered(bundle: Dict[str, Any], how: str) -> Dict[str, Any]:
    b = copy.deepcopy(bundle)
    first = b["runs"][0]
    if how == "ledger record edited":
        first["ledger"][1]["result"] = {"response": "no"}
    elif how == "ledger truncated":
        first["ledger"].pop()
    elif how == "run state edited":
        first["run"]["vars"]["answer"] = {"response": "no"}
    elif how == "record appended after the end":  # well chained, but after the run ended
        last = first["ledger"][-1]
        first["ledger"].append(chain_record(dict(last, step_id="forged"), seq=last["seq"] + 1,
                                            prev_hash=last["record_hash"]))
    elif how == "artifact bytes changed":
        first["artifacts"][0]["data"] = base64.b64encode(b"other bytes").decode()
    elif how == "artifact without bytes":
        del first["artifacts"][0]["data"]
    elif how == "record of another run":
        first["ledger"][0]["run_id"] = "someone-else"
    elif how == "bad format":
        b["format"] = 99
    elif how == "run twice":
        b["runs"].append(copy.deepcopy(first))
    elif how == "snapshot of another run":
        b["runs"][1]["snapshots"][0]["run_id"] = "someone-else"
    return b


@pytest.mark.parametrize("how", [
    "ledger record edited", "ledger truncated", "run state edited",
    "record appended after the end", "artifact bytes changed", "artifact without bytes",
    "record of another run", "bad format", "run twice", "snapshot of another run"])
def test_a_bad_bundle_writes_nothing(make_stores: Any, clock: Any, how: str) -> None:
    src, dst = make_stores("src"), make_stores("dst")
    ids = populate(src, clock)
    bundle = export_bundle(src, [ids["done"], ids["waiting"]])
    with pytest.raises(BundleError) as ei:
        import_bundle(dst, tampered(bundle, how))
    assert ei.value.exit_code == 1 and ei.value.code == "invalid_bundle"
    assert list(dst.runs.iter_run_ids()) == []
    assert dst.artifacts.list_artifacts() == [] and dst.snapshots.list_snapshots() == []
    assert dst.ledger.list(ids["done"]) == []


def test_a_run_present_and_different_refuses_the_whole_bundle(make_stores: Any, clock: Any) -> None:
    src, dst = make_stores("src"), make_stores("dst")
    ids = populate(src, clock)
    bundle = export_bundle(src, [ids["done"], ids["waiting"]])
    import_bundle(dst, {"format": 1, "exported_at": bundle["exported_at"],
                        "runs": [bundle["runs"][1]]})  # the waiting run is there already
    rt = runtime(dst, clock)
    rt.resume(run_id=ids["waiting"], payload={"response": "changed here"})
    with pytest.raises(BundleError, match=f"run {ids['waiting']} exists here and differs"):
        import_bundle(dst, bundle)
    assert dst.runs.load(ids["done"]) is None and dst.artifacts.list_artifacts() == []
    # A snapshot of the same name with other content is a conflict too.
    other = make_stores("other")
    import_bundle(other, {"format": 1, "exported_at": "x", "runs": [bundle["runs"][0]]})
    snap = dict(bundle["runs"][1]["snapshots"][0], tags=["changed"])
    other.snapshots.put_snapshot(snap)
    with pytest.raises(BundleError, match="snapshot 'at the prompt' exists here and differs"):
        import_bundle(other, bundle)
    assert other.runs.load(ids["waiting"]) is None
