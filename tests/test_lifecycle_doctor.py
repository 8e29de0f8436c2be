"""``abstractrt doctor [--fix]`` through the installed command: each problem it can see is
planted, then found (errors exit 1, warnings exit 0), and ``--fix`` repairs what is safe."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cli_helpers import CLI, hold_lock, unchanged

ASSETS = Path(__file__).parent / "assets" / "lifecycle"


@pytest.fixture
def world(tmp_path):
    w = CLI(tmp_path, copy_examples=False)
    for f in sorted(ASSETS.glob("*.py")):
        shutil.copy(f, w.workflows_dir / f.name)
    return w


def ok(world, *args, code=0):
    r = world.run(*args)
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.stderr, r.output
    return r


def js(world, *args, code=0):
    return ok(world, *args, "--json", code=code).json()


def doctor(world, *args, code=0):
    """doctor --json (its exit code checked) and the problems by kind."""
    report = js(world, "doctor", *args, code=code)
    assert report["ok"] is (code == 0)
    return report, {p["kind"]: p for p in report["problems"]}


def waiting_run(world, tmp_path):
    return js(world, "start", "mixed", "--set", f"side={tmp_path / 'side.txt'}")["run_id"]


def runtime_at(world, when):
    """A runtime whose clock says ``when`` (to plant runs that became due long ago)."""
    from abstractrt_cli import Runtime
    from abstractrt_cli.loader import load_workflows

    rs, ls = world.stores()
    return Runtime(run_store=rs, ledger_store=ls, clock=lambda: when,
                   workflow_registry=load_workflows(world.workflows_dir).registry)


def test_a_healthy_store_and_the_settings_in_effect(world, tmp_path):
    # No data dir yet: healthy, and doctor does not create it.
    report, problems = doctor(world)
    assert problems == {} and report["data_dir_exists"] is False
    assert not world.data_dir.exists()
    waiting_run(world, tmp_path)
    with unchanged(world):
        report, problems = doctor(world)
    assert problems == {} and report["runs_checked"] == 1
    settings = {row["setting"]: row for row in report["settings"]}
    assert settings["data_dir"]["value"] == str(world.data_dir)
    assert settings["data_dir"]["from"] == "env"
    assert settings["workflows_dir"]["value"] == str(world.workflows_dir)
    assert settings["config_file"]["value"] == str(world.config)
    assert "store" in settings
    text = ok(world, "doctor").stdout
    assert str(world.data_dir) in text and "no problems found" in text


def test_unreadable_run_and_ledger_files_are_errors(world, tmp_path):
    bad_run = waiting_run(world, tmp_path)
    bad_ledger = waiting_run(world, tmp_path)
    (world.data_dir / "runs" / bad_run[0] / f"{bad_run}.json").write_text("{not json")
    ledger = world.data_dir / "runs" / bad_ledger[0] / f"{bad_ledger}.jsonl"
    ledger.write_text("garbage\n" + ledger.read_text())
    report, _ = doctor(world, code=1)
    unreadable = [p for p in report["problems"] if p["kind"] == "unreadable"]
    assert {tuple(p["run_ids"]) for p in unreadable} == {(bad_run,), (bad_ledger,)}
    assert all(p["severity"] == "error" and p["fix"] for p in unreadable)
    text = ok(world, "doctor", code=1).stdout
    assert f"error: run {bad_run}" in text and f"error: ledger of run {bad_ledger}" in text


def test_runs_whose_workflow_is_missing_broken_or_changed(world, tmp_path):
    rid = waiting_run(world, tmp_path)
    source = world.workflows_dir / "mixed.py"
    code = source.read_text()

    source.write_text(code + "\n# a change\n")
    report, problems = doctor(world)  # a warning only
    assert problems["workflow_changed"]["severity"] == "warning"
    assert problems["workflow_changed"]["run_ids"] == [rid]

    source.write_text("raise RuntimeError('half-edited')\n")
    report, problems = doctor(world, code=1)
    assert problems["workflow_broken"]["run_ids"] == [rid]
    assert "half-edited" in problems["workflow_file_broken"]["message"]

    source.unlink()
    report, problems = doctor(world, code=1)
    missing = problems["workflow_missing"]
    assert missing["run_ids"] == [rid] and "'mixed'" in missing["message"]
    assert "--workflows" in missing["fix"]
    # Ended runs need no workflow: cancelling the run makes the store healthy again.
    source.write_text(code)
    ok(world, "cancel", rid)
    source.unlink()
    assert doctor(world)[1] == {}


def test_a_parent_waiting_on_an_ended_child(world, tmp_path):
    parent = js(world, "start", "parent")
    child = parent["waiting"]["details"]["sub_run_id"]
    with hold_lock(world.data_dir, parent["run_id"]):  # the parent misses the child's end
        ok(world, "resume", child, "--answer", "yes")
    report, problems = doctor(world, code=1)
    p = problems["parent_waits_on_ended_child"]
    assert p["run_ids"] == [parent["run_id"]] and child in p["message"]
    assert "tick" in p["fix"]
    ok(world, "tick", "--all")
    assert doctor(world)[1] == {}


def test_timers_and_deadlines_overdue_by_more_than_five_minutes(world):
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    rt = runtime_at(world, hour_ago)
    from abstractrt_cli.loader import load_workflows

    loaded = load_workflows(world.workflows_dir)
    timer = rt.start(workflow=loaded.entry("timer").spec,
                     vars={"until": (hour_ago + timedelta(minutes=1)).isoformat()})
    assert rt.tick(run_id=timer).status.value == "waiting"
    deadline = rt.start(workflow=loaded.entry("deadline").spec)
    assert rt.tick(run_id=deadline).waiting.deadline is not None
    # A timer due in a minute is not a problem.
    fresh = js(world, "start", "timer", "--set",
               f"until={(datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()}")
    report, problems = doctor(world, code=1)
    late = [p for p in report["problems"] if p["kind"] == "overdue"]
    assert sorted(p["run_ids"][0] for p in late) == sorted([timer, deadline])
    assert fresh["run_id"] not in str(late)
    by_run = {p["run_ids"][0]: p for p in late}
    assert "timer" in by_run[timer]["message"] and "deadline" in by_run[deadline]["message"]
    assert "cron or a worker" in by_run[timer]["message"]


def test_a_stale_worker_heartbeat(world, tmp_path):
    from abstractrt_cli.storage import open_stores

    waiting_run(world, tmp_path)
    now = datetime.now(timezone.utc)
    stores = open_stores(None, world.data_dir, create=False)
    try:
        stores.audit.beat({"worker_id": "w-live", "host": "here", "pid": 1, "interval": 5,
                           "beat_at": now.isoformat(), "started_at": now.isoformat(),
                           "rounds": 3, "moved": 0})
        assert doctor(world)[1] == {}
        # 3x a 5 s interval is 15 s, but a heartbeat is stale only after 60 s at least.
        stores.audit.beat({"worker_id": "w-slow", "host": "there", "pid": 2, "interval": 5,
                           "beat_at": (now - timedelta(seconds=40)).isoformat(),
                           "started_at": now.isoformat(), "rounds": 3, "moved": 0})
        assert doctor(world)[1] == {}
        stores.audit.beat({"worker_id": "w-gone", "host": "there", "pid": 3, "interval": 30,
                           "beat_at": (now - timedelta(minutes=10)).isoformat(),
                           "started_at": now.isoformat(), "rounds": 3, "moved": 0})
    finally:
        stores.close()
    report, problems = doctor(world, code=1)
    stale = problems["stale_heartbeat"]
    assert "w-gone" in stale["message"] and "pid 3" in stale["message"]
    assert [p["kind"] for p in report["problems"]] == ["stale_heartbeat"]


def test_index_drift_is_a_warning_that_fix_repairs(world, tmp_path):
    rid = waiting_run(world, tmp_path)
    other = waiting_run(world, tmp_path)
    con = sqlite3.connect(world.data_dir / "index" / "index.sqlite3")
    with con:
        con.execute("DELETE FROM runs WHERE run_id = ?", (rid,))
    con.close()
    assert [r["run_id"] for r in js(world, "runs")] == [other]  # queries miss it
    with unchanged(world):
        report, problems = doctor(world)
    assert problems["index_drift"]["run_ids"] == [rid]
    assert problems["index_drift"]["severity"] == "warning"
    report, problems = doctor(world, "--fix")
    assert problems == {} and any("rebuilt the query index" in f for f in report["fixed"])
    assert sorted(r["run_id"] for r in js(world, "runs")) == sorted([rid, other])


def test_old_store_temp_files_are_a_warning_that_fix_removes(world, tmp_path):
    rid = waiting_run(world, tmp_path)
    shard = world.data_dir / "runs" / rid[0]
    old = shard / f".{rid}.json.4242.0.tmp"
    new = shard / f".{rid}.json.4242.1.tmp"
    for p in (old, new):
        p.write_text("half a run")
    twenty_minutes_ago = time.time() - 20 * 60
    os.utime(old, (twenty_minutes_ago, twenty_minutes_ago))
    with unchanged(world):
        report, problems = doctor(world)
    temp = problems["temp_files"]
    assert temp["paths"] == [str(old)] and temp["severity"] == "warning"
    r = ok(world, "doctor", "--fix")
    assert f"fixed: removed 1 temp file: runs/{rid[0]}/{old.name}" in r.stdout
    assert "no problems found" in r.stdout
    assert not old.exists() and new.exists()  # a write that may still be going on stays


def test_everything_at_once_is_reported_and_fix_says_what_it_did(world, tmp_path):
    rid = waiting_run(world, tmp_path)
    shard = world.data_dir / "runs" / rid[0]
    tmp = shard / ".x.json.1.0.tmp"
    tmp.write_text("")
    os.utime(tmp, (time.time() - 3600, time.time() - 3600))
    (world.workflows_dir / "mixed.py").unlink()
    r = ok(world, "doctor", "--fix", code=1)  # the missing workflow still needs a person
    assert "fixed: removed 1 temp file" in r.stdout
    assert "error: workflow 'mixed'" in r.stdout and "1 error, 0 warnings" in r.stdout
