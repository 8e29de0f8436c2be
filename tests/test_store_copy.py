"""``copy_stores``: files -> PostgreSQL -> files (and memory), verified, idempotent, refusing
to overwrite a run that differs. The files <-> memory cases run without a server."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from pg_helpers import open_stores as open_pg
from pg_helpers import pg_schema_fixture  # noqa: F401  (fixture)
from pg_helpers import requires_pg, sql

from abstractrt_cli import Runtime
from abstractrt_cli.core.models import RunStatus
from abstractrt_cli.storage import InMemoryLedgerStore, InMemoryRunStore, open_stores
from abstractrt_cli.storage.base import LOG_CAP, Stores
from abstractrt_cli.storage.chain import verify_ledger_chain
from abstractrt_cli.storage.copy import copy_stores

sys.path.insert(0, str(Path(__file__).parent / "assets" / "storage"))
from workflows import ask_workflow, counter_workflow  # noqa: E402


def file_stores(path: Path) -> Stores:
    return open_stores(str(path), path, create=True)


def memory_stores() -> Stores:
    """Runs and ledgers only (no events, snapshots...: a store that lacks the other parts)."""
    ledger = InMemoryLedgerStore()
    return Stores(runs=InMemoryRunStore(ledger=ledger), ledger=ledger, kind="memory",
                  location="memory")


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Stores]:
    """A data dir with runs in every state a run can be in, made by the kernel."""
    stores = file_stores(tmp_path / "src")
    rt = Runtime(run_store=stores.runs, ledger_store=stores.ledger,
                 effect_handlers={"side": lambda run, effect: {"i": effect.payload["i"]}})
    counter, ask = counter_workflow(5), ask_workflow(slow=0)
    for i in range(3):
        rid = rt.start(workflow=counter, run_id=f"done-{i}", vars={"n": i, "text": "héllo ✓"})
        assert rt.tick(run_id=rid, workflow=counter).status == RunStatus.COMPLETED
    rt.start(workflow=counter, run_id="fresh")  # started, never ticked
    rid = rt.start(workflow=ask, run_id="asking")
    assert rt.tick(run_id=rid, workflow=ask).status == RunStatus.WAITING
    rid = rt.start(workflow=ask, run_id="answered", parent_run_id="asking")
    rt.tick(run_id=rid, workflow=ask)
    rt.resume(run_id=rid, payload={"response": "yes"}, workflow=ask)
    rid = rt.start(workflow=counter, run_id="cancelled")
    rt.cancel_run(rid, reason="no longer needed")
    yield stores
    stores.close()


def snapshot(stores: Stores) -> Dict[str, Any]:
    """Every run (as JSON) and ledger of a store, for comparing two stores."""
    out = {}
    for run in stores.runs.list_runs(limit=None):
        out[run.run_id] = (run.to_jsonable(), stores.ledger.list(run.run_id))
    return out


def tree_digest(root: Path) -> Dict[str, str]:
    """The run and ledger files of a data dir and their content (nothing may change)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "runs").rglob("*")) if p.is_file()}


def assert_verifies(stores: Stores, run_ids: List[str]) -> None:
    for rid in run_ids:
        run = stores.runs.load(rid)
        report = verify_ledger_chain(stores.ledger.list(rid), expected_count=run.ledger_count,
                                     expected_head=run.ledger_head)
        assert report["ok"], (rid, report)


def test_files_to_memory_and_back(source: Stores, tmp_path: Path) -> None:
    want = snapshot(source)
    mem = memory_stores()
    report = copy_stores(source, mem)
    assert report["ok"] and report["copied"] == len(want) == report["runs"], report
    assert snapshot(mem) == want
    back = file_stores(tmp_path / "back")
    try:
        assert copy_stores(mem, back)["copied"] == len(want)
        assert snapshot(back) == want
        assert_verifies(back, list(want))
    finally:
        back.close()


def test_a_half_done_copy_is_taken_up_where_it_stopped(source: Stores, tmp_path: Path) -> None:
    from abstractrt_cli.storage.copy import _Verbatim

    dst = file_stores(tmp_path / "dst")
    try:
        records = source.ledger.list("done-1")
        for rec in records[:3]:  # a copy killed after three records, before the run
            dst.ledger.append(_Verbatim(rec))
        report = copy_stores(source, dst)
        assert report["ok"], report
        assert snapshot(dst) == snapshot(source)
        total = sum(len(source.ledger.list(r)) for r in snapshot(source))
        assert report["records_copied"] == total - 3
    finally:
        dst.close()


