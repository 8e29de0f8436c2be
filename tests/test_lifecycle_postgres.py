"""The life of a run (PRODUCT §9) on the PostgreSQL store, through the installed command:
the same commands as on files (``test_lifecycle_cli.py``), over one database, and bundles
moved between PostgreSQL and a data dir both ways."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from cli_helpers import CLI, abstractrt_command, assert_one_line_error
from pg_helpers import requires_pg, throwaway_database

pytestmark = requires_pg

ASSETS = Path(__file__).parent / "assets" / "lifecycle"
RAW = b"\x00\xff\xfe\x80binary\x00tail\xc3\x28"


@pytest.fixture
def db_url() -> Iterator[str]:
    # The commands use the store's default schema: a database of this test's own.
    with throwaway_database("lc") as url:
        yield url


@pytest.fixture
def world(tmp_path, db_url):
    w = CLI(tmp_path, copy_examples=False)
    for f in sorted(ASSETS.glob("*.py")):
        shutil.copy(f, w.workflows_dir / f.name)
    w.env["ABSTRACTRT_STORE"] = db_url
    w.url = db_url
    return w


def ok(world, *args, code=0, input=None):
    r = world.run(*args, input=input)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.stderr, r.output
    return r


def js(world, *args, code=0, input=None):
    return ok(world, *args, "--json", code=code, input=input).json()


def everything(world):
    """What the database holds, as the commands show it."""
    return (js(world, "runs"), js(world, "snapshots"), js(world, "artifacts"),
            js(world, "pruned"))


def test_retry_fork_and_snapshots(world, tmp_path):
    side, flag = tmp_path / "side.txt", tmp_path / "flag"
    flag.write_text("on")
    rid = js(world, "start", "broken_once", "--set", f"side={side}", "--set", f"flag={flag}",
             code=3)["run_id"]
    before = everything(world)
    r = world.run("retry", rid, "--from", "nowhere")
    assert_one_line_error(r, 1, "no node 'nowhere'")
    assert everything(world) == before
    flag.unlink()
    assert js(world, "retry", rid)["status"] == "completed"
    assert side.read_text() == "work\n"
    assert_one_line_error(world.run("retry", rid), 1, "has not failed")

    run = js(world, "start", "mixed", "--set", f"side={side}")
    mid = js(world, "resume", run["run_id"], "--answer", "one")
    snap = js(world, "snapshot", run["run_id"], "--name", "mid", "--tag", "t")
    assert snap["ledger_count"] == mid["ledger_count"]
    assert_one_line_error(world.run("snapshot", run["run_id"], "--name", "mid"), 1, "already")
    js(world, "resume", run["run_id"], "--answer", "two")
    records = js(world, "ledger", run["run_id"])
    for rec in records:
        fork = js(world, "fork", run["run_id"], "--at", str(rec["seq"]))
        (first,) = js(world, "ledger", fork["run_id"])
        assert first["result"]["source_record_hash"] == rec["record_hash"]
        if rec["seq"] + 1 == mid["ledger_count"]:
            assert fork["vars"] == mid["vars"] and fork["status"] == "waiting"
    assert_one_line_error(world.run("fork", run["run_id"], "--at", "99"), 1, "no ledger record 99")
    forked = js(world, "fork", run["run_id"], "--snapshot", "mid")
    assert forked["vars"] == snap["state"]["vars"]
    assert js(world, "resume", forked["run_id"], "--answer", "x")["output"]["second"] == "x"
    assert [s["name"] for s in js(world, "snapshots", "--tag", "t")] == ["mid"]
    assert side.read_text() == "work\nwork 1\n"  # neither the forks nor the retry re-ran one


def test_artifacts_by_ref_binary_safe_and_stored_once(world, tmp_path):
    a = js(world, "start", "blobs")
    b = js(world, "start", "blobs")
    assert a["vars"]["kept"] == b["vars"]["kept"]
    (meta,) = js(world, "artifacts", "--tag", "raw")
    assert meta["run_ids"] == [a["run_id"], b["run_id"]]
    cp = subprocess.run(abstractrt_command() + ["artifact", "cat", meta["ref"]], env=world.env,
                        capture_output=True, timeout=60)
    assert cp.returncode == 0 and cp.stdout == RAW
    big = tmp_path / "big.bin"
    data = os.urandom(2 * 1024 * 1024)
    big.write_bytes(data)
    done = js(world, "resume", a["run_id"], "--artifact", str(big))
    assert done["output"] == {"size": len(data), "same": True}
    sample = base64.b64encode(data[4096:4144]).decode()
    for doc in (ok(world, "show", a["run_id"], "--json").stdout,
                ok(world, "ledger", a["run_id"], "--json").stdout):
        assert len(doc) < 64 * 1024 and sample not in doc
    ref = done["vars"]["upload"]["artifact"]["$artifact"]
    got = js(world, "artifact", "cat", ref)
    assert base64.b64decode(got["data_base64"]) == data
    assert_one_line_error(world.run("artifact", "cat", "sha256:" + "0" * 64), 1, "no such artifact")


def test_bundles_between_postgresql_and_files_both_ways(world, tmp_path):
    side = tmp_path / "side.txt"
    parent = js(world, "start", "parent")
    run = js(world, "start", "mixed", "--set", f"side={side}")
    js(world, "resume", run["run_id"], "--answer", "one")
    js(world, "snapshot", run["run_id"], "--name", "s")
    blob = js(world, "start", "blobs")
    bundle = tmp_path / "pg.json"
    bundle.write_text(ok(world, "export", parent["run_id"], run["run_id"], blob["run_id"],
                         "--children").stdout)
    files = tmp_path / "files"
    report = js(world, "--store", str(files), "import", str(bundle))
    assert len(report["imported"]) == 4 and report["snapshots"] == 1
    for rid in report["imported"]:
        assert "verified" in ok(world, "--store", str(files), "ledger", rid, "--verify").stdout
    # The same bundle into PostgreSQL again is accepted (identical); a tampered one
    # changes nothing there.
    again = js(world, "import", str(bundle))
    assert again["imported"] == [] and len(again["unchanged"]) == 4
    doc = json.loads(bundle.read_text())
    doc["runs"][0]["run"]["vars"]["forged"] = True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    before = everything(world)
    assert_one_line_error(world.run("import", str(bad)), 1, "run ")
    assert everything(world) == before
    # Files to PostgreSQL: a run made on files lands in the database, verified.
    made = js(world, "--store", str(files), "start", "blobs")
    out = tmp_path / "files.json"
    out.write_text(ok(world, "--store", str(files), "export", made["run_id"]).stdout)
    assert js(world, "import", str(out))["imported"] == [made["run_id"]]
    assert "verified" in ok(world, "ledger", made["run_id"], "--verify").stdout
    assert js(world, "show", made["run_id"])["vars"] == made["vars"]


def test_prune_logs_follow_and_doctor(world, tmp_path):
    side = tmp_path / "side.txt"
    done = js(world, "start", "mixed", "--set", f"side={side}")
    rid = done["run_id"]
    p = subprocess.Popen(abstractrt_command() + ["ledger", rid, "--follow", "--json"],
                         env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         bufsize=0)
    try:
        assert json.loads(p.stdout.readline())["kind"] == "start"
        js(world, "resume", rid, "--answer", "one")
        js(world, "resume", rid, "--answer", "two")
        out, err = p.communicate(timeout=60)  # a guard against a hang, not a timing
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["kind"] == "complete"
    logs = js(world, "logs", rid)
    assert ("work", "worked on 1\n") in [(e["node_id"], e["text"]) for e in logs["entries"]]

    waiting = js(world, "start", "blobs")
    shared = js(world, "start", "blobs")
    js(world, "resume", shared["run_id"], "--artifact", str(side))
    head = js(world, "ledger", rid)[-1]["record_hash"]
    before = everything(world)
    plan = js(world, "prune", "--older-than", "0s", "--dry-run")
    assert everything(world) == before
    assert sorted(r["run_id"] for r in plan["runs"]) == sorted([rid, shared["run_id"]])
    result = js(world, "prune", "--older-than", "0s")
    by_run = {r["run_id"]: r for r in result["pruned"]}
    assert by_run[rid]["ledger_head"] == head
    assert js(world, "show", waiting["run_id"])["status"] == "waiting"
    assert js(world, "artifact", "cat", waiting["vars"]["kept"])["size"] == len(RAW)
    assert {r["run_id"] for r in js(world, "pruned")} == {rid, shared["run_id"]}
    assert world.run("prune", "--older-than", "0s", "--status", "waiting").exit_code == 2

    report = js(world, "doctor")
    assert report["problems"] == [] and report["runs_checked"] == 1
    from abstractrt_cli.storage import open_stores

    stores = open_stores(world.url, tmp_path, create=False)
    try:
        now = datetime.now(timezone.utc)
        stores.audit.beat({"worker_id": "w1", "host": "h", "pid": 7, "interval": 5,
                           "beat_at": (now - timedelta(minutes=5)).isoformat(),
                           "started_at": now.isoformat(), "rounds": 1, "moved": 0})
    finally:
        stores.close()
    report = js(world, "doctor", code=1)
    assert [p["kind"] for p in report["problems"]] == ["stale_heartbeat"]
