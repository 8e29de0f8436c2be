"""The command line, in-process with CliRunner: every command and option of PRODUCT.md §4
(except interactive ``answer``), plain and ``--json`` output, exit codes, run prefixes.

Error paths live in ``test_cli_errors.py``; real processes in ``test_cli_e2e.py``.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime, timedelta, timezone

import pytest
from cli_helpers import (
    CLI,
    FAILING_WORKFLOW,
    TIMER_WORKFLOW,
    assert_one_line_error,
    hold_lock,
    unchanged,
)

from abstractrt_cli.storage.chain import verify_ledger_chain


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """An isolated abstractrt world with the example workflows (see cli_helpers.CLI)."""
    return CLI(tmp_path, monkeypatch)


def approval_waiting(cli, *args):
    run = cli.start("approval", *args)
    assert run["status"] == "waiting", run
    return run


# ---------------------------------------------------------------------------- help


COMMANDS = [
    "workflows",
    "start",
    "tick",
    "resume",
    "answer",
    "emit",
    "events",
    "waiting",
    "runs",
    "show",
    "ledger",
    "logs",
    "cancel",
    "limits",
    "retry",
    "snapshot",
    "snapshots",
    "fork",
    "artifacts",
    "artifact",
    "export",
    "import",
    "prune",
    "pruned",
    "worker",
    "doctor",
    "store",
    "reindex",
    "config",
    "key",
]


def test_every_command_is_registered_and_documented(cli):
    from abstractrt_cli.cli.app import COMMAND_INFOS

    names = sorted(c.name for c in COMMAND_INFOS)
    assert names == sorted(COMMANDS)
    for c in COMMAND_INFOS:
        doc = (c.callback.__doc__ or "").strip()
        first = doc.splitlines()[0] if doc else ""
        assert first and first.endswith("."), f"{c.name}: no one-line description"
        assert "Example:" in doc and "abstractrt " in doc.split("Example:", 1)[1], c.name


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_description_and_example(cli, command):
    from abstractrt_cli.cli.app import COMMAND_INFOS

    doc = next(c.callback.__doc__ for c in COMMAND_INFOS if c.name == command)
    first_line = doc.strip().splitlines()[0]
    r = cli.ok(command, "--help")
    flat = " ".join(r.stdout.replace("│", " ").split())
    assert " ".join(first_line.split()) in flat, r.output
    assert "Example:" in r.stdout, r.output
    assert "Traceback" not in r.output


def test_top_level_help_lists_commands(cli):
    r = cli.ok("--help")
    for name in COMMANDS:
        assert name in r.stdout
    assert cli("-h").exit_code == 0


def test_option_help_keeps_env_var_names(cli):
    # Rich markup must not swallow "[env: …]" in an option's help.
    r = cli.ok("runs", "--help")
    assert "ABSTRACTRT_DATA_DIR" in r.stdout, r.output
    assert "ABSTRACTRT_WORKFLOWS" in r.stdout, r.output


def test_no_arguments_shows_help(cli):
    r = cli()
    assert r.exit_code in (0, 2), r.output
    assert "Usage" in r.stdout + r.stderr


# ---------------------------------------------------------------------------- workflows


EXAMPLE_IDS = {
    "agent_loop",
    "approval",
    "deploy_gate",
    "expense_deadline",
    "flaky",
    "onboarding",
    "onboarding_account",
    "onboarding_swag",
    "onboarding_welcome",
    "reminder",
    "tool_job",
}


def test_workflows_plain(cli):
    r = cli.ok("workflows")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["WORKFLOW", "ENTRY", "NODES", "SOURCE", "DESCRIPTION"]
    for wid in EXAMPLE_IDS:
        assert re.search(rf"^{wid}\s", r.stdout, re.M), r.output
    row = next(ln for ln in lines if ln.startswith("approval "))
    assert "submit, decide, reason, done" in row
    assert "approval.py" in row
    assert "Expense approval: a manager approves or rejects" in row
    assert r.stderr == ""


def test_workflows_json(cli):
    items = cli.ok("workflows", "--json").json()
    by_id = {it["workflow_id"]: it for it in items}
    assert set(by_id) == EXAMPLE_IDS
    a = by_id["approval"]
    assert a["entry_node"] == "submit"
    assert a["nodes"] == ["submit", "decide", "reason", "done"]
    assert a["source"].endswith("approval.py")
    assert a["description"].startswith("Expense approval")
    assert a["error"] is None
    assert by_id["tool_job"]["effect_handlers"] == ["tool_calls"]


def test_workflows_broken_file_listed_with_error_others_still_listed(cli):
    cli.write_workflow("broken.py", "import nonexistent_module_xyz\n")
    cli.write_workflow("_private.py", "raise SystemExit('never imported')\n")
    r = cli("workflows")
    assert r.exit_code == 1, r.output
    for wid in EXAMPLE_IDS:
        assert wid in r.stdout
    broken = next(ln for ln in r.stdout.splitlines() if "broken.py" in ln)
    assert broken.startswith("BROKEN")
    assert "ModuleNotFoundError" in broken and "nonexistent_module_xyz" in broken
    assert "_private" not in r.stdout
    assert "broken.py" in r.stderr and "nonexistent_module_xyz" in r.stderr
    assert "Traceback" not in r.output

    items = cli("workflows", "--json")
    assert items.exit_code == 1
    docs = items.json()
    bad = [d for d in docs if d["error"]]
    assert len(bad) == 1 and bad[0]["source"].endswith("broken.py")
    assert bad[0]["workflow_id"] is None
    assert "nonexistent_module_xyz" in bad[0]["error"]
    assert {d["workflow_id"] for d in docs if not d["error"]} == EXAMPLE_IDS


def test_workflows_empty_directory(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli.ok("workflows", "--workflows", str(empty))
    assert "no workflows in" in r.stdout
    assert cli.ok("workflows", "--workflows", str(empty), "--json").json() == []


def test_options_before_the_command_name(cli, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "timer.py").write_text(TIMER_WORKFLOW)
    items = cli.ok("--json", "--workflows", str(other), "workflows").json()
    assert [i["workflow_id"] for i in items] == ["timer"]
    data2 = tmp_path / "data2"
    run = cli.ok("--data-dir", str(data2), "start", "approval", "--json").json()
    assert (
        cli.ok("--data-dir", str(data2), "show", run["run_id"], "--json").json()["run_id"]
        == run["run_id"]
    )
    assert cli("show", run["run_id"]).exit_code == 1  # not in the default (env) data dir


# ---------------------------------------------------------------------------- start


def test_start_plain_shows_id_and_prompt(cli):
    r = cli.ok("start", "approval", "--set", "amount=120", "--set", "title=New laptop")
    m = re.search(r"started run ([0-9a-f-]{36})", r.stderr)
    assert m, r.output
    rid = m.group(1)
    assert f"Run:           {rid}" in r.stdout or rid in r.stdout
    assert "Approve expense 'New laptop' for 120 EUR?" in r.stdout
    assert "1) approve" in r.stdout and "2) reject" in r.stdout
    assert f"abstractrt resume {rid} --answer approve" in r.stdout


def test_start_json_is_the_run_state(cli):
    r = cli.ok("start", "approval", "--json")
    run = r.json()
    for key in (
        "run_id",
        "workflow_id",
        "status",
        "current_node",
        "vars",
        "waiting",
        "output",
        "error",
        "created_at",
        "updated_at",
        "actor_id",
        "session_id",
        "parent_run_id",
    ):
        assert key in run
    assert run["workflow_id"] == "approval"
    assert run["status"] == "waiting"
    assert run["current_node"] == "decide"
    assert run["actor_id"] == "tester"
    w = run["waiting"]
    assert w["reason"] == "user"
    assert w["choices"] == ["approve", "reject"]
    assert w["allow_free_text"] is False
    assert w["wait_key"] == f"approval:{run['run_id']}"
    assert "started run" not in r.stdout


def test_start_set_values_parsed_as_json_and_nested(cli):
    run = cli.start(
        "approval",
        "--set",
        "amount=120",
        "--set",
        "title=New laptop",
        "--set",
        'meta.tags=["a","b"]',
        "--set",
        "meta.urgent=true",
        "--set",
        "note=01",
    )
    v = run["vars"]
    assert v["amount"] == 120 and v["title"] == "New laptop"
    assert v["meta"] == {"tags": ["a", "b"], "urgent": True}
    assert v["note"] == "01"  # not JSON: stays a string


def test_start_vars_inline_json(cli):
    run = cli.start("approval", "--vars", '{"title": "Desk", "amount": 300, "currency": "USD"}')
    assert run["waiting"]["prompt"] == "Approve expense 'Desk' for 300 USD?"


def test_start_vars_then_set_override(cli):
    run = cli.start("approval", "--vars", '{"title": "Desk", "amount": 300}', "--set", "amount=5")
    assert run["vars"]["amount"] == 5 and run["vars"]["title"] == "Desk"


def test_start_vars_file_json(cli, tmp_path):
    f = tmp_path / "vars.json"
    f.write_text(json.dumps({"title": "Chair", "amount": 99.5}))
    run = cli.start("approval", "--vars-file", str(f))
    assert run["vars"]["title"] == "Chair" and run["vars"]["amount"] == 99.5


def test_start_vars_file_yaml(cli, tmp_path):
    f = tmp_path / "vars.yaml"
    f.write_text("title: Monitor\namount: 180\ncurrency: GBP\nflag: yes\n")
    run = cli.start("approval", "--vars-file", str(f))
    assert run["waiting"]["prompt"] == "Approve expense 'Monitor' for 180 GBP?"
    assert run["vars"]["flag"] == "yes"  # YAML 1.2: yes is a string


def test_start_vars_file_stdin(cli):
    r = cli.ok(
        "start", "approval", "--vars-file", "-", "--json", input='{"title": "Lamp", "amount": 20}'
    )
    assert r.json()["vars"]["title"] == "Lamp"
    r = cli.ok("start", "approval", "--vars-file", "-", "--json", input="title: Rug\namount: 7\n")
    assert r.json()["vars"]["title"] == "Rug"


def test_start_no_tick(cli):
    run = cli.start("approval", "--no-tick")
    assert run["status"] == "running"
    assert run["current_node"] == "submit"
    assert run["waiting"] is None
    assert run["vars"]["_limits"]["max_iterations"] == 25
    # Only the start record: who started it, with which vars, from which workflow code.
    [rec] = cli.ok("ledger", run["run_id"], "--json").json()
    assert rec["kind"] == "start" and rec["actor_id"] == "tester"


def test_start_max_steps(cli):
    run = cli.start("approval", "--max-steps", "1")
    # One step: the pure `submit` node ran, `decide` (the ask) did not.
    assert run["status"] == "running"
    assert run["current_node"] == "decide"
    assert run["vars"]["title"] == "Team offsite catering"
    after = cli.ok("tick", run["run_id"], "--json").json()
    assert after["status"] == "waiting" and after["current_node"] == "decide"


def test_start_completes_and_failed_run_exits_3(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    r = cli("start", "failing", "--json")
    assert r.exit_code == 3, r.output
    run = r.json()
    assert run["status"] == "failed"
    assert "kaboom" in run["error"]
    r = cli("start", "failing")
    assert r.exit_code == 3
    assert "failed" in r.stdout and "kaboom" in r.stdout

    done = cli.start("onboarding_account", "--set", "name=Grace Hopper")
    assert done["status"] == "completed"
    assert done["output"] == {"login": "grace.hopper"}


def test_start_with_answers_file(cli, tmp_path):
    f = tmp_path / "answers.yaml"
    f.write_text(
        '- prompt: "Approve expense"\n  answer: approve\n'
        '- prompt_regex: "^Reason for"\n  answer: "budget ok"\n'
    )
    r = cli.ok("start", "approval", "--answers", str(f), "--json")
    run = r.json()
    assert run["status"] == "completed"
    assert run["output"]["approved"] is True and run["output"]["reason"] == "budget ok"
    r = cli.ok("start", "approval", "--answers", str(f))
    assert "answered 2 prompts" in r.stdout


# ---------------------------------------------------------------------------- tick


def test_tick_one_run(cli):
    run = cli.start("approval", "--no-tick")
    r = cli.ok("tick", run["run_id"])
    assert "Approve expense" in r.stdout
    assert cli.state(run["run_id"])["status"] == "waiting"
    # Ticking a waiting (user) run does nothing and says where it stands.
    again = cli.ok("tick", run["run_id"], "--json").json()
    assert again["status"] == "waiting"
    assert again["updated_at"] == cli.state(run["run_id"])["updated_at"]


def test_tick_max_steps(cli):
    run = cli.start("approval", "--no-tick")
    after = cli.ok("tick", run["run_id"], "--max-steps", "1", "--json").json()
    assert after["status"] == "running" and after["current_node"] == "decide"


def test_tick_terminal_run_is_left_alone(cli):
    run = cli.start("onboarding_account", "--set", "name=Ada")
    with unchanged(cli):
        r = cli.ok("tick", run["run_id"])
    assert "completed; nothing to do" in r.stderr
    assert "completed" in r.stdout


def test_tick_failed_run_exits_3(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    run = cli.start("failing", "--no-tick")
    r = cli("tick", run["run_id"], "--json")
    assert r.exit_code == 3, r.output
    assert r.json()["status"] == "failed"


def test_tick_all_moves_running_runs_and_prints_summary(cli):
    a = cli.start("approval", "--no-tick")
    b = cli.start("deploy_gate", "--no-tick")
    c = cli.start("onboarding_account", "--no-tick", "--set", "name=Ada")
    waiting = cli.start("approval")
    r = cli.ok("tick", "--all")
    assert r.stdout.strip() == (
        "tick --all: 3 moved (1 completed, 2 waiting, 0 failed, 0 still running), 0 skipped busy"
    ), r.output
    assert r.stdout.count("\n") == 1
    assert cli.state(a["run_id"])["status"] == "waiting"
    assert cli.state(b["run_id"])["waiting"]["wait_key"] == "ci:web:1.0.0"
    assert cli.state(c["run_id"])["status"] == "completed"
    assert cli.state(waiting["run_id"])["updated_at"] == waiting["updated_at"]


def test_tick_all_quiet_prints_nothing_when_nothing_moved(cli):
    cli.start("approval")  # waiting on a person: nothing for tick --all to do
    with unchanged(cli):
        r = cli.ok("tick", "--all", "--quiet")
    assert r.stdout == "" and r.stderr == ""
    r = cli.ok("tick", "--all", "-q")
    assert r.stdout == "" and r.stderr == ""
    # Without --quiet the summary line is printed even when nothing moved.
    r = cli.ok("tick", "--all")
    assert r.stdout.startswith("tick --all: 0 moved")


def test_tick_all_quiet_prints_summary_when_something_moved(cli):
    cli.start("approval", "--no-tick")
    r = cli.ok("tick", "--all", "--quiet")
    assert r.stdout.strip() == (
        "tick --all: 1 moved (0 completed, 1 waiting, 0 failed, 0 still running), 0 skipped busy"
    )


def test_tick_all_on_empty_data_dir(cli):
    r = cli.ok("tick", "--all", "--quiet")
    assert r.stdout == ""
    assert cli.ok("tick", "--all", "--json").json()["moved"] == 0


def test_tick_all_json(cli):
    a = cli.start("approval", "--no-tick")
    doc = cli.ok("tick", "--all", "--json").json()
    assert doc["considered"] == 1 and doc["moved"] == 1 and doc["waiting"] == 1
    assert doc["skipped_busy"] == 0 and doc["errors"] == []
    assert doc["runs"] == [{"run_id": a["run_id"], "status": "waiting"}]


def test_tick_all_due_timer(cli):
    cli.write_workflow("timer.py", TIMER_WORKFLOW)
    past = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    due = cli.start("timer", "--set", f"until={past}")
    later = cli.start("timer", "--set", f"until={future}")
    assert due["status"] == later["status"] == "waiting"
    assert due["waiting"]["reason"] == "until"
    import time

    time.sleep(
        max(0.0, (datetime.fromisoformat(past) - datetime.now(timezone.utc)).total_seconds()) + 0.05
    )
    r = cli.ok("tick", "--all")
    assert r.stdout.startswith("tick --all: 1 moved (1 completed"), r.output
    assert cli.state(due["run_id"])["output"]["woke"]["ready"] is True
    assert cli.state(later["run_id"])["status"] == "waiting"


def test_tick_all_failed_run_exits_3(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    cli.start("failing", "--no-tick")
    r = cli("tick", "--all")
    assert r.exit_code == 3, r.output
    assert "1 failed" in r.stdout


def test_tick_all_skips_a_run_held_by_another_process(cli):
    held = cli.start("approval", "--no-tick")
    free = cli.start("approval", "--no-tick")
    with hold_lock(cli.data_dir, held["run_id"]):
        r = cli.ok("tick", "--all")
        assert r.stdout.strip() == (
            "tick --all: 1 moved (0 completed, 1 waiting, 0 failed, "
            "0 still running), 1 skipped busy"
        ), r.output
        assert cli.state(held["run_id"])["status"] == "running"
        assert cli.state(free["run_id"])["status"] == "waiting"
        doc = cli.ok("tick", "--all", "--json").json()
        assert doc["skipped_busy"] == 1 and doc["moved"] == 0
    # Released: the next cron tick gets it.
    r = cli.ok("tick", "--all", "--quiet")
    assert "1 moved" in r.stdout
    assert cli.state(held["run_id"])["status"] == "waiting"


# ---------------------------------------------------------------------------- resume


def _finish_with(cli, rid, *args, input=None):
    r = cli.ok("resume", rid, *args, "--json", input=input)
    return r.json()


def test_resume_answer_twice_completes(cli):
    run = approval_waiting(cli, "--set", "title=Laptop", "--set", "amount=1450")
    rid = run["run_id"]
    r = cli.ok("resume", rid, "--answer", "approve")
    assert "Reason for 'approve'" in r.stdout
    r = cli.ok("resume", rid, "--answer", "within budget")
    assert "completed" in r.stdout and '"approved": true' in r.stdout
    final = cli.state(rid)
    assert final["status"] == "completed"
    assert final["output"] == {
        "title": "Laptop",
        "amount": 1450,
        "approved": True,
        "reason": "within budget",
    }
    assert final["vars"]["decision"] == {"response": "approve"}


def test_resume_inline_json_payload(cli):
    rid = approval_waiting(cli)["run_id"]
    after = _finish_with(cli, rid, "--payload", '{"response": "reject", "by": "cfo"}')
    assert after["vars"]["decision"] == {"response": "reject", "by": "cfo"}
    assert after["waiting"]["prompt"] == "Reason for 'reject' (free text, kept in the ledger)?"


def test_resume_payload_file_json(cli, tmp_path):
    rid = approval_waiting(cli)["run_id"]
    f = tmp_path / "p.json"
    f.write_text('{"response": "approve"}')
    assert _finish_with(cli, rid, "--payload-file", str(f))["current_node"] == "reason"


def test_resume_payload_file_yaml(cli, tmp_path):
    rid = approval_waiting(cli)["run_id"]
    f = tmp_path / "p.yaml"
    f.write_text("response: approve\nnote: |\n  two\n  lines\n")
    after = _finish_with(cli, rid, "--payload-file", str(f))
    assert after["vars"]["decision"] == {"response": "approve", "note": "two\nlines\n"}
    g = tmp_path / "reason.yml"
    g.write_text("response: yes\n")  # YAML 1.2: stays the string "yes"
    final = _finish_with(cli, rid, "--payload-file", str(g))
    assert final["output"]["reason"] == "yes"


def test_resume_payload_from_stdin(cli):
    rid = approval_waiting(cli)["run_id"]
    after = _finish_with(cli, rid, "--payload-file", "-", input='{"response": "approve"}')
    assert after["current_node"] == "reason"
    final = _finish_with(cli, rid, "--payload-file", "-", input="response: from yaml on stdin\n")
    assert final["output"]["reason"] == "from yaml on stdin"


def test_resume_set_pairs(cli):
    rid = approval_waiting(cli)["run_id"]
    after = _finish_with(cli, rid, "--set", "response=approve", "--set", "meta.ticket=42")
    assert after["vars"]["decision"] == {"response": "approve", "meta": {"ticket": 42}}


def test_resume_answer_with_set_merges(cli):
    rid = approval_waiting(cli)["run_id"]
    after = _finish_with(cli, rid, "--answer", "approve", "--set", "by=cfo")
    assert after["vars"]["decision"] == {"response": "approve", "by": "cfo"}


def test_resume_wait_key_right(cli):
    rid = approval_waiting(cli)["run_id"]
    after = _finish_with(cli, rid, "--answer", "approve", "--wait-key", f"approval:{rid}")
    assert after["current_node"] == "reason"


def test_resume_wait_key_wrong(cli):
    rid = approval_waiting(cli)["run_id"]
    with unchanged(cli):
        r = cli("resume", rid, "--answer", "approve", "--wait-key", "approval:other")
    assert_one_line_error(r, 1, rid, "'approval:other'", f"'approval:{rid}'")


def test_resume_records_who_and_what_in_the_ledger(cli):
    rid = approval_waiting(cli)["run_id"]
    cli.ok("resume", rid, "--answer", "approve")
    recs = cli.ok("ledger", rid, "--json").json()
    resume = [r for r in recs if r["kind"] == "resume"]
    assert len(resume) == 1
    assert resume[0]["actor_id"] == "tester"
    assert resume[0]["result"]["payload"] == {"response": "approve"}
    assert resume[0]["result"]["wait_key"] == f"approval:{rid}"


def test_resume_job_passthrough(cli, tmp_path):
    run = cli.start("tool_job")
    assert run["waiting"]["reason"] == "job"
    assert run["waiting"]["details"]["effect_type"] == "llm_call"
    f = tmp_path / "result.json"
    f.write_text('{"content": "Durable runs survive."}')
    after = _finish_with(cli, run["run_id"], "--payload-file", str(f))
    assert after["status"] == "completed"
    assert after["output"] == {"words": 6, "summary": "Durable runs survive."}


# ---------------------------------------------------------------------------- emit


def test_emit_resumes_every_run_waiting_on_the_key(cli):
    runs = [cli.start("deploy_gate") for _ in range(3)]
    other = cli.start("deploy_gate", "--set", "version=2.0.0")
    for run in runs:
        assert run["waiting"]["wait_key"] == "ci:web:1.0.0"
    r = cli.ok("emit", "ci:web:1.0.0", "--set", "status=green", "--set", "build=1234")
    assert r.stdout.splitlines()[0] == "emitted 'ci:web:1.0.0' to 3 runs"
    for run in runs:
        assert f"{run['run_id']}  deploy_gate  completed" in r.stdout
        st = cli.state(run["run_id"])
        assert st["output"]["deployed"] is True
        assert st["output"]["ci"] == {"status": "green", "build": 1234}
    assert cli.state(other["run_id"])["status"] == "waiting"
    # Nobody waits any more: no error (PRODUCT §8), and --no-keep keeps nothing either.
    with unchanged(cli):
        r = cli.ok("emit", "ci:web:1.0.0", "--set", "status=green", "--no-keep")
    assert r.stdout.splitlines() == ["emitted 'ci:web:1.0.0' to 0 runs", "not kept (--no-keep)"]


def test_emit_json_and_payload_options(cli, tmp_path):
    a = cli.start("deploy_gate", "--set", "service=api")
    b = cli.start("deploy_gate", "--set", "service=api")
    doc = cli.ok("emit", "ci:api:1.0.0", "--payload", '{"status": "red"}', "--json").json()
    assert set(doc) == {"event", "delivered", "busy"} and doc["busy"] == []
    docs = doc["delivered"]
    assert {d["run_id"] for d in docs} == {a["run_id"], b["run_id"]}
    assert all(d["output"]["deployed"] is False for d in docs)
    assert doc["event"]["key"] == "ci:api:1.0.0" and doc["event"]["payload"] == {"status": "red"}

    cli.start("deploy_gate", "--set", "service=db")
    f = tmp_path / "ev.yaml"
    f.write_text("status: green\n")
    docs = cli.ok("emit", "ci:db:1.0.0", "--payload-file", str(f), "--json").json()["delivered"]
    assert docs[0]["output"]["deployed"] is True


def test_emit_records_resume_in_each_ledger(cli):
    a = cli.start("deploy_gate")
    b = cli.start("deploy_gate")
    cli.ok("emit", "ci:web:1.0.0", "--set", "status=green")
    for rid in (a["run_id"], b["run_id"]):
        recs = cli.ok("ledger", rid, "--json").json()
        res = next(r for r in recs if r["kind"] == "resume")
        assert res["result"]["wait_key"] == "ci:web:1.0.0"
        assert res["result"]["payload"] == {"status": "green"}
        assert res["actor_id"] == "tester"


# ---------------------------------------------------------------------------- waiting


def test_waiting_plain_shows_prompt_choices_key_since_and_command(cli):
    run = cli.start("approval", "--set", "title=Laptop", "--set", "amount=1450")
    rid = run["run_id"]
    r = cli.ok("waiting")
    out = r.stdout
    assert f"run {rid[:8]} · approval · decide" in out
    assert "Prompt:" in out and "Approve expense 'Laptop' for 1450 EUR?" in out
    assert re.search(r"Choices:\s+1\) approve\n\s+2\) reject", out), out
    assert f"Wait key:      approval:{rid}" in out or f"approval:{rid}" in out
    # Local time with its offset: people see their own clock, never an ambiguous one.
    assert re.search(r"Waiting since: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \(\d+s ago\)",
                     out), out
    cmd_line = next(ln for ln in out.splitlines() if "→" in ln)
    cmd = cmd_line.split("→", 1)[1].strip()
    assert cmd == f"abstractrt resume {rid} --answer approve"
    # The printed command works as printed.
    argv = shlex.split(cmd)
    assert argv[0] == "abstractrt"
    after = cli.ok(*argv[1:], "--json").json()
    assert after["current_node"] == "reason"
    # The free-text prompt's command says TEXT.
    out = cli.ok("waiting").stdout
    assert f"abstractrt resume {rid} --answer TEXT" in out
    assert "Choices" not in out


def test_waiting_shows_event_timer_and_job_commands(cli):
    cli.write_workflow("timer.py", TIMER_WORKFLOW)
    until = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0)
    ev = cli.start("deploy_gate")
    tm = cli.start("timer", "--set", f"until={until.isoformat()}")
    job = cli.start("tool_job")
    out = cli.ok("waiting").stdout
    assert "abstractrt emit ci:web:1.0.0 --payload '{}'" in out
    assert f"abstractrt tick {tm['run_id']}" in out
    local = until.astimezone()
    z = local.strftime("%z")
    assert "Due:" in out and local.strftime("%Y-%m-%d %H:%M:%S ") + f"{z[:3]}:{z[3:]}" in out
    assert "(in 1h 59m" in out
    assert f"abstractrt resume {job['run_id']} --payload-file result.json" in out
    assert f"run {ev['run_id'][:8]} · deploy_gate · wait_ci" in out


def test_waiting_filters_and_json(cli):
    a = cli.start("approval")
    d = cli.start("deploy_gate")
    cli.start("onboarding_account", "--set", "name=Ada")  # completed: never listed
    docs = cli.ok("waiting", "--json").json()
    assert {x["run_id"] for x in docs} == {a["run_id"], d["run_id"]}
    assert [x["run_id"] for x in cli.ok("waiting", "--workflow", "approval", "--json").json()] == [
        a["run_id"]
    ]
    assert [x["run_id"] for x in cli.ok("waiting", "--reason", "event", "--json").json()] == [
        d["run_id"]
    ]
    assert [x["run_id"] for x in cli.ok("waiting", "--reason", "USER", "--json").json()] == [
        a["run_id"]
    ]
    assert cli.ok("waiting", "--reason", "job", "--json").json() == []
    assert cli.ok("waiting", "--workflow", "nope").stdout.strip() == f"no waiting runs in {cli.data_dir}"
    out = cli.ok("waiting", "--reason", "user").stdout
    assert a["run_id"] in out and d["run_id"] not in out


def test_waiting_subworkflow_parent_names_child(cli):
    parent = cli.start("onboarding", "--set", "name=Ada")
    assert parent["waiting"]["reason"] == "subworkflow"
    child = parent["waiting"]["details"]["sub_run_id"]
    out = cli.ok("waiting", "--reason", "subworkflow").stdout
    assert f"{child} (onboarding_welcome)" in out
    assert "Child asks:" in out and "Write a welcome note for Ada" in out


# ---------------------------------------------------------------------------- runs


def test_runs_newest_first_with_filters_and_limit(cli):
    a = cli.start("approval")
    b = cli.start("deploy_gate")
    c = cli.start("onboarding_account", "--set", "name=Ada")
    d = cli.start("approval", "--no-tick")
    ids = [x["run_id"] for x in cli.ok("runs", "--json").json()]
    assert ids == [d["run_id"], c["run_id"], b["run_id"], a["run_id"]]
    assert [x["run_id"] for x in cli.ok("runs", "--limit", "2", "--json").json()] == [
        d["run_id"],
        c["run_id"],
    ]
    assert [x["run_id"] for x in cli.ok("runs", "--status", "completed", "--json").json()] == [
        c["run_id"]
    ]
    assert [x["run_id"] for x in cli.ok("runs", "--status", "RUNNING", "--json").json()] == [
        d["run_id"]
    ]
    assert [x["run_id"] for x in cli.ok("runs", "--workflow", "approval", "--json").json()] == [
        d["run_id"],
        a["run_id"],
    ]
    assert [
        x["run_id"]
        for x in cli.ok("runs", "--workflow", "approval", "--status", "waiting", "--json").json()
    ] == [a["run_id"]]
    assert cli.ok("runs", "--status", "cancelled", "--json").json() == []

    out = cli.ok("runs").stdout.splitlines()
    assert out[0].split() == ["RUN", "WORKFLOW", "STATUS", "NODE", "UPDATED", "WAITING", "ON"]
    assert [ln.split()[0] for ln in out[1:]] == [x["run_id"][:8] for x in (d, c, b, a)]
    row_a = out[4]
    assert "approval" in row_a and "waiting" in row_a and "user: Approve expense" in row_a
    assert "event ci:web:1.0.0" in out[3]  # the wait key to emit, its reason said once
    out = cli.ok("runs", "--limit", "1").stdout.splitlines()
    assert len(out) == 2
    assert cli.ok("runs", "--status", "failed").stdout.strip() == f"no matching runs in {cli.data_dir}"


def test_runs_shows_error_of_failed_run(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    cli.start("failing")
    out = cli.ok("runs").stdout
    assert "failed" in out and "kaboom" in out


# ---------------------------------------------------------------------------- show


def test_show_plain(cli):
    run = cli.start("approval", "--set", "title=Laptop")
    rid = run["run_id"]
    out = cli.ok("show", rid).stdout
    for needle in (
        f"== run {rid[:8]} ==",
        "Run:",
        rid,
        "Workflow:",
        "approval",
        "Status:",
        "waiting",
        "Node:",
        "decide",
        "Created:",
        "Updated:",
        "Started by:",
        "tester",
        "Prompt:",
        "Approve expense 'Laptop'",
        "Limits:",
        "iterations 0/25",
        "Ledger:",
        "2 records at last checkpoint",  # the start record and the prompt
        "Vars:",
        '"title": "Laptop"',
        f"→ abstractrt resume {rid} --answer approve",
    ):
        assert needle in out, (needle, out)
    assert "_limits" not in out  # shown as Limits, not among the vars


def test_show_json(cli):
    run = cli.start("approval")
    doc = cli.ok("show", run["run_id"], "--json").json()
    assert doc["run_id"] == run["run_id"] and doc["status"] == "waiting"
    assert doc["children"] == []
    assert doc["limit_status"]["iterations"] == {
        "current": 0,
        "max": 25,
        "pct": 0.0,
        "warning": False,
    }


def test_show_parent_and_children(cli):
    parent = cli.start("onboarding", "--set", "name=Ada")
    pid = parent["run_id"]
    doc = cli.ok("show", pid, "--json").json()
    kids = {c["workflow_id"]: c for c in doc["children"]}
    assert set(kids) == {"onboarding_account", "onboarding_welcome"}
    assert kids["onboarding_account"]["status"] == "completed"
    assert kids["onboarding_welcome"]["status"] == "waiting"
    out = cli.ok("show", pid).stdout
    assert "Children:" in out
    assert f"{kids['onboarding_welcome']['run_id']} onboarding_welcome waiting" in out
    child = cli.ok("show", kids["onboarding_welcome"]["run_id"]).stdout
    assert "Parent:" in child and pid in child


def test_show_failed_run(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    run = cli.start("failing")
    out = cli.ok("show", run["run_id"]).stdout
    assert "Error:" in out and "RuntimeError: kaboom" in out


# ---------------------------------------------------------------------------- ledger


def test_ledger_timeline(cli):
    rid = approval_waiting(cli)["run_id"]
    cli.ok("resume", rid, "--answer", "approve")
    cli.ok("resume", rid, "--answer", "fine by me")
    out = cli.ok("ledger", rid).stdout.splitlines()
    assert out[0] == f"ledger of run {rid} (approval, completed): 6 records"
    assert out[1].split() == ["#", "TIME", "NODE", "WHAT", "STATUS", "TRY", "TOOK", "DETAIL"]
    start, *rows = out[2:]
    assert len(rows) == 5
    assert start.split()[0] == "0" and "start" in start and "by tester" in start
    # A local time with its offset: 2026-12-01 21:12:03 +01:00
    assert re.match(r"\d +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d ", rows[0]), rows[0]
    assert rows[0].split()[:8] == [
        "1",
        rows[0].split()[1],
        rows[0].split()[2],
        rows[0].split()[3],
        "decide",
        "ask_user",
        "waiting",
        "1",
    ]
    assert "waits: Approve expense" in rows[0]
    assert "decide" in rows[1] and "resume" in rows[1] and "resumed" in rows[1]
    assert 'by tester: {"response":"approve"}' in rows[1]
    assert 'by tester: {"response":"fine by me"}' in rows[3]
    assert "complete" in rows[4] and "completed" in rows[4] and "output:" in rows[4]
    assert re.search(r"\d+ms", rows[0])


def test_ledger_json_raw_records(cli):
    rid = approval_waiting(cli)["run_id"]
    cli.ok("resume", rid, "--answer", "approve")
    recs = cli.ok("ledger", rid, "--json").json()
    assert isinstance(recs, list) and len(recs) == 4
    for key in (
        "run_id",
        "step_id",
        "node_id",
        "status",
        "effect",
        "result",
        "error",
        "started_at",
        "ended_at",
        "actor_id",
        "session_id",
        "attempt",
        "idempotency_key",
        "prev_hash",
        "record_hash",
    ):
        assert key in recs[0], key
    assert [r["seq"] for r in recs] == [0, 1, 2, 3]
    assert recs[0]["prev_hash"] is None and recs[1]["prev_hash"] == recs[0]["record_hash"]
    assert recs[0]["kind"] == "start"
    assert recs[1]["effect"]["type"] == "ask_user"
    assert verify_ledger_chain(recs)["ok"]


def test_ledger_verify_ok(cli):
    rid = approval_waiting(cli)["run_id"]
    cli.ok("resume", rid, "--answer", "approve")
    with unchanged(cli):
        r = cli.ok("ledger", rid, "--verify")
    assert r.stdout.strip() == (f"ledger of run {rid} verified: 4 records, chain intact; "
                                "checkpointed state proved; unsigned")
    doc = cli.ok("ledger", rid, "--verify", "--json").json()
    assert doc["ok"] is True and doc["count"] == 4 and doc["run_id"] == rid
    assert doc["first_bad_index"] is None


def test_ledger_verify_fails_naming_the_edited_record(cli):
    rid = approval_waiting(cli)["run_id"]
    cli.ok("resume", rid, "--answer", "approve")
    cli.ok("resume", rid, "--answer", "ok")
    path = cli.ledger_file(rid)
    lines = path.read_text().splitlines(keepends=True)
    rec = json.loads(lines[2])
    assert rec["kind"] == "resume"
    lines[2] = lines[2].replace('"approve"', '"reject"')
    assert lines[2] != json.dumps(rec)
    path.write_text("".join(lines))
    with unchanged(cli):
        r = cli("ledger", rid, "--verify")
        line = assert_one_line_error(r, 1, rid, "record 2", rec["step_id"], "record hash mismatch")
    assert r.stdout == ""
    assert "failed verification" in line
    r = cli("ledger", rid, "--verify", "--json")
    assert r.exit_code == 1
    doc = r.json()
    assert doc["ok"] is False and doc["first_bad_index"] == 2
    assert doc["first_bad_step_id"] == rec["step_id"]


def test_ledger_verify_catches_truncation_of_the_last_record(cli):
    rid = approval_waiting(cli)["run_id"]
    cli.ok("resume", rid, "--answer", "approve")
    path = cli.ledger_file(rid)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    r = cli("ledger", rid, "--verify")
    assert_one_line_error(r, 1, rid, "deleted or truncated")


# ---------------------------------------------------------------------------- cancel


def test_cancel_waiting_run_with_reason(cli):
    rid = approval_waiting(cli)["run_id"]
    r = cli.ok("cancel", rid, "--reason", "request withdrawn")
    assert "cancelled" in r.stdout and "request withdrawn" in r.stdout
    st = cli.state(rid)
    assert st["status"] == "cancelled" and st["error"] == "request withdrawn"
    assert st["waiting"] is None
    rec = cli.ok("ledger", rid, "--json").json()[-1]
    assert rec["kind"] == "cancel" and rec["actor_id"] == "tester"
    assert rec["result"]["reason"] == "request withdrawn"
    out = cli.ok("ledger", rid).stdout
    assert "by tester: request withdrawn" in out
    assert cli("resume", rid, "--answer", "approve").exit_code == 1


def test_cancel_running_run_json(cli):
    run = cli.start("approval", "--no-tick")
    doc = cli.ok("cancel", run["run_id"], "--json").json()
    assert doc["status"] == "cancelled" and doc["error"] == "cancelled"


def test_cancel_parent_cancels_waiting_children(cli):
    parent = cli.start("onboarding")
    child = parent["waiting"]["details"]["sub_run_id"]
    cli.ok("cancel", parent["run_id"], "--reason", "no hire")
    assert cli.state(child)["status"] == "cancelled"
    assert parent["run_id"] in cli.state(child)["error"]


def test_cancel_terminal_run_is_left_as_it_is(cli):
    done = cli.start("onboarding_account", "--set", "name=Ada")
    with unchanged(cli):
        r = cli.ok("cancel", done["run_id"], "--reason", "too late")
    assert "already completed; left as it is" in r.stderr
    assert "completed" in r.stdout
    doc = cli.ok("cancel", done["run_id"], "--json").json()
    assert doc["status"] == "completed"
    rid = approval_waiting(cli)["run_id"]
    cli.ok("cancel", rid)
    with unchanged(cli):
        r = cli.ok("cancel", rid, "--reason", "again")
    assert "already cancelled" in r.stderr


# ---------------------------------------------------------------------------- limits


def test_limits_show_and_set(cli):
    rid = approval_waiting(cli)["run_id"]
    out = cli.ok("limits", rid).stdout
    assert f"limits of run {rid}" in out
    assert re.search(r"^max_iterations\s+25$", out, re.M), out
    assert re.search(r"^max_output_tokens\s+null$", out, re.M)
    assert "iterations 0/25 (0.0%), tokens 0/32768 (0.0%)" in out
    doc = cli.ok("limits", rid, "--json").json()
    assert doc["run_id"] == rid and doc["limits"]["max_iterations"] == 25
    assert doc["status"]["iterations"]["max"] == 25

    doc = cli.ok(
        "limits", rid, "--set", "max_iterations=50", "--set", "max_tokens=1000", "--json"
    ).json()
    assert doc["limits"]["max_iterations"] == 50 and doc["limits"]["max_tokens"] == 1000
    assert cli.state(rid)["vars"]["_limits"]["max_iterations"] == 50
    rec = cli.ok("ledger", rid, "--json").json()[-1]
    assert rec["kind"] == "limits" and rec["actor_id"] == "tester"
    assert rec["result"]["changes"]["max_iterations"] == {"old": 25, "new": 50}
    assert "max_iterations 25→50" in cli.ok("ledger", rid).stdout
    out = cli.ok("limits", rid, "--set", "max_output_tokens=null").stdout
    assert re.search(r"^max_output_tokens\s+null$", out, re.M)
    # The run still works after the change.
    assert cli.ok("resume", rid, "--answer", "approve", "--json").json()["status"] == "waiting"
    assert cli.ok("ledger", rid, "--verify").exit_code == 0


# ---------------------------------------------------------------------------- naming runs


def test_full_id_and_unique_prefix(cli):
    rid = approval_waiting(cli)["run_id"]
    assert cli.ok("show", rid[:6], "--json").json()["run_id"] == rid
    assert cli.ok("show", rid[:8], "--json").json()["run_id"] == rid
    assert cli.ok("show", f"  {rid}  ", "--json").json()["run_id"] == rid
    after = cli.ok("resume", rid[:7], "--answer", "approve", "--json").json()
    assert after["run_id"] == rid


def test_prefix_commands_accept_a_prefix(cli):
    rid = approval_waiting(cli)["run_id"]
    p = rid[:10]
    cli.ok("tick", p)
    cli.ok("ledger", p)
    cli.ok("ledger", p, "--verify")
    cli.ok("limits", p)
    cli.ok("cancel", p)
    assert cli.state(rid)["status"] == "cancelled"


def test_ambiguous_prefix_lists_candidates(cli):
    a = cli.start_with_id("approval", "abcdef01-run")
    b = cli.start_with_id("approval", "abcdef02-run")
    c = cli.start_with_id("approval", "abcxyz00-run")
    with unchanged(cli):
        for cmd in (
            ["show"],
            ["tick"],
            ["cancel"],
            ["ledger"],
            ["limits"],
            ["resume", "--answer", "x"],
        ):
            r = cli(cmd[0], "abcdef", *cmd[1:])
            assert_one_line_error(r, 1, "ambiguous", a, b)
            assert c not in r.stderr
    assert cli.ok("show", "abcdef01", "--json").json()["run_id"] == a
    assert cli.ok("show", "abcdef02-r", "--json").json()["run_id"] == b
    assert cli.ok("show", "abcxyz", "--json").json()["run_id"] == c
    r = cli("show", "abcdef", "--json")
    doc = r.json()["error"]
    assert (doc["code"], doc["exit"]) == ("run_ambiguous", 1) and a in doc["message"]


def test_prefix_shorter_than_six_is_refused(cli):
    rid = approval_waiting(cli)["run_id"]
    with unchanged(cli):
        r = cli("show", rid[:5])
    assert_one_line_error(r, 1, f"no such run: {rid[:5]}", "at least 6 characters")


# ---------------------------------------------------------------------------- --json everywhere


@pytest.mark.parametrize("json_first", [False, True], ids=["json-after", "json-before"])
def test_every_command_json_is_exactly_one_document(cli, tmp_path, json_first):
    rid = approval_waiting(cli)["run_id"]
    cli.start("deploy_gate")
    f = tmp_path / "a.yaml"
    f.write_text("- prompt: Reason\n  answer: ok\n")
    cmds = [
        ["workflows"],
        ["start", "approval"],
        ["start", "approval", "--no-tick"],
        ["tick", rid],
        ["tick", "--all"],
        ["tick", "--all", "--quiet"],
        ["waiting"],
        ["runs"],
        ["show", rid],
        ["ledger", rid],
        ["ledger", rid, "--verify"],
        ["limits", rid],
        ["limits", rid, "--set", "max_iterations=30"],
        ["resume", rid, "--answer", "approve"],
        ["answer", "--script", str(f), "--run", rid],
        ["emit", "ci:web:1.0.0", "--set", "status=green"],
        ["cancel", rid],
    ]
    for args in cmds:
        r = cli(*(["--json"] + args if json_first else args + ["--json"]))
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)  # raises on anything but exactly one JSON document
        assert isinstance(doc, (dict, list)), r.output
        assert r.stdout.lstrip().startswith(("{", "[")) and r.stdout.endswith("\n")
    assert cli.state(rid)["status"] == "completed"


def test_json_never_mixes_messages_into_stdout(cli):
    r = cli.ok("start", "approval", "--json")
    assert "started run" not in r.stdout
    run = r.json()
    r = cli.ok("cancel", run["run_id"], "--json")
    r = cli.ok("cancel", run["run_id"], "--json")
    assert "already cancelled" in r.stderr
    assert r.json()["status"] == "cancelled"


# ---------------------------------------------------------------------------- settings


def test_config_file_supplies_dirs(cli, tmp_path, monkeypatch):
    data = tmp_path / "from-config-data"
    cli.config.parent.mkdir(parents=True, exist_ok=True)
    cli.config.write_text(f"data_dir: {data}\nworkflows_dir: {cli.workflows_dir}\n")
    monkeypatch.delenv("ABSTRACTRT_DATA_DIR")
    monkeypatch.delenv("ABSTRACTRT_WORKFLOWS")
    run = cli.ok("start", "approval", "--json").json()
    assert any(run["run_id"] in p.name for p in data.rglob("*"))
    # The environment wins over the config file, the option over both.
    monkeypatch.setenv("ABSTRACTRT_DATA_DIR", str(cli.data_dir))
    assert cli("show", run["run_id"]).exit_code == 1
    assert cli.ok("--data-dir", str(data), "show", run["run_id"]).exit_code == 0


def test_data_dir_is_private(cli):
    cli.start("approval")
    assert (cli.data_dir.stat().st_mode & 0o777) == 0o700


# ---------------------------------------------------------------------------- rich output


def test_rich_output_in_a_terminal(cli, monkeypatch):
    """The rich (terminal) rendering of every view works and shows the same facts."""
    from abstractrt_cli.cli import render

    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(render, "is_plain", lambda: False)
    rid = approval_waiting(cli, "--set", "title=Laptop")["run_id"]
    cli.write_workflow("broken.py", "raise ValueError('nope')\n")
    r = cli("workflows")
    assert r.exit_code == 1 and "approval" in r.stdout and "ValueError" in r.stdout
    checks = {
        ("waiting",): ["Approve expense 'Laptop'", "1) approve", f"approval:{rid}"],
        ("runs",): [rid[:8], "approval", "waiting"],
        ("show", rid): [rid, "Prompt", '"title": "Laptop"'],
        ("ledger", rid): ["ask_user", "waiting"],
        ("limits", rid): ["max_iterations", "25"],
        ("resume", rid, "--answer", "approve"): ["Reason for 'approve'"],
        ("cancel", rid): ["cancelled"],
    }
    for args, needles in checks.items():
        r = cli.ok(*args)
        flat = " ".join(r.stdout.replace("│", " ").split())
        for n in needles:
            assert " ".join(n.split()) in flat, (n, r.output)


def test_rich_progress_for_a_big_tick_all(cli, monkeypatch):
    from abstractrt_cli.cli import render

    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(render, "is_plain", lambda: False)
    for i in range(render.ProgressBar.THRESHOLD):
        cli.start_with_id("deploy_gate", f"bulk-{i:03d}")
    r = cli.ok("tick", "--all")
    assert "20 moved (0 completed, 20 waiting" in " ".join(r.stdout.split()), r.output


# ---------------------------------------------------------------------------- start-up cost


def test_commands_are_built_only_when_asked_for():
    import typer.main

    from abstractrt_cli.cli.app import COMMAND_INFOS, app

    group = typer.main.get_command(app)
    assert list(group.commands) == [c.name for c in COMMAND_INFOS]  # listed, not built
    assert group.commands._built == {}
    ctx = group.make_context("abstractrt", ["tick", "--help"], resilient_parsing=True)
    assert group.get_command(ctx, "tick").name == "tick"
    assert list(group.commands._built) == ["tick"]


def test_every_registered_command_is_in_the_module_table():
    """A command a module registers is reachable: ``COMMAND_MODULES`` names it, with the
    module that defines it (only that module is imported to run it)."""
    import importlib

    from abstractrt_cli.cli import common
    from abstractrt_cli.cli.app import COMMAND_MODULES

    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"abstractrt_cli.cli.{module}")
    registered = {name: fn.__module__.rsplit(".", 1)[1] for name, fn, _ in common.COMMANDS}
    assert registered == COMMAND_MODULES


def test_a_cron_tick_imports_only_what_it_uses(cli):
    """`abstractrt tick RUN` (plain output) and `waiting` never load rich, YAML,
    platformdirs (with every setting given) or the answering code; nor OpenSSL's hashing,
    ``logging``, the memory store, the file store's parts of part two, or the modules of
    other commands (each costs every cron call)."""
    import subprocess
    import sys

    rid = cli.start("approval", "--no-tick")["run_id"]
    code = ("import sys; from abstractrt_cli.cli.app import main\n"
            "sys.argv = ['abstractrt'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = ('rich', 'yaml', 'platformdirs', 'abstractrt_cli.ops.answers', 'jsonschema',\n"
            "         'hashlib', '_hashlib', 'logging', 'abstractrt_cli.storage.memory',\n"
            "         'abstractrt_cli.storage.files.events', 'abstractrt_cli.storage.files.snapshots',\n"
            "         'abstractrt_cli.storage.files.artifacts', 'abstractrt_cli.storage.files.audit',\n"
            "         'abstractrt_cli.storage.files.logs', 'abstractrt_cli.cli.lifecycle',\n"
            "         'abstractrt_cli.cli.admin', 'abstractrt_cli.cli.worker')\n"
            "print(sorted({m.split('.')[0] if not m.startswith('abstractrt_cli') else m\n"
            "              for m in sys.modules if m.startswith(heavy)}), file=sys.stderr)\n")
    for args in (["tick", rid], ["waiting"]):
        cp = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env=dict(cli.env, ABSTRACTRT_STORE=str(cli.data_dir)), timeout=60)
        assert cp.returncode == 0, cp.stderr
        assert cp.stderr.strip().splitlines()[-1] == "[]", (args, cp.stderr)