def test_a_source_chain_that_does_not_verify_is_not_copied(source: Stores, tmp_path: Path) -> None:
    ledger = Path(source.ledger.path_of("done-0"))
    lines = ledger.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"attempt":1', b'"attempt":2')
    assert b'"attempt":2' in lines[1]
    ledger.write_bytes(b"\n".join(lines))
    mem = memory_stores()
    report = copy_stores(source, mem)
    assert not report["ok"]
    assert [e["run_id"] for e in report["errors"]] == ["done-0"]
    assert "does not verify" in report["errors"][0]["why"]
    assert mem.runs.load("done-0") is None and mem.ledger.list("done-0") == []
    assert report["copied"] == report["runs"] - 1


@requires_pg
def test_files_to_postgres_and_back_verified_idempotent(source: Stores, pg_schema: str,
                                                        tmp_path: Path) -> None:
    want = snapshot(source)
    before = tree_digest(Path(source.location))
    pg = open_pg(pg_schema)
    try:
        report = copy_stores(source, pg)
        assert report["ok"] and report["copied"] == len(want), report
        assert report["records_copied"] == sum(len(r) for _, r in want.values())
        assert snapshot(pg) == want
        assert_verifies(pg, list(want))
        # Again: nothing to do, nothing changes at either end.
        again = copy_stores(source, pg)
        assert again["ok"] and again["copied"] == 0 and again["unchanged"] == len(want), again
        assert snapshot(pg) == want
        assert tree_digest(Path(source.location)) == before

        back = file_stores(tmp_path / "back")
        try:
            report = copy_stores(pg, back)
            assert report["ok"] and report["copied"] == len(want), report
            assert snapshot(back) == want
            assert_verifies(back, list(want))
            assert copy_stores(pg, back)["unchanged"] == len(want)
            # The copied runs work: the waiting one can be resumed where it was copied to.
            rt = Runtime(run_store=back.runs, ledger_store=back.ledger,
                         effect_handlers={"side": lambda run, effect: {"i": 0}})
            done = rt.resume(run_id="asking", payload={"response": "ok"},
                             workflow=ask_workflow(slow=0))
            assert done.status == RunStatus.COMPLETED
        finally:
            back.close()
    finally:
        pg.close()


@requires_pg
def test_a_run_that_differs_at_the_destination_is_a_conflict(source: Stores,
                                                             pg_schema: str) -> None:
    pg = open_pg(pg_schema)
    try:
        assert copy_stores(source, pg)["ok"]
        # The copy moves on at the destination; the source still has the old run.
        rt = Runtime(run_store=pg.runs, ledger_store=pg.ledger,
                     effect_handlers={"side": lambda run, effect: {"i": 0}})
        rt.resume(run_id="asking", payload={"response": "elsewhere"}, workflow=ask_workflow(slow=0))
        moved = snapshot(pg)
        # And a run whose state (not ledger) was changed there.
        run = pg.runs.load("fresh")
        run.vars["touched"] = True
        pg.runs.save(run)
        report = copy_stores(source, pg)
        assert not report["ok"]
        conflicts = {c["run_id"]: c["why"] for c in report["conflicts"]}
        assert set(conflicts) == {"asking", "fresh"}
        assert "ledger" in conflicts["asking"] and "state differs" in conflicts["fresh"]
        assert report["unchanged"] == report["runs"] - 2
        moved["fresh"] = (run.to_jsonable(), moved["fresh"][1])
        assert snapshot(pg) == moved  # nothing overwritten
        assert copy_stores(pg, source)["conflicts"]  # and the other way round, the same
    finally:
        pg.close()


@requires_pg
def test_postgres_source_is_read_only_and_a_broken_chain_stays_behind(pg_schema: str) -> None:
    pg = open_pg(pg_schema)
    try:
        rt = Runtime(run_store=pg.runs, ledger_store=pg.ledger,
                     effect_handlers={"side": lambda run, effect: {"i": effect.payload["i"]}})
        for i in range(3):
            rt.tick(run_id=rt.start(workflow=counter_workflow(3), run_id=f"r{i}"),
                    workflow=counter_workflow(3))
        sql(f"""UPDATE {pg_schema}.ledger SET record = jsonb_set(record::jsonb, '{{attempt}}', '5')::json
                WHERE run_id = 'r1' AND seq = 1""")
        before = sql(f"SELECT run_id, seq, record::text FROM {pg_schema}.ledger ORDER BY 1, 2")
        mem = memory_stores()
        report = copy_stores(pg, mem)
        assert [e["run_id"] for e in report["errors"]] == ["r1"] and report["copied"] == 2
        assert sql(f"SELECT run_id, seq, record::text FROM {pg_schema}.ledger ORDER BY 1, 2") == before
    finally:
        pg.close()


