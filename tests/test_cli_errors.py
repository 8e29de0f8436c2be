"""Every error path of the command line (PRODUCT.md §4): the exit code, one clear line on
stderr (no traceback), the ``--json`` error document, and a data dir left byte-for-byte
as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from cli_helpers import (
    CLI,
    FAILING_WORKFLOW,
    Result,
    abstractrt_command,
    assert_one_line_error,
    hold_lock,
    unchanged,
)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """An isolated abstractrt world with the example workflows (see cli_helpers.CLI)."""
    return CLI(tmp_path, monkeypatch)


NO_SUCH = "0123456789-no-such-run"


@pytest.fixture
def waiting_run(cli):
    """An approval run waiting for its first answer (choices approve/reject only)."""
    run = cli.start("approval")
    assert run["status"] == "waiting"
    return run["run_id"]


@pytest.fixture
def done_run(cli):
    run = cli.start("onboarding_account", "--set", "name=Ada")
    assert run["status"] == "completed"
    return run["run_id"]


def refused(cli, code, args, *needles, input=None):
    """Run a command that must fail with ``code``, change nothing, and say why in one line."""
    with unchanged(cli):
        r = cli(*args, input=input)
        line = assert_one_line_error(r, code, *needles)
        assert r.stdout == "", r.output
        # The same refusal with --json: one error document on stdout, same message.
        rj = cli(*args, "--json", input=input)
        assert_one_line_error(rj, code, *needles)
        doc = rj.json()
        err = doc["error"]
        assert set(doc) == {"error"} and set(err) <= {"code", "exit", "message", "hint"}, rj.output
        assert err["exit"] == code, rj.output
        assert isinstance(err["code"], str) and err["code"].isidentifier(), rj.output
        assert line == "error: " + err["message"] + (f" ({err['hint']})" if "hint" in err else ""), rj.output
    return line


# ---------------------------------------------------------------------------- unknown things


RUN_COMMANDS = [
    ["show"],
    ["tick"],
    ["resume", "--answer", "x"],
    ["ledger"],
    ["ledger", "--verify"],
    ["cancel"],
    ["limits"],
    ["limits", "--set", "max_iterations=3"],
]


@pytest.mark.parametrize("cmd", RUN_COMMANDS, ids=lambda c: " ".join(c))
def test_unknown_run(cli, waiting_run, cmd):
    refused(cli, 1, [cmd[0], NO_SUCH, *cmd[1:]], f"no such run: {NO_SUCH}", "abstractrt runs")


def test_unknown_run_prefix(cli, waiting_run):
    refused(cli, 1, ["show", "ffffffff"], "no such run: ffffffff")


def test_invalid_run_id(cli, waiting_run):
    refused(cli, 1, ["show", "../../etc/passwd"], "invalid run id")
    refused(cli, 1, ["tick", "abc/def/ghi"], "invalid run id")


def test_unknown_workflow(cli, waiting_run):
    line = refused(
        cli,
        1,
        ["start", "nope"],
        "no such workflow: nope",
        "known workflows:",
        "approval",
        "deploy_gate",
    )
    assert "Traceback" not in line


def test_unknown_workflow_when_the_directory_is_missing(cli, waiting_run, tmp_path):
    refused(
        cli,
        1,
        ["start", "approval", "--workflows", str(tmp_path / "missing")],
        "no such workflow: approval",
        "does not exist",
    )


def test_emit_with_no_waiter_is_no_error(cli, waiting_run):
    """PRODUCT §8: the event is kept for runs that reach the wait later."""
    doc = cli.ok("emit", "ci:nobody:0", "--set", "status=green", "--json").json()
    assert doc["delivered"] == [] and doc["event"]["payload"] == {"status": "green"}
    with unchanged(cli):
        r = cli.ok("emit", "ci:nobody:0", "--set", "status=green", "--no-keep")
    assert r.stderr == "", r.output


# ---------------------------------------------------------------------------- refused resumes


def test_run_not_waiting(cli, done_run):
    refused(
        cli,
        1,
        ["resume", done_run, "--answer", "x"],
        f"run {done_run} is not waiting",
        "status: completed",
    )


def test_running_run_is_not_waiting(cli):
    rid = cli.start("approval", "--no-tick")["run_id"]
    refused(cli, 1, ["resume", rid, "--answer", "approve"], "not waiting", "status: running")


def test_cancelled_run_is_not_waiting(cli, waiting_run):
    cli.ok("cancel", waiting_run)
    refused(cli, 1, ["resume", waiting_run, "--answer", "approve"], "status: cancelled")


def test_wrong_wait_key(cli, waiting_run):
    refused(
        cli,
        1,
        ["resume", waiting_run, "--answer", "approve", "--wait-key", "approval:x"],
        f"run {waiting_run} waits on key 'approval:{waiting_run}', not 'approval:x'",
    )


def test_invalid_choice(cli, waiting_run):
    refused(
        cli,
        1,
        ["resume", waiting_run, "--answer", "maybe"],
        "invalid answer 'maybe'",
        waiting_run,
        "'approve', 'reject'",
    )
    # No response at all is not a choice either.
    line = refused(cli, 1, ["resume", waiting_run, "--set", "note=hi"], "no answer for run",
                   "'approve', 'reject'")
    assert "None" not in line


STRICT_GATE = '''
"""Waits on ci:web:1.0.0 for a payload with a status of green or red."""

from abstractrt_cli import Effect, StepPlan, WorkflowSpec

SCHEMA = {"type": "object", "required": ["status"],
          "properties": {"status": {"enum": ["green", "red"]}}}


def wait(run, ctx):
    return StepPlan("wait", effect=Effect("wait_event", {"wait_key": "ci:web:1.0.0",
                                                         "schema": SCHEMA}, "ci"),
                    next_node="done")


def done(run, ctx):
    return StepPlan("done", complete_output={"ci": run.vars["ci"]})


strict_gate = WorkflowSpec("strict_gate", "wait", {"wait": wait, "done": done})
'''


def test_emit_refuses_all_when_one_run_refuses(cli, waiting_run):
    """One receiver's schema refuses the payload: nothing delivered, nothing kept."""
    cli.write_workflow("strict_gate.py", STRICT_GATE)
    cli.start("deploy_gate")
    strict = cli.start("strict_gate")["run_id"]
    line = refused(cli, 1, ["emit", "ci:web:1.0.0", "--set", "status=amber"],
                   f"payload for run {strict} does not match its schema at $.status",
                   "'amber' is not one of ['green', 'red']")
    assert "schema" in line


