"""``workflows/expense_deadline.py`` driven to completion through the installed command:
a deadline that escalates, a schema for the answer, and who may answer (PRODUCT §8).
"""

from __future__ import annotations

import pytest
from cli_helpers import CLI, unchanged
from test_waits_helpers import as_actor, resumes, run_json, run_ok, sleep_past


@pytest.fixture
def cli(tmp_path):
    return CLI(tmp_path)


def start(cli, *sets):
    args = [a for s in sets for a in ("--set", s)]
    return run_json(cli, "start", "expense_deadline", "--set", "title=Laptop", "--set",
                    "amount=1450", "--set", 'approvers=["alice"]', "--set",
                    'escalate_to=["carol"]', *args, env=as_actor(cli, "sam"))


def test_no_answer_by_the_deadline_escalates_and_the_escalation_decides(cli, tmp_path):
    run = start(cli, "timeout=2s")
    rid = run["run_id"]
    w = run["waiting"]
    assert w["allowed_actors"] == ["alice"] and w["on_timeout"] == {"goto": "escalate"}
    assert w["schema"]["required"] == ["decision"] and w["remind_every"] == "1d"
    card = run_ok(cli, "waiting").stdout
    assert "Approve expense 'Laptop' for 1450 EUR?" in card
    assert "Then:           escalates: goes on at node 'escalate'" in card
    assert "Who may answer: alice" in card
    assert "decision (one of approve/reject, required)" in card

    # Not alice: refused. Alice, but not an answer the schema takes: refused. Nothing changes.
    with unchanged(cli):
        r = cli.run("resume", rid, "--set", "decision=approve", env=as_actor(cli, "mallory"))
        assert r.exit_code == 1 and "only alice may" in r.stderr, r.output
        r = cli.run("resume", rid, "--set", "decision=maybe", env=as_actor(cli, "alice"))
        assert r.exit_code == 1 and "at $.decision" in r.stderr, r.output

    # Alice does not answer in time; the next tick takes the escalation path.
    sleep_past(w["deadline"])
    assert run_json(cli, "tick", "--all", "--dry-run") == [{"run_id": rid, "reason": "deadline due"}]
    summary = run_json(cli, "tick", "--all")
    assert summary["moved"] == 1 and summary["waiting"] == 1
    esc = run_json(cli, "show", rid)
    assert esc["current_node"] == "escalate" and esc["vars"]["escalated"] is True
    assert esc["waiting"]["prompt"].startswith("Escalated (no answer from alice by the deadline)")
    assert esc["waiting"]["allowed_actors"] == ["carol"]

    # Alice is too late now; carol decides, from an answers file.
    with unchanged(cli):
        r = cli.run("resume", rid, "--set", "decision=approve", env=as_actor(cli, "alice"))
        assert r.exit_code == 1 and "only carol may" in r.stderr, r.output
    rules = tmp_path / "carol.yaml"
    rules.write_text('- prompt: "Escalated"\n  payload: {decision: approve, comment: "over budget, ok"}\n')
    plan = run_json(cli, "answer", "--script", str(rules), "--dry-run", env=as_actor(cli, "carol"))
    assert plan == [{"run_id": rid, "prompt": esc["waiting"]["prompt"], "rule": 1,
                     "payload": {"decision": "approve", "comment": "over budget, ok"}}]
    run_ok(cli, "answer", "--script", str(rules), env=as_actor(cli, "carol"))

    done = run_json(cli, "show", rid)
    assert done["status"] == "completed"
    assert done["output"] == {"title": "Laptop", "amount": 1450, "approved": True,
                              "comment": "over budget, ok", "escalated": True}
    assert [(r["actor_id"], r["result"]["source"]) for r in resumes(cli, rid)] == [
        ("deadline", "deadline"), ("carol", "resume")]
    run_ok(cli, "ledger", rid, "--verify")


def test_an_approver_answering_in_time_decides_without_escalation(cli):
    rid = start(cli)["run_id"]  # the default deadline: two days
    run = run_json(cli, "resume", rid, "--set", "decision=reject", env=as_actor(cli, "alice"))
    assert run["output"] == {"title": "Laptop", "amount": 1450, "approved": False,
                             "comment": "", "escalated": False}  # the comment's default
    assert [r["actor_id"] for r in resumes(cli, rid)] == ["alice"]


def test_nobody_answering_at_all_rejects_the_claim(cli):
    past = "2020-01-01T00:00:00Z"
    rid = start(cli, f"timeout={past}", f"escalation_timeout={past}")["run_id"]
    assert run_json(cli, "tick", "--all")["waiting"] == 1  # escalated
    assert run_json(cli, "tick", "--all")["completed"] == 1  # and its deadline passed too
    out = run_json(cli, "show", rid)["output"]
    assert out["approved"] is False and out["escalated"] is True
    assert out["comment"] == "no answer by the escalation deadline"
    assert [r["actor_id"] for r in resumes(cli, rid)] == ["deadline", "deadline"]