@requires_pg
def test_kept_events_travel_with_their_receipts(pg_schema: str) -> None:
    from datetime import datetime, timedelta, timezone

    from abstractrt_cli.core.models import KeptEvent
    from abstractrt_cli.storage.memory_events import InMemoryEventStore

    t0 = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def ev(n: int, **kw: Any) -> KeptEvent:
        return KeptEvent(event_id=f"ev-{n}", key=f"k{n % 2}", payload={"n": n},
                         emitted_at=(t0 + timedelta(seconds=n)).isoformat(),
                         expires_at=(t0 + timedelta(days=1)).isoformat(), **kw)

    src = memory_stores()
    src.events = InMemoryEventStore()
    for n in range(3):
        src.events.put(ev(n))
    src.events.mark_received("ev-1", "run-a")
    pg = open_pg(pg_schema)
    try:
        report = copy_stores(src, pg)
        assert report["ok"] and report["events_copied"] == 3, report
        assert [e.to_jsonable() for e in pg.events.list_events()] == \
            [e.to_jsonable() for e in src.events.list_events()]
        src.events.mark_received("ev-2", "run-b")  # a receipt more at the source: merged
        again = copy_stores(src, pg)
        assert again["ok"] and again["events_copied"] == 1 and again["events_unchanged"] == 2
        assert pg.events.list_events()[2].received_by == ["run-b"]
        back = memory_stores()
        back.events = InMemoryEventStore()
        back.events.put(ev(0, actor_id="someone else"))  # same id, other content
        report = copy_stores(pg, back)
        assert [c["event_id"] for c in report["conflicts"]] == ["ev-0"]
        assert back.events.list_events()[0].actor_id == "someone else"  # not overwritten
        assert report["events_copied"] == 2
        no_events = memory_stores()
        report = copy_stores(pg, no_events)
        assert not report["ok"] and "keeps no events" in report["errors"][0]["why"]
    finally:
        pg.close()


def test_a_corrupt_source_run_is_reported_and_the_rest_copied(source: Stores) -> None:
    Path(source.runs.path_of("done-2")).write_bytes(b'{"run_id": "torn')
    mem = memory_stores()
    report = copy_stores(source, mem)
    assert not report["ok"] and len(report["errors"]) == 1
    assert "done-2" in report["errors"][0]["why"]
    assert mem.runs.load("done-2") is None
    assert report["copied"] == len(snapshot(mem)) >= 6


# ---------------------------------------------------------------------------- the other parts