# ---------------------------------------------------------------------------- bad payloads


@pytest.mark.parametrize(
    "text,kind", [("[1]", "list"), ("null", "null"), ('"approve"', "str"), ("3", "int")]
)
def test_payload_not_a_json_object(cli, waiting_run, text, kind):
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload", text],
        f"payload must be a JSON object, not {kind}",
    )


def test_payload_file_not_an_object(cli, waiting_run, tmp_path):
    f = tmp_path / "list.json"
    f.write_text("[1, 2]")
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(f)],
        str(f),
        "must be a JSON object, not list",
    )
    y = tmp_path / "scalar.yaml"
    y.write_text("just text\n")
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(y)],
        str(y),
        "must be a JSON object, not str",
    )
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", "-"],
        "standard input",
        "must be a JSON object",
        input="- a\n- b\n",
    )


def test_vars_not_an_object(cli, waiting_run, tmp_path):
    refused(
        cli, 1, ["start", "approval", "--vars", "[1]"], "--vars must be a JSON object, not list"
    )
    f = tmp_path / "v.yaml"
    f.write_text("- a\n")
    refused(cli, 1, ["start", "approval", "--vars-file", str(f)], str(f), "must be a JSON object")


def test_malformed_json(cli, waiting_run, tmp_path):
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload", '{"response": '],
        "payload is not valid JSON",
        "line 1 column",
    )
    refused(cli, 1, ["start", "approval", "--vars", "{title: x}"], "--vars is not valid JSON")
    f = tmp_path / "bad.json"
    f.write_text('{"response": "approve",}\n')
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(f)],
        str(f),
        "not valid JSON",
        "line 1",
    )
    refused(cli, 1, ["start", "approval", "--vars-file", str(f)], str(f), "not valid JSON")


