"""`abstractrt store info` and `store copy` through the installed command (file stores;
PostgreSQL copies are covered by tests/test_store_copy.py against a real server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXE = shutil.which("abstractrt", path=str(Path(os.sys.executable).parent)) or "abstractrt"


def run(*args: str, data: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    env.update(ABSTRACTRT_DATA_DIR=str(data), ABSTRACTRT_WORKFLOWS=str(ROOT / "workflows"),
               ABSTRACTRT_CONFIG=str(data.parent / "none.yaml"))
    (data.parent / "none.yaml").write_text("{}\n")
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def src(tmp_path):
    data = tmp_path / "src"
    for title in ("a", "b"):
        r = run("start", "approval", "--set", f"title={title}", "--set", "amount=5", data=data)
        assert r.returncode == 0, r.stderr
    return data


def test_store_info_shows_the_store_its_format_and_runs_by_status(src):
    r = run("store", "info", "--json", data=src)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["store"] == "files" and info["format"] >= 3 and info["runs"] == {"waiting": 2}


def test_store_copy_verifies_is_idempotent_and_refuses_conflicts(src, tmp_path):
    dst = tmp_path / "dst"
    before = {p: p.read_bytes() for p in src.rglob("*.json*") if p.is_file()}
    r = run("store", "copy", "--from", str(src), "--to", str(dst), "--json", data=src)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert (rep["runs"], rep["copied"], rep["ok"]) == (2, 2, True)
    again = json.loads(run("store", "copy", "--from", str(src), "--to", str(dst), "--json",
                           data=src).stdout)
    assert (again["copied"], again["unchanged"]) == (0, 2)
    assert {p: p.read_bytes() for p in src.rglob("*.json*") if p.is_file()} == before
    listed = json.loads(run("runs", "--json", data=dst).stdout)
    assert len(listed) == 2
    for row in listed:
        assert run("ledger", row["run_id"], "--verify", data=dst).returncode == 0
    # A run that differs at the destination: answered there, so its history differs.
    rid = listed[0]["run_id"]
    assert run("resume", rid, "--answer", "reject", data=dst).returncode == 0
    r = run("store", "copy", "--from", str(src), "--to", str(dst), data=src)
    assert r.returncode == 1 and "conflict" in r.stderr and rid in r.stderr


@pytest.mark.parametrize("args", [["store", "copy", "--to", "x"], ["store", "info", "--from", "x"],
                                  ["store", "bogus"]])
def test_store_usage_errors(tmp_path, args):
    r = run(*args, data=tmp_path / "d")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not (tmp_path / "d").exists()


def test_store_copy_from_a_missing_data_dir_is_refused(tmp_path):
    r = run("store", "copy", "--from", str(tmp_path / "nope"), "--to", str(tmp_path / "d2"),
            data=tmp_path / "d")
    assert r.returncode == 2 and "no data dir" in r.stderr and not (tmp_path / "d2").exists()


def test_tick_all_reminds_through_the_on_wait_hook(tmp_path):
    """remind_every through the installed command: tick --all re-runs on_wait once per period."""
    import time

    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "nag.py").write_text(
        '"""Ask, and remind every 3 seconds."""\n'
        "from abstractrt_cli import Effect, StepPlan, WorkflowSpec\n"
        "nag = WorkflowSpec('nag', 'a', {\n"
        "    'a': lambda run, ctx: StepPlan('a', effect=Effect('ask_user', {'prompt': 'Sign?',\n"
        "        'remind_every': '3s'}, 'x'), next_node='end'),\n"
        "    'end': lambda run, ctx: StepPlan('end', complete_output={}),\n"
        "})\n")
    log = tmp_path / "hook.log"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"hooks:\n  on_wait: 'echo $ABSTRACTRT_RUN_ID >> {log}'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    env.update(ABSTRACTRT_DATA_DIR=str(tmp_path / "d"), ABSTRACTRT_WORKFLOWS=str(wf),
               ABSTRACTRT_CONFIG=str(cfg))

    def cli(*args):
        return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120)

    r = cli("start", "nag", "--json")
    assert r.returncode == 0, r.stderr
    rid = json.loads(r.stdout)["run_id"]
    assert log.read_text().split() == [rid]
    time.sleep(3.2)
    assert cli("tick", "--all").returncode == 0
    assert cli("tick", "--all").returncode == 0  # the same period: no second reminder
    assert log.read_text().split() == [rid, rid]
    kinds = [rec["kind"] for rec in json.loads(cli("ledger", rid, "--json").stdout)]
    assert kinds.count("reminder") == 1