def add_parts(stores: Stores) -> None:
    """Snapshots, artifacts, prune records and logs beside the source's runs."""
    for rid, name, tags in (("asking", "before answer", ["review"]), ("done-0", "v1", [])):
        run = stores.runs.load(rid)
        stores.snapshots.put_snapshot({
            "run_id": rid, "name": name, "tags": tags, "state": run.to_jsonable(),
            "ledger_count": run.ledger_count, "ledger_head": run.ledger_head,
            "created_at": "2030-01-01T00:00:00+00:00", "actor_id": "alice"})
    stores.artifacts.put_artifact(b"report \xe2\x9c\x93", content_type="text/plain",
                                  run_id="asking", tags=["in"], name="r.txt")
    stores.artifacts.put_artifact(b"report \xe2\x9c\x93", run_id="done-0", tags=["out"])
    stores.artifacts.put_artifact(bytes(range(256)) * 64, run_id="done-1")
    for rid in ("gone-1", "gone-2"):
        stores.audit.put_prune_record({"run_id": rid, "workflow_id": "counter",
                                       "status": "completed", "ledger_count": 4,
                                       "ledger_head": "ab" * 32,
                                       "pruned_at": "2030-01-02T00:00:00+00:00",
                                       "actor_id": "alice"})
    stores.logs.append_log("asking", [{"at": "2030-01-01T00:00:00+00:00", "node_id": "ask",
                                       "effect_seq": 1, "stream": "stdout", "text": "héllo\n"}])
    chunk = "x" * (LOG_CAP // 3)
    for i in range(4):  # past the cap: the oldest is dropped, and counted
        stores.logs.append_log("done-0", [{"at": None, "node_id": "n", "effect_seq": i,
                                           "stream": "stderr", "text": chunk}])


def parts(stores: Stores, *, with_times: bool = True) -> Dict[str, Any]:
    """Everything but the runs, for comparing two stores."""
    arts = []
    for meta in stores.artifacts.list_artifacts():
        meta = dict(meta, data=stores.artifacts.get_artifact(meta["ref"]))
        if not with_times:
            meta.pop("created_at")
        arts.append(meta)
    return {"snapshots": stores.snapshots.list_snapshots(),
            "artifacts": sorted(arts, key=lambda m: m["ref"]),
            "pruned": stores.audit.list_prune_records(),
            "logs": {rid: stores.logs.read_log(rid) for rid in snapshot(stores)}}


def counts(report: Dict[str, Any], outcome: str) -> Dict[str, int]:
    return {p: report[f"{p}_{outcome}"] for p in ("snapshots", "artifacts", "prune_records", "logs")}


@requires_pg
def test_every_part_travels_files_to_postgres_and_back(source: Stores, pg_schema: str,
                                                       tmp_path: Path) -> None:
    add_parts(source)
    want = parts(source)
    assert want["logs"]["done-0"][1] > 0  # something was dropped: the count travels too
    before = tree_digest(Path(source.location))
    pg = open_pg(pg_schema)
    try:
        report = copy_stores(source, pg)
        assert report["ok"], report
        assert counts(report, "copied") == {"snapshots": 2, "artifacts": 2,
                                            "prune_records": 2, "logs": 2}
        assert parts(pg) == want  # times included: PostgreSQL takes them as they are
        again = copy_stores(source, pg)
        assert again["ok"] and counts(again, "copied") == dict.fromkeys(counts(again, "copied"), 0)
        assert counts(again, "unchanged") == {"snapshots": 2, "artifacts": 2,
                                              "prune_records": 2, "logs": 2}
        assert parts(pg) == want
        assert tree_digest(Path(source.location)) == before

        back = file_stores(tmp_path / "back")
        try:
            report = copy_stores(pg, back)
            assert report["ok"], report
            got, expected = parts(back, with_times=False), parts(pg, with_times=False)
            if not hasattr(back.logs, "import_log"):
                # The entries arrive; the count of bytes dropped before them cannot.
                expected["logs"]["done-0"] = (expected["logs"]["done-0"][0], 0)
                assert any("done-0" in n and "dropped" in n for n in report["notes"])
            assert got == expected
            again = copy_stores(pg, back)
            assert again["ok"] and counts(again, "copied") == dict.fromkeys(
                counts(again, "copied"), 0), again
        finally:
            back.close()
    finally:
        pg.close()


@requires_pg
def test_parts_that_differ_at_the_destination_are_conflicts(source: Stores, pg_schema: str) -> None:
    add_parts(source)
    pg = open_pg(pg_schema)
    try:
        pg.snapshots.put_snapshot({"run_id": "asking", "name": "before answer", "state": {},
                                   "tags": ["theirs"]})
        pg.logs.append_log("asking", [{"text": "another log\n"}])
        # The same bytes with other metadata: the same artifact, its runs and tags merged.
        pg.artifacts.put_artifact(b"report \xe2\x9c\x93", content_type="text/markdown",
                                  run_id="elsewhere")
        report = copy_stores(source, pg)
        assert not report["ok"]
        conflicts = [(c["run_id"], c.get("snapshot"), c.get("log")) for c in report["conflicts"]]
        assert sorted(conflicts, key=str) == sorted(
            [("asking", "before answer", None), ("asking", None, True)], key=str)
        assert pg.snapshots.get_snapshot("asking", "before answer")["tags"] == ["theirs"]
        assert pg.logs.read_log("asking") == ([{"text": "another log\n"}], 0)
        ref = "sha256:" + hashlib.sha256(b"report \xe2\x9c\x93").hexdigest()
        meta = pg.artifacts.artifact_meta(ref)
        assert meta["run_ids"] == ["elsewhere", "asking", "done-0"]
        assert meta["tags"] == ["in", "out"] and meta["content_type"] == "text/markdown"
        assert report["artifacts_copied"] == 2 and not report["errors"]
    finally:
        pg.close()


def test_a_side_that_lacks_a_part_is_said(source: Stores) -> None:
    add_parts(source)
    bare = memory_stores()  # runs and ledgers only
    report = copy_stores(source, bare)
    assert not report["ok"] and report["copied"] == report["runs"]
    whys = sorted(e["why"] for e in report["errors"])
    assert whys == sorted([
        "the destination keeps no artifacts: 2 not copied",
        "the destination keeps no prune records: 2 not copied",
        "the destination keeps no run logs: 2 not copied",
        "the destination keeps no snapshots: 2 not copied"])
    assert "the destination keeps no events (the source has none)" in report["notes"]
    # The other way round nothing is lost: a note for each part the source does not keep.
    full = full_memory_stores()
    report = copy_stores(bare, full)
    assert report["ok"] and report["unchanged"] == 0 and report["copied"] == report["runs"]
    assert sorted(report["notes"]) == sorted(
        f"the source keeps no {p}: none copied"
        for p in ("events", "snapshots", "artifacts", "prune records", "run logs"))


def full_memory_stores() -> Stores:
    from abstractrt_cli.storage.memory import memory_stores as every_part

    return every_part()