def test_malformed_yaml_file(cli, waiting_run, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("response: approve\nnote: [unclosed, list\n")
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(f)],
        str(f),
        "neither valid JSON nor YAML",
    )
    refused(
        cli, 1, ["start", "approval", "--vars-file", str(f)], str(f), "neither valid JSON nor YAML"
    )
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", "-"],
        "standard input",
        "neither valid JSON nor YAML",
        input="a: b: c\n",
    )


def test_missing_payload_file(cli, waiting_run, tmp_path):
    missing = tmp_path / "nope.json"
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(missing)],
        f"cannot read {missing}: no such file",
    )
    refused(
        cli,
        1,
        ["start", "approval", "--vars-file", str(missing)],
        f"cannot read {missing}: no such file",
    )
    refused(
        cli, 1, ["emit", "ci:web:1.0.0", "--payload-file", str(missing)], f"cannot read {missing}"
    )
    refused(cli, 1, ["start", "approval", "--answers", str(missing)], f"cannot read {missing}")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files whatever their mode"
)
def test_payload_file_without_read_permission(cli, waiting_run, tmp_path):
    f = tmp_path / "secret.json"
    f.write_text('{"response": "approve"}')
    f.chmod(0)
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(f)],
        f"cannot read {f}",
        "ermission denied",
    )


def test_unreadable_payload_files(cli, waiting_run, tmp_path):
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(tmp_path)],
        f"cannot read {tmp_path}: is a directory",
    )
    binary = tmp_path / "blob.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    refused(
        cli,
        1,
        ["resume", waiting_run, "--payload-file", str(binary)],
        f"cannot read {binary}: not UTF-8",
    )
    empty = tmp_path / "empty.yaml"
    empty.write_text("  \n")
    refused(cli, 1, ["resume", waiting_run, "--payload-file", str(empty)], str(empty), "empty")
    refused(
        cli, 1, ["resume", waiting_run, "--payload-file", "-"], "standard input", "empty", input=""
    )


def test_bad_limits(cli, waiting_run):
    refused(
        cli,
        1,
        ["limits", waiting_run, "--set", "max_bananas=3"],
        "unknown limit 'max_bananas'",
        "max_iterations",
    )
    refused(
        cli,
        1,
        ["limits", waiting_run, "--set", "max_iterations=lots"],
        "limit 'max_iterations' must be an integer",
    )
    refused(
        cli,
        1,
        ["limits", waiting_run, "--set", "max_iterations=true"],
        "limit 'max_iterations' must be an integer",
    )
    refused(
        cli,
        1,
        ["limits", waiting_run, "--set", "max_iterations=50", "--set", "nope=1"],
        "unknown limit 'nope'",
    )


# ---------------------------------------------------------------------------- damaged files


def test_ledger_verification_failed(cli, waiting_run):
    cli.ok("resume", waiting_run, "--answer", "approve")
    path = cli.ledger_file(waiting_run)
    lines = path.read_text().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if "Approve expense" in line)  # after the start record
    rec = json.loads(lines[i])
    lines[i] = lines[i].replace("Approve expense", "Approve EXPENSE")
    path.write_text("".join(lines))
    with unchanged(cli):
        r = cli("ledger", waiting_run, "--verify")
        assert_one_line_error(r, 1, waiting_run, f"record {i}", rec["step_id"], "record hash mismatch")
        r = cli("ledger", waiting_run, "--verify", "--json")
        assert r.exit_code == 1
        doc = r.json()
        assert doc["ok"] is False and doc["first_bad_index"] == i
        assert doc["first_bad_step_id"] == rec["step_id"]


def test_ledger_verification_catches_a_deleted_record(cli, waiting_run):
    cli.ok("resume", waiting_run, "--answer", "approve")
    path = cli.ledger_file(waiting_run)
    lines = path.read_text().splitlines(keepends=True)
    second = json.loads(lines[2])
    path.write_text(lines[0] + lines[2])
    with unchanged(cli):
        assert_one_line_error(
            cli("ledger", waiting_run, "--verify"), 1, "record 1", second["step_id"], "is bad"
        )


