"""The command line end to end on PostgreSQL: real ``abstractrt`` processes, one database.

The commands use the store's default schema, so this module gets a database of its own
(``CREATE DATABASE``), dropped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from pg_helpers import PG_URL, asset_cmd, requires_pg, throwaway_database

pytestmark = requires_pg

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with throwaway_database("cli") as url:
        yield url


def cli(url: str, tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    env.update(ABSTRACTRT_STORE=url, ABSTRACTRT_WORKFLOWS=str(WORKFLOWS),
               ABSTRACTRT_DATA_DIR=str(tmp / "unused-data-dir"), COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "abstractrt_cli", *args], env=env,
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def js(out: subprocess.CompletedProcess) -> Any:
    return json.loads(out.stdout)


def waiting_of(url: str, tmp: Path, run_id: str) -> Dict[str, Any]:
    (run,) = [r for r in js(cli(url, tmp, "waiting", "--json")) if r["run_id"] == run_id]
    return run


def test_start_wait_resume_emit_verify_cancel(db_url: str, tmp_path: Path) -> None:
    rid = js(cli(db_url, tmp_path, "start", "approval", "--set", "title=Laptop",
                 "--set", "amount=1450", "--json"))["run_id"]
    assert waiting_of(db_url, tmp_path, rid)["waiting"]["choices"] == ["approve", "reject"]
    cli(db_url, tmp_path, "resume", rid[:8], "--answer", "approve")
    assert waiting_of(db_url, tmp_path, rid)["current_node"] == "reason"
    cli(db_url, tmp_path, "resume", rid[:8], "--answer", "within budget")
    assert rid not in [r["run_id"] for r in js(cli(db_url, tmp_path, "waiting", "--json"))]
    verified = cli(db_url, tmp_path, "ledger", rid[:8], "--verify")
    assert "chain intact" in verified.stdout

    gate = js(cli(db_url, tmp_path, "start", "deploy_gate", "--json"))["run_id"]
    key = waiting_of(db_url, tmp_path, gate)["waiting"]["wait_key"]
    emitted = cli(db_url, tmp_path, "emit", key, "--set", "ok=true", "--set", "build=12")
    assert gate in emitted.stdout and "completed" in emitted.stdout

    doomed = js(cli(db_url, tmp_path, "start", "approval", "--set", "title=x", "--set", "amount=1",
                    "--json"))["run_id"]
    cli(db_url, tmp_path, "cancel", doomed[:8], "--reason", "not needed")
    assert "chain intact" in cli(db_url, tmp_path, "ledger", doomed[:8], "--verify").stdout
    statuses = {r["run_id"]: r["status"] for r in js(cli(db_url, tmp_path, "runs", "--json"))}
    assert statuses == {rid: "completed", gate: "completed", doomed: "cancelled"}
    assert "0 moved" in cli(db_url, tmp_path, "tick", "--all").stdout


def test_a_run_held_by_another_process_is_busy_exit_4(db_url: str, tmp_path: Path) -> None:
    rid = js(cli(db_url, tmp_path, "start", "approval", "--set", "title=t", "--set", "amount=2",
                 "--json"))["run_id"]
    holder = subprocess.Popen(asset_cmd("hold_lock.py", db_url, "abstractrt", rid),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        out = cli(db_url, tmp_path, "resume", rid, "--answer", "approve", check=False)
        assert out.returncode == 4, (out.stdout, out.stderr)
        assert "busy" in out.stderr
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("go\n")
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    cli(db_url, tmp_path, "resume", rid, "--answer", "approve")


@pytest.mark.parametrize("mangle, expect", [
    (lambda u: u.replace("@", "x@", 1), "password authentication failed"),
    (lambda u: u.rsplit("/", 1)[0] + "/no_such_database", 'database "no_such_database" does not exist'),
])
def test_connection_errors_are_one_line_and_exit_1(tmp_path: Path, mangle: Any, expect: str) -> None:
    bad = mangle(PG_URL)
    out = cli(bad, tmp_path, "runs", check=False)
    assert out.returncode == 1, out
    lines: List[str] = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], out.stderr
    password = PG_URL.split("@", 1)[0].rsplit(":", 1)[1]
    assert password not in out.stderr and "Traceback" not in out.stderr
