"""Every example workflow in ``workflows/``, driven to completion through the CLI.

These are the programs the README walks through; each test follows the path a person
would take in the shell (``start``, ``resume``, ``emit``, ``tick --all``, ``ledger``).
``ABSTRACTRT_WORKFLOWS`` points at the repository's own ``workflows/`` directory.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from cli_helpers import Result, empty_config, invoked
from typer.testing import CliRunner

from abstractrt_cli.core.timeutil import parse_timestamp

EXAMPLES = Path(__file__).resolve().parent.parent / "workflows"


class CLI:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        for k in list(os.environ):
            if k.startswith("ABSTRACTRT_"):
                monkeypatch.delenv(k)
        for k, v in {"ABSTRACTRT_DATA_DIR": str(tmp / "data"),
                     "ABSTRACTRT_WORKFLOWS": str(EXAMPLES),
                     "ABSTRACTRT_CONFIG": empty_config(tmp),
                     "ABSTRACTRT_ACTOR": "tester", "NO_COLOR": "1", "COLUMNS": "200"}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp)  # relative paths (result.json) resolve here
        self.runner = CliRunner()

    def __call__(self, *args: str, input: Optional[str] = None) -> Result:
        from abstractrt_cli.cli.app import app

        r = invoked(list(args), self.runner.invoke(app, list(args), input=input))
        assert r.exception is None, r.output
        assert "Traceback" not in r.stdout + r.stderr, r.output
        return r

    def ok(self, *args: str, input: Optional[str] = None) -> Result:
        r = self(*args, input=input)
        assert r.exit_code == 0, r.output
        return r

    def start(self, workflow: str, *sets: str) -> Dict[str, Any]:
        args = [a for s in sets for a in ("--set", s)]
        return self.ok("start", workflow, *args, "--json").json()

    def show(self, run_id: str) -> Dict[str, Any]:
        return self.ok("show", run_id, "--json").json()

    def ledger(self, run_id: str) -> List[Dict[str, Any]]:
        return self.ok("ledger", run_id, "--json").json()

    def verify(self, run_id: str) -> None:
        r = self.ok("ledger", run_id, "--verify")
        assert "chain intact" in r.stdout, r.output


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CLI:
    return CLI(tmp_path, monkeypatch)


def test_examples_are_listed_with_descriptions(cli):
    items = cli.ok("workflows", "--json").json()
    by_id = {it["workflow_id"]: it for it in items}
    assert set(by_id) == {"approval", "reminder", "deploy_gate", "onboarding",
                          "onboarding_account", "onboarding_welcome", "onboarding_swag",
                          "tool_job", "flaky", "agent_loop", "expense_deadline"}
    for wid, it in by_id.items():
        assert it["error"] is None, it
        assert (it["description"] or "").strip(), f"{wid} has no module docstring"
        assert Path(it["source"]).parent == EXAMPLES.resolve()
    assert by_id["tool_job"]["effect_handlers"] == ["tool_calls"]
    assert by_id["flaky"]["effect_handlers"] == ["fetch_quote"]
    human = cli.ok("workflows")
    assert "approval" in human.stdout and "Expense approval" in human.stdout


# ---------------------------------------------------------------------------- approval


@pytest.mark.parametrize("verdict, approved", [("approve", True), ("reject", False)])
def test_approval(cli, verdict, approved):
    shown = cli.ok("start", "approval", "--set", "title=New laptop", "--set", "amount=1450")
    assert "Approve expense 'New laptop' for 1450 EUR?" in shown.stdout
    assert "1) approve" in shown.stdout and "2) reject" in shown.stdout
    rid = shown.stderr.split("started run ")[1].split()[0]
    assert f"abstractrt resume {rid} --answer approve" in shown.stdout

    run = cli.show(rid)
    assert run["status"] == "waiting" and run["current_node"] == "decide"
    w = run["waiting"]
    assert (w["reason"], w["wait_key"], w["choices"], w["allow_free_text"]) == (
        "user", f"approval:{rid}", ["approve", "reject"], False)

    after = cli.ok("resume", rid, "--answer", verdict, "--wait-key", f"approval:{rid}",
                   "--json").json()
    assert after["status"] == "waiting"
    assert after["waiting"]["prompt"] == f"Reason for '{verdict}' (free text, kept in the ledger)?"
    assert after["waiting"]["choices"] is None and after["waiting"]["allow_free_text"] is True

    done = cli.ok("resume", rid[:8], "--answer", "see ticket #42", "--json").json()
    assert done["status"] == "completed"
    assert done["output"] == {"title": "New laptop", "amount": 1450, "approved": approved,
                              "reason": "see ticket #42"}
    payloads = [r["result"]["payload"] for r in cli.ledger(rid) if r.get("kind") == "resume"]
    assert payloads == [{"response": verdict}, {"response": "see ticket #42"}]
    cli.verify(rid)


def test_approval_refuses_an_answer_that_is_not_a_choice(cli):
    rid = cli.start("approval")["run_id"]
    before = (cli.show(rid), cli.ledger(rid))
    r = cli("resume", rid, "--answer", "maybe")
    assert r.exit_code == 1, r.output
    assert "must be one of 'approve', 'reject'" in r.stderr
    assert (cli.show(rid), cli.ledger(rid)) == before


def test_approval_defaults(cli):
    run = cli.start("approval")
    assert run["waiting"]["prompt"] == "Approve expense 'Team offsite catering' for 250 EUR?"


# ---------------------------------------------------------------------------- reminder


def _sleep_past(iso: str) -> None:
    delay = (parse_timestamp(iso) - datetime.now(timezone.utc)).total_seconds()
    time.sleep(max(0.0, delay) + 0.05)


def test_reminder_fires_after_the_delay_and_snoozes(cli):
    run = cli.start("reminder", "delay=1s", "task=stretch")
    rid = run["run_id"]
    assert run["status"] == "waiting" and run["waiting"]["reason"] == "until"
    assert run["waiting"]["until"] == parse_timestamp(run["vars"]["remind_at"]).isoformat()

    # Not yet due: cron's `tick --all --quiet` moves nothing and prints nothing.
    quiet = cli.ok("tick", "--all", "--quiet")
    assert quiet.stdout == "", quiet.output
    assert cli.show(rid)["waiting"]["reason"] == "until"

    _sleep_past(run["waiting"]["until"])
    r = cli.ok("tick", "--all")
    assert "1 moved" in r.stdout and "1 waiting" in r.stdout, r.output
    asked = cli.show(rid)
    assert asked["waiting"]["prompt"] == "Reminder: stretch. Done?"
    assert asked["waiting"]["choices"] == ["done", "snooze"]

    # Snooze once: back to sleep for another delay, then asked again.
    snoozed = cli.ok("resume", rid, "--answer", "snooze", "--json").json()
    assert snoozed["waiting"]["reason"] == "until" and snoozed["vars"]["snoozes"] == 1
    assert parse_timestamp(snoozed["waiting"]["until"]) > parse_timestamp(run["waiting"]["until"])
    _sleep_past(snoozed["waiting"]["until"])
    cli.ok("tick", "--all", "--quiet")
    assert cli.show(rid)["waiting"]["prompt"] == "Reminder: stretch. Done?"

    done = cli.ok("resume", rid, "--answer", "done", "--json").json()
    assert done["status"] == "completed"
    assert done["output"] == {"task": "stretch", "done": True, "snoozes": 1}
    timer_resumes = [r for r in cli.ledger(rid)
                     if r.get("kind") == "resume" and r["result"]["source"] == "timer"]
    assert len(timer_resumes) == 2
    cli.verify(rid)


def test_reminder_delay_as_a_number_of_seconds_and_snooze_limit(cli):
    # delay=0 is already due: the wait completes at once and the question is asked.
    run = cli.start("reminder", "delay=0", "max_snoozes=0", "task=call mum")
    assert run["waiting"]["prompt"] == "Reminder: call mum. Done?"
    done = cli.ok("resume", run["run_id"], "--answer", "snooze", "--json").json()
    # No snoozes left: the reminder ends, not done.
    assert done["output"] == {"task": "call mum", "done": False, "snoozes": 0}

    later = cli.start("reminder", "delay=90")
    due = parse_timestamp(later["waiting"]["until"]) - parse_timestamp(later["created_at"])
    assert 89 <= due.total_seconds() <= 95


def test_reminder_with_a_bad_delay_fails_clearly(cli):
    r = cli("start", "reminder", "--set", "delay=soon", "--json")
    assert r.exit_code == 3, r.output
    assert "not a duration: 'soon'" in r.json()["error"]


# ---------------------------------------------------------------------------- deploy_gate


def test_deploy_gate_one_event_resumes_every_run_on_the_key(cli):
    a = cli.start("deploy_gate")["run_id"]
    b = cli.start("deploy_gate", "service=web", "version=1.0.0")["run_id"]
    other = cli.start("deploy_gate", "version=2.0.0")["run_id"]
    for rid in (a, b):
        w = cli.show(rid)["waiting"]
        assert (w["reason"], w["wait_key"]) == ("event", "ci:web:1.0.0")
    listed = cli.ok("waiting", "--reason", "event").stdout
    assert "abstractrt emit ci:web:1.0.0" in listed

    r = cli.ok("emit", "ci:web:1.0.0", "--set", "status=green")
    assert "emitted 'ci:web:1.0.0' to 2 runs" in r.stdout, r.output
    for rid in (a, b):
        out = cli.show(rid)["output"]
        assert out == {"service": "web", "version": "1.0.0", "deployed": True,
                       "ci": {"status": "green"}}
        cli.verify(rid)
    assert cli.show(other)["status"] == "waiting"

    again = cli("emit", "ci:web:1.0.0", "--set", "status=green")
    # No run waits on the key any more: the event is kept for later waiters (PRODUCT §8), exit 0.
    assert again.exit_code == 0 and "to 0 runs" in again.stdout, again

    red = cli.ok("emit", "ci:web:2.0.0", "--set", "status=red", "--json").json()
    assert [x["output"]["deployed"] for x in red["delivered"]] == [False]


# ---------------------------------------------------------------------------- onboarding


def test_onboarding_parent_resumes_when_its_child_is_answered(cli):
    shown = cli.ok("start", "onboarding", "--set", "name=Grace Hopper")
    assert "Child asks:" in shown.stdout and "Write a welcome note for Grace Hopper" in shown.stdout
    pid = shown.stderr.split("started run ")[1].split()[0]

    parent = cli.show(pid)
    assert parent["status"] == "waiting" and parent["waiting"]["reason"] == "subworkflow"
    assert parent["vars"]["account"]["output"] == {"login": "grace.hopper"}
    kids = {c["workflow_id"]: c for c in parent["children"]}
    assert kids["onboarding_account"]["status"] == "completed"
    assert kids["onboarding_welcome"]["status"] == "waiting"
    child = kids["onboarding_welcome"]["run_id"]
    assert parent["waiting"]["details"]["sub_run_id"] == child
    assert cli.show(child)["waiting"]["prompt"] == "Write a welcome note for Grace Hopper"

    # Answer the child only: the parent carries on by itself and completes.
    cli.ok("resume", child, "--answer", "Welcome aboard, Grace!")
    parent = cli.show(pid)
    assert parent["status"] == "completed", parent
    swag = parent["output"]["swag_run"]
    assert parent["output"] == {"name": "Grace Hopper", "login": "grace.hopper",
                                "welcome_note": "Welcome aboard, Grace!", "swag_run": swag}
    resumed = [r for r in cli.ledger(pid) if r.get("kind") == "resume"]
    assert [r["result"]["source"] for r in resumed] == ["subworkflow"]

    # The async swag child was created but not driven: cron's tick --all does that.
    s = cli.show(swag)
    assert (s["status"], s["parent_run_id"], s["workflow_id"]) == (
        "running", pid, "onboarding_swag")
    r = cli.ok("tick", "--all")
    assert "1 moved (1 completed" in r.stdout, r.output
    assert cli.show(swag)["output"] == {"shipped_to": "Grace Hopper"}
    assert "0 moved" in cli.ok("tick", "--all").stdout
    for rid in (pid, child, swag):
        cli.verify(rid)


# ---------------------------------------------------------------------------- tool_job


def test_tool_job_handler_then_llm_job_answered_from_a_file(cli, tmp_path):
    run = cli.start("tool_job", "text=one two three four five")
    rid = run["run_id"]
    assert run["vars"]["tools"] == {"results": [{"name": "word_count", "output": 5}]}
    w = run["waiting"]
    assert w["reason"] == "job"
    assert w["details"]["effect_type"] == "llm_call"
    assert w["details"]["request"]["prompt"] == (
        "Summarise in one line (5 words): one two three four five")
    card = cli.ok("show", rid).stdout
    assert f"abstractrt resume {rid} --payload-file result.json" in card

    tool_records = [r for r in cli.ledger(rid)
                    if (r.get("effect") or {}).get("type") == "tool_calls"]
    assert [(r["status"], r["result"]) for r in tool_records] == [
        ("completed", {"results": [{"name": "word_count", "output": 5}]})]

    (tmp_path / "result.json").write_text(json.dumps({"content": "Counting to five."}))
    done = cli.ok("resume", rid, "--payload-file", "result.json", "--json").json()
    assert done["status"] == "completed"
    assert done["output"] == {"words": 5, "summary": "Counting to five."}
    cli.verify(rid)


def test_tool_job_llm_result_from_standard_input(cli):
    rid = cli.start("tool_job")["run_id"]
    result = '{"content": "Durable runs outlive crashes.", "usage": {"tokens": 12}}'
    done = cli.ok("resume", rid, "--payload-file", "-", "--json", input=result).json()
    assert done["output"] == {"words": 6, "summary": "Durable runs outlive crashes."}
    assert done["vars"]["llm"]["usage"] == {"tokens": 12}


def test_tool_job_refuses_a_result_that_is_not_an_object(cli, tmp_path):
    rid = cli.start("tool_job")["run_id"]
    before = (cli.show(rid), cli.ledger(rid))
    (tmp_path / "result.json").write_text('["not", "an", "object"]')
    r = cli("resume", rid, "--payload-file", "result.json")
    assert r.exit_code == 1, r.output
    assert "must be a JSON object" in r.stderr
    assert (cli.show(rid), cli.ledger(rid)) == before


# ---------------------------------------------------------------------------- flaky


def test_flaky_retries_and_completes(cli):
    run = cli.start("flaky")
    assert run["status"] == "completed", run
    assert run["output"] == {"symbol": "ACME", "price": 42.0, "attempts": 3}
    rid = run["run_id"]
    attempts = [(r["attempt"], r["status"], r["error"]) for r in cli.ledger(rid)
                if r.get("kind") == "effect" and r["node_id"] == "fetch"]
    assert attempts == [
        (1, "failed", "ConnectionError: quote service unavailable (attempt 1)"),
        (2, "failed", "ConnectionError: quote service unavailable (attempt 2)"),
        (3, "completed", None),
    ]
    keys = {r["idempotency_key"] for r in cli.ledger(rid) if r.get("kind") == "effect"}
    assert len(keys) == 1  # three attempts of one step
    human = cli.ok("ledger", rid).stdout
    assert "quote service unavailable (attempt 2)" in human
    cli.verify(rid)


def test_flaky_gives_up_after_max_attempts(cli):
    r = cli("start", "flaky", "--set", "fail_times=3", "--json")
    assert r.exit_code == 3, r.output  # the command worked; the run it drove failed
    run = r.json()
    assert run["status"] == "failed"
    assert "after 3 attempts" in run["error"] and "attempt 3" in run["error"]