def test_corrupt_ledger_line(cli, waiting_run):
    cli.ok("resume", waiting_run, "--answer", "approve")
    path = cli.ledger_file(waiting_run)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = "{this is not json\n"
    path.write_text("".join(lines))
    with unchanged(cli):
        assert_one_line_error(cli("ledger", waiting_run), 1, str(path), "line 2")
        assert_one_line_error(cli("ledger", waiting_run, "--verify"), 1, waiting_run, "line 2")


@pytest.mark.parametrize(
    "cmd",
    [["show"], ["tick"], ["resume", "--answer", "approve"], ["cancel"], ["ledger"], ["limits"]],
    ids=lambda c: c[0],
)
def test_corrupt_run_file_is_named(cli, waiting_run, cmd):
    path = cli.run_file(waiting_run)
    path.write_text('{"run_id": "' + waiting_run + '", "status": ')  # torn by hand
    refused(cli, 1, [cmd[0], waiting_run, *cmd[1:]], "corrupt run file", str(path))
    # By prefix too: never "no such run".
    refused(cli, 1, [cmd[0], waiting_run[:8], *cmd[1:]], "corrupt run file", str(path))


def test_run_file_with_wrong_field_types_is_named(cli, waiting_run):
    path = cli.run_file(waiting_run)
    data = json.loads(path.read_text())
    data["vars"] = ["not", "a", "dict"]
    path.write_text(json.dumps(data))
    refused(cli, 1, ["show", waiting_run], "corrupt run file", str(path), "vars")


def test_corrupt_run_file_in_listings_is_reported_not_skipped(cli, waiting_run):
    other = cli.start("deploy_gate")["run_id"]
    path = cli.run_file(waiting_run)
    path.write_text("not json at all")
    # The store may flag the run's index row for re-checking (the index is a cache); the
    # run files and ledgers stay as they were.
    with unchanged(cli, ignore=["index/"]):
        r = cli("runs")
        assert r.exit_code == 1, r.output
        assert other[:8] in r.stdout
        assert "CORRUPT" in r.stdout
        assert str(path) in r.stderr and "Traceback" not in r.stderr
        r = cli("runs", "--json")
        assert r.exit_code == 1
        docs = r.json()
        assert any(d["run_id"] == other for d in docs)
        bad = [d for d in docs if d["status"] == "corrupt"]
        assert len(bad) == 1 and bad[0]["path"] == str(path)


# ---------------------------------------------------------------------------- workflow files


BROKEN_WORKFLOW = '''
"""A workflow file with a bug at import time."""

from abstractrt_cli import StepPlan, WorkflowSpec


def only(run, ctx):
    return StepPlan(node_id="only", complete_output={})


broken_wf = WorkflowSpec(workflow_id="broken_wf", entry_node="only", nodes={"only": only})
raise RuntimeError("config missing for broken_wf")
'''


def test_broken_workflow_module_needed_by_start(cli, waiting_run):
    cli.write_workflow("broken_wf.py", BROKEN_WORKFLOW)
    refused(
        cli,
        1,
        ["start", "broken_wf"],
        "broken_wf",
        "failed to import",
        "broken_wf.py",
        "RuntimeError: config missing for broken_wf",
        "line 12",
    )
    # The other workflows still work.
    assert cli.start("approval")["status"] == "waiting"


def test_syntax_error_workflow_module(cli, waiting_run):
    cli.write_workflow("typo.py", "def oops(:\n    pass\n")
    refused(cli, 1, ["start", "typo"], "typo.py", "SyntaxError", "line 1")


def test_broken_module_of_an_existing_run(cli, waiting_run):
    (cli.workflows_dir / "approval.py").write_text("import no_such_module_abc\n")
    refused(
        cli, 1, ["resume", waiting_run, "--answer", "approve"], "approval.py", "no_such_module_abc"
    )
    refused(cli, 1, ["tick", waiting_run], "approval.py", "no_such_module_abc")


def test_duplicate_workflow_id_names_both_files(cli, waiting_run):
    src = (cli.workflows_dir / "approval.py").read_text()
    cli.write_workflow("approval_copy.py", src)
    a, b = cli.workflows_dir / "approval.py", cli.workflows_dir / "approval_copy.py"
    refused(
        cli,
        1,
        ["start", "approval"],
        "'approval' is defined twice",
        str(a.resolve()),
        str(b.resolve()),
    )
    refused(cli, 1, ["resume", waiting_run, "--answer", "approve"], "defined twice")
    # Listing names both too; the other workflows are still usable.
    r = cli("workflows")
    assert r.exit_code == 1
    assert "defined twice" in r.stdout and "approval_copy.py" in r.stdout
    assert cli.start("deploy_gate")["status"] == "waiting"


