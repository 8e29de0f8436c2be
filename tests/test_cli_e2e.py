"""End to end: the installed ``abstractrt`` program run as real processes, in a temporary
data dir with an isolated environment, the way people and cron use it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from cli_helpers import CLI, abstractrt_command

from abstractrt_cli.core.timeutil import parse_timestamp


@pytest.fixture
def world(tmp_path):
    # No monkeypatching here: each process gets the isolated environment explicitly.
    return CLI(tmp_path)


def ok(world, *args, input=None):
    r = world.run(*args, input=input)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.stderr, r.output
    return r


def test_the_installed_program_is_used():
    cmd = abstractrt_command()
    assert cmd[0].endswith("abstractrt") or cmd[-1] == "abstractrt_cli"


def test_python_dash_m_help(world):
    cp = subprocess.run(
        [sys.executable, "-m", "abstractrt_cli", "--help"],
        capture_output=True,
        text=True,
        env=world.env,
        timeout=60,
    )
    assert cp.returncode == 0, cp.stderr
    for name in ("start", "tick", "resume", "waiting", "ledger"):
        assert name in cp.stdout
    r = ok(world, "--help")
    assert "Durable workflow runner" in r.stdout


def test_approval_from_start_to_completion(world):
    r = ok(world, "start", "approval", "--set", "title=New laptop", "--set", "amount=1450")
    rid = r.stderr.split("started run ", 1)[1].split()[0]
    assert "Approve expense 'New laptop' for 1450 EUR?" in r.stdout

    # `waiting` shows the prompt and the exact command that answers it.
    w = ok(world, "waiting")
    assert "1) approve" in w.stdout and "2) reject" in w.stdout
    cmd = next(ln for ln in w.stdout.splitlines() if "→" in ln).split("→", 1)[1].strip()
    assert cmd == f"abstractrt resume {rid} --answer approve"
    argv = shlex.split(cmd)
    r = ok(world, *argv[1:])  # run the printed command as printed
    assert "Reason for 'approve'" in r.stdout

    # The second prompt takes free text; a prefix names the run.
    r = ok(world, "resume", rid[:8], "--answer", "maybe")
    assert "completed" in r.stdout
    run = json.loads(ok(world, "show", rid, "--json").stdout)
    assert run["status"] == "completed"
    assert run["output"] == {
        "title": "New laptop",
        "amount": 1450,
        "approved": True,
        "reason": "maybe",
    }

    w = ok(world, "waiting")
    assert w.stdout.strip().startswith("no waiting runs in ")
    v = ok(world, "ledger", rid[:8], "--verify")
    assert v.stdout.strip() == (f"ledger of run {rid} verified: 6 records, chain intact; "
                                "checkpointed state proved; unsigned")
    timeline = ok(world, "ledger", rid).stdout
    assert 'by tester: {"response":"approve"}' in timeline
    assert 'by tester: {"response":"maybe"}' in timeline
    runs = json.loads(ok(world, "runs", "--json").stdout)
    assert [r["run_id"] for r in runs] == [rid]


def test_approval_refuses_an_invalid_choice(world):
    run = json.loads(ok(world, "start", "approval", "--json").stdout)
    rid = run["run_id"]
    before = world.snapshot()
    r = world.run("resume", rid, "--answer", "maybe")
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: invalid answer 'maybe'") and r.stderr.count("\n") == 1
    assert world.snapshot() == before
    r = ok(world, "resume", rid, "--answer", "reject", "--json")
    assert json.loads(r.stdout)["current_node"] == "reason"
    r = ok(world, "resume", rid, "--payload-file", "-", "--json", input="response: over budget\n")
    out = json.loads(r.stdout)
    assert out["status"] == "completed" and out["output"]["approved"] is False
    assert out["output"]["reason"] == "over budget"


def test_timer_driven_by_tick_all(world):
    r = ok(world, "start", "reminder", "--set", "delay=3s", "--set", "task=stretch", "--json")
    run = json.loads(r.stdout)
    rid = run["run_id"]
    assert run["status"] == "waiting" and run["waiting"]["reason"] == "until"
    due = parse_timestamp(run["waiting"]["until"])

    # Before the time: nothing due, and cron's --quiet prints nothing at all.
    before = world.snapshot()
    first = world.run("tick", "--all", "--quiet")
    assert first.exit_code == 0 and first.stdout == "" and first.stderr == "", first.output
    assert world.snapshot() == before
    assert datetime.now(timezone.utc) < due, "the machine is too slow for a 2s timer test"

    time.sleep(max(0.0, (due - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    second = ok(world, "tick", "--all", "--quiet")
    assert second.stdout.strip() == (
        "tick --all: 1 moved (0 completed, 1 waiting, 0 failed, 0 still running), 0 skipped busy"
    ), second.output
    st = json.loads(ok(world, "show", rid, "--json").stdout)
    assert st["waiting"]["reason"] == "user"
    assert st["waiting"]["prompt"] == "Reminder: stretch. Done?"
    assert st["vars"]["woke"]["ready"] is True

    third = world.run("tick", "--all", "--quiet")
    assert third.exit_code == 0 and third.stdout == ""
    final = json.loads(ok(world, "resume", rid, "--answer", "done", "--json").stdout)
    assert final["status"] == "completed"
    assert final["output"] == {"task": "stretch", "done": True, "snoozes": 0}
    ok(world, "ledger", rid, "--verify")


def test_event_emitted_to_several_deploy_gates(world):
    ids = [
        json.loads(ok(world, "start", "deploy_gate", "--set", "version=2.1.0", "--json").stdout)[
            "run_id"
        ]
        for _ in range(3)
    ]
    other = json.loads(ok(world, "start", "deploy_gate", "--json").stdout)["run_id"]
    w = json.loads(ok(world, "waiting", "--reason", "event", "--json").stdout)
    assert sorted(x["run_id"] for x in w) == sorted(ids + [other])

    r = ok(world, "emit", "ci:web:2.1.0", "--set", "status=green", "--set", "build=77")
    assert r.stdout.splitlines()[0] == "emitted 'ci:web:2.1.0' to 3 runs"
    for rid in ids:
        st = json.loads(ok(world, "show", rid, "--json").stdout)
        assert st["status"] == "completed"
        assert st["output"] == {
            "service": "web",
            "version": "2.1.0",
            "deployed": True,
            "ci": {"status": "green", "build": 77},
        }
        ok(world, "ledger", rid, "--verify")
    st = json.loads(ok(world, "show", other, "--json").stdout)
    assert st["status"] == "waiting"

    # Nobody waits on the key any more: no error; the event is kept for a later waiter.
    again = ok(world, "emit", "ci:web:2.1.0", "--set", "status=green")
    assert again.stdout.splitlines()[0] == "emitted 'ci:web:2.1.0' to 0 runs"
    assert again.stdout.splitlines()[1].startswith("kept as event ")


def test_json_errors_and_usage_exit_codes(world):
    r = world.run("show", "nosuchrun", "--json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"] == {
        "code": "run_not_found", "exit": 1, "message": "no such run: nosuchrun",
        "hint": "list runs with `abstractrt runs`"}
    assert r.stderr.startswith("error: no such run: nosuchrun")
    r = world.run("tick")
    assert r.exit_code == 2 and "give a RUN or --all" in r.stderr
    r = world.run("runs", "--limit", "zero")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