def test_run_whose_workflow_file_was_deleted(cli):
    rid = cli.start("approval", "--no-tick")["run_id"]
    waiting = cli.start("approval")["run_id"]
    other = cli.start("deploy_gate", "--no-tick")["run_id"]
    source = cli.workflows_dir / "approval.py"
    source.unlink()
    refused(
        cli,
        1,
        ["tick", rid],
        rid,
        "'approval'",
        str(cli.workflows_dir),
        str(source),
        "left as it was",
    )
    refused(cli, 1, ["resume", waiting, "--answer", "approve"], waiting, "'approval'")
    assert cli.state(rid)["status"] == "running"  # never silently marked failed
    # tick --all reports it, still moves the others, and exits 1.
    r = cli("tick", "--all")
    assert r.exit_code == 1, r.output
    assert "1 moved" in r.stdout
    assert f"run {rid}" in r.stderr and "'approval'" in r.stderr
    assert "Traceback" not in r.stderr
    assert cli.state(rid)["status"] == "running"
    assert cli.state(other)["status"] == "waiting"


def test_workflow_code_changed_ticks_with_a_warning(cli):
    rid = cli.start("approval", "--no-tick")["run_id"]
    path = cli.workflows_dir / "approval.py"
    path.write_text(path.read_text() + "\n# edited after the run started\n")
    r = cli.ok("tick", rid, "--json")
    assert r.json()["status"] == "waiting"
    assert "warning: workflow 'approval' changed since run" in r.stderr
    assert rid[:8] in r.stderr and "Traceback" not in r.stderr
    r = cli.ok("resume", rid, "--answer", "approve")
    assert "changed since run" in r.stderr
    # tick --all warns once per workflow, not per run.
    cli.start("approval", "--no-tick")  # new runs carry the new fingerprint
    for _ in range(2):
        (cli.start("deploy_gate", "--no-tick"))
    r = cli.ok("tick", "--all")
    assert "changed since" not in r.stderr


# ---------------------------------------------------------------------------- busy runs


def test_busy_run_exits_4(cli, waiting_run):
    """tick/resume/cancel/limits/emit of a run another process holds: exit 4, "busy"."""
    running = cli.start("approval", "--no-tick")["run_id"]
    gate = cli.start("deploy_gate")["run_id"]
    with hold_lock(cli.data_dir, waiting_run), hold_lock(cli.data_dir, running), \
            hold_lock(cli.data_dir, gate):
        with unchanged(cli):
            # As real processes, side by side: each waits briefly for the lock, then fails.
            t0 = time.monotonic()
            procs = {
                name: subprocess.Popen(
                    abstractrt_command() + args,
                    env=cli.env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for name, args in {
                    "resume": ["resume", waiting_run, "--answer", "approve"],
                    "cancel": ["cancel", waiting_run[:8], "--reason", "x"],
                    "limits": ["limits", waiting_run, "--set", "max_iterations=9"],
                    "tick": ["tick", running],
                    "emit": ["emit", "ci:web:1.0.0", "--set", "status=green", "--no-keep",
                             "--json"],
                }.items()
            }
            results = {}
            for name, p in procs.items():
                out, err = p.communicate(timeout=60)
                results[name] = Result([name], p.returncode, out, err)
            assert time.monotonic() - t0 < 15, "busy commands must fail after a brief wait"
            for name in ("resume", "cancel", "limits"):
                assert_one_line_error(results[name], 4, waiting_run, "busy", "try again later")
                assert results[name].stdout == ""
            assert_one_line_error(results["tick"], 4, running, "is busy in another process")
            emit = results["emit"]
            assert emit.exit_code == 4, emit.output
            assert f"run {gate} is busy" in emit.stderr and "Traceback" not in emit.stderr
            assert emit.json() == {"event": None, "delivered": [], "busy": [gate]}
            # In-process too, with the --json error document.
            r = cli("tick", running, "--json")
            assert_one_line_error(r, 4, running, "busy")
            assert r.json() == {"error": {"code": "run_busy", "exit": 4,
                                          "message": r.json()["error"]["message"],
                                          "hint": "try again later"}}
            assert "busy" in r.json()["error"]["message"]
        # Reading is never blocked by a lock.
        assert cli.ok("show", waiting_run, "--json").json()["status"] == "waiting"
        assert cli.ok("ledger", running, "--verify").exit_code == 0
    assert cli.ok("tick", running, "--json").json()["status"] == "waiting"
    assert cli.ok("cancel", waiting_run, "--json").json()["status"] == "cancelled"


# ---------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["start"],
        ["start", "approval", "--bogus-option"],
        ["tick", "--max-steps", "0", "--all"],
        ["tick", "--max-steps", "many", "--all"],
        ["runs", "--status", "bogus"],
        ["runs", "--limit", "0"],
        ["waiting", "--reason", "sleepy"],
        ["resume"],
        ["emit"],
        ["show"],
    ],
    ids=lambda a: " ".join(a),
)
def test_typer_usage_errors_exit_2(cli, waiting_run, args):
    with unchanged(cli):
        r = cli(*args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.stdout == ""
    assert "Usage" in r.stderr or "Error" in r.stderr, r.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["tick"], "give a RUN or --all"),
        (["tick", "RUNID0", "--all"], "give a RUN or --all"),
        (
            ["resume", "RUNID0", "--payload", "{}", "--answer", "x"],
            "use only one of --payload, --answer",
        ),
        (["resume", "RUNID0", "--payload-file", "x.json", "--payload", "{}"], "use only one of"),
        (
            ["start", "approval", "--vars", "{}", "--vars-file", "v.json"],
            "use only one of --vars, --vars-file",
        ),
        (["start", "approval", "--set", "novalue"], "--set expects KEY=VALUE, got 'novalue'"),
        (["start", "approval", "--set", "=3"], "--set expects KEY=VALUE"),
        (["resume", "RUNID0", "--set", "a"], "--set expects KEY=VALUE"),
        (["limits", "RUNID0", "--set", "max_iterations"], "--set expects KEY=VALUE"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else None,
)
def test_our_usage_errors_exit_2(cli, waiting_run, args, needle):
    refused(cli, 2, args, needle)


def test_answers_with_no_tick_is_a_usage_error(cli, waiting_run, tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("- prompt: x\n  answer: y\n")
    refused(cli, 2, ["start", "approval", "--answers", str(f), "--no-tick"], "--no-tick")


def test_malformed_config_file(cli, monkeypatch):
    cli.config.parent.mkdir(parents=True, exist_ok=True)
    cli.config.write_text("data_dir: [unclosed\n")
    monkeypatch.delenv("ABSTRACTRT_DATA_DIR")
    r = cli("runs")
    assert_one_line_error(r, 2, "config file", str(cli.config))  # exit 2: how it was called
    cli.config.write_text("datadir: /tmp/x\n")
    assert_one_line_error(cli("runs"), 2, "unknown key(s) datadir")


# ---------------------------------------------------------------------------- failed runs


def test_failed_run_exit_3_is_not_an_error_line(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    r = cli("start", "failing")
    assert r.exit_code == 3, r.output
    assert "error:" not in r.stderr
    assert "Traceback" not in r.output
    r = cli("start", "failing", "--json")
    assert r.exit_code == 3 and r.json()["status"] == "failed"


def test_no_traceback_for_internal_errors_unless_debug(cli, monkeypatch):
    # A bug (here: a store that explodes) is reported in one line; ABSTRACTRT_DEBUG shows it.
    from abstractrt_cli.ops import queries

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(queries, "list_runs", boom)
    r = cli("runs")
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: internal error: ZeroDivisionError: simulated bug")
    assert r.stderr.count("\n") == 1 and "ABSTRACTRT_DEBUG" in r.stderr
    assert "Traceback" not in r.output
    monkeypatch.setenv("ABSTRACTRT_DEBUG", "1")
    r = cli("runs")
    assert isinstance(r.exception, ZeroDivisionError)
