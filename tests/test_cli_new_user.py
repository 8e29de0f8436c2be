"""What a new user ran into (issue 9): each bug through the installed command, then the
command-line habits people expect (PRODUCT.md §4a). Ctrl-D and the interactive session are
in ``test_answer_pty.py``."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

import pytest
from cli_helpers import CLI, FAILING_WORKFLOW, abstractrt_command, assert_one_line_error, unchanged


@pytest.fixture
def cli(tmp_path, monkeypatch):
    return CLI(tmp_path, monkeypatch)


def waiting_since(run: dict) -> str:
    return run["waiting"]["since"]


# ---------------------------------------------------------------------------- bug 1


@pytest.mark.parametrize("workflow", ["tool_job", "approval", "reminder"])
def test_resume_without_a_payload_source_is_wrong_usage(cli, workflow):
    """A bare `resume RUN` once consumed an LLM job with {} and stored an answer without
    its response; now it is exit 2 naming the options, and changes nothing."""
    args = ("--set", "delay=1h") if workflow == "reminder" else ()
    run = cli.start(workflow, *args)
    assert run["status"] == "waiting"
    with unchanged(cli):
        r = cli.run("resume", run["run_id"])
        line = assert_one_line_error(r, 2, "--payload", "--payload-file", "--answer", "--set")
        assert "--payload '{}'" in line
    assert cli.state(run["run_id"])["status"] == "waiting"


def test_emit_without_a_payload_source_is_wrong_usage_and_empty_payload_is_allowed(cli):
    run = cli.start("deploy_gate")
    with unchanged(cli):
        assert_one_line_error(cli.run("emit", "ci:web:1.0.0"), 2, "--payload", "--set")
    r = cli.run("emit", "ci:web:1.0.0", "--payload", "{}", "--json")
    assert r.exit_code == 0, r.output
    assert [x["run_id"] for x in r.json()["delivered"]] == [run["run_id"]]


# ---------------------------------------------------------------------------- bug 2


def _many_runs(cli: CLI, n: int) -> None:
    """``n`` waiting runs written straight through the store (fsync off: test data)."""
    from abstractrt_cli import RunState, RunStatus, WaitReason, WaitState
    from abstractrt_cli.storage.files import open_file_stores

    rs, _ = open_file_stores(cli.data_dir, fsync=False)
    for i in range(n):
        rs.save(RunState(run_id=f"bulk-{i:05d}", workflow_id="approval", status=RunStatus.WAITING,
                         current_node="decide", created_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
                         updated_at="2026-01-01T00:00:00+00:00",
                         waiting=WaitState(reason=WaitReason.USER, prompt=f"Approve #{i}? " + "x" * 80,
                                           wait_key=f"approval:bulk-{i:05d}", choices=["a", "b"])))


def test_output_into_a_closed_pipe_ends_quietly(cli):
    """`abstractrt ledger RUN | head -1` printed `internal error: BrokenPipeError` (and
    nothing at all with ABSTRACTRT_DEBUG=1). Output far beyond a pipe's buffer makes the
    reader go away mid-write every time."""
    _many_runs(cli, 1000)
    rid = cli.start("approval", "--set", "title=" + "t" * 30_000)["run_id"]
    for _ in range(3):
        cli.ok("limits", rid, "--set", "max_iterations=30")
    exe = shlex.join(abstractrt_command())
    cases = [(f"{exe} runs --limit 1000", ""), (f"{exe} waiting", ""), (f"{exe} show {rid}", ""),
             (f"{exe} ledger {rid} --json", ""), (f"{exe} waiting --json", ""),
             (f"{exe} runs --limit 1000", "1"), (f"{exe} show {rid}", "1")]
    for cmd, debug in cases:
        for _ in range(2):
            cp = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -1"],
                                capture_output=True, text=True,
                                env=dict(cli.env, ABSTRACTRT_DEBUG=debug), timeout=120)
            assert cp.stderr == "", (cmd, debug, cp.stderr)
            # 141 = 128 + SIGPIPE, as any Unix tool whose reader went away (documented).
            assert cp.returncode in (0, 141), (cmd, cp.returncode, cp.stderr)
            assert cp.stdout.count("\n") == 1 and cp.stdout.strip(), (cmd, cp.stdout)


# ---------------------------------------------------------------------------- bug 4


def test_limits_set_keeps_waiting_since_and_the_order_of_waiting_runs(cli):
    older = cli.start("approval", "--set", "title=older")
    time.sleep(0.01)
    newer = cli.start("approval", "--set", "title=newer")
    before = cli.state(older["run_id"])
    cli.ok("limits", older["run_id"], "--set", "max_iterations=40")
    after = cli.state(older["run_id"])
    assert waiting_since(after) == waiting_since(before)
    listed = cli.run("waiting", "--json").json()
    assert [r["run_id"] for r in listed] == [older["run_id"], newer["run_id"]]
    plain = cli.run("waiting").stdout
    assert plain.index("older") < plain.index("newer")


# ---------------------------------------------------------------------------- bug 5


def test_one_choice_rule_for_resume_and_answer_scripts(cli, tmp_path):
    """`resume --answer YES` and `answer: "YES"` refused what interactive answer took."""
    a = cli.start("approval")["run_id"]
    r = cli.run("resume", a, "--answer", "APPROVE", "--json")
    assert r.exit_code == 0, r.output
    assert r.json()["vars"]["decision"] == {"response": "approve"}  # the choice as written

    b = cli.start("approval")["run_id"]
    rules = tmp_path / "rules.yaml"
    rules.write_text('- prompt: "Approve expense"\n  answer: "REJECT"\n')
    r = cli.run("answer", "--script", str(rules), "--run", b, "--json")
    assert r.exit_code == 0, r.output
    assert cli.state(b)["vars"]["decision"] == {"response": "reject"}

    c = cli.start("approval")["run_id"]
    with unchanged(cli):
        line = assert_one_line_error(cli.run("resume", c, "--answer", "perhaps"), 1,
                                     "'approve', 'reject'")
    assert "None" not in line


# ---------------------------------------------------------------------------- bug 6


def test_limits_refuses_nonsense_and_changes_nothing(cli):
    rid = cli.start("approval")["run_id"]
    used = cli.state(rid)["vars"]["_limits"]["current_iteration"]
    for pair in ("max_iterations=-3", f"max_iterations={used}", "max_tokens=-1"):
        with unchanged(cli):
            r = cli.run("limits", rid, "--set", pair)
            assert_one_line_error(r, 1, pair.split("=")[0])
            rj = cli.run("limits", rid, "--set", pair, "--json")
            assert rj.json()["error"]["code"] == "invalid_limits", rj.output
    cli.ok("cancel", rid)
    with unchanged(cli):
        assert_one_line_error(cli.run("limits", rid, "--set", "max_iterations=50"), 1, "cancelled")
    assert cli.ok("limits", rid, "--json").json()["limits"]["max_iterations"] == 25  # reading is fine


# ---------------------------------------------------------------------------- bug 7


@pytest.mark.parametrize("order", [["--version", "--json"], ["--json", "--version"]])
def test_version_json(cli, order):
    from abstractrt_cli import __version__

    r = cli.run(*order)
    assert r.exit_code == 0, r.output
    assert r.json() == {"version": __version__}
    assert cli.run("--version").stdout == f"abstractrt {__version__}\n"


# ---------------------------------------------------------------------------- bug 8


EVERY_COMMAND = [
    ["workflows"], ["start", "approval"], ["tick", "--all"], ["tick", "abcdef12"],
    ["resume", "abcdef12", "--answer", "x"], ["answer", "--script", "r.yaml"],
    ["emit", "k", "--payload", "{}"], ["waiting"], ["runs"], ["show", "abcdef12"],
    ["ledger", "abcdef12"], ["cancel", "abcdef12"], ["limits", "abcdef12"], ["reindex"],
    ["config"], ["key", "init"],
]


@pytest.mark.parametrize("args", EVERY_COMMAND, ids=lambda a: " ".join(a))
def test_a_missing_named_config_file_is_wrong_usage_for_every_command(cli, tmp_path, args):
    """A typo in a crontab's ABSTRACTRT_CONFIG went unnoticed: options and env gave every
    setting, so the file was never even looked at."""
    missing = tmp_path / "typo" / "confg.yaml"
    env = dict(cli.env, ABSTRACTRT_CONFIG=str(missing), ABSTRACTRT_STORE=str(cli.data_dir))
    opts = ["--data-dir", str(cli.data_dir), "--workflows", str(cli.workflows_dir)]
    with unchanged(cli):
        cp = subprocess.run(abstractrt_command() + args + opts,
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    assert cp.stderr.startswith(f"error: config file {missing}") and "does not exist" in cp.stderr
    assert cp.stderr.count("\n") == 1
    assert not (cli.tmp / "xdg-config" / "abstractrt" / "signing.key").exists()


# ---------------------------------------------------------------------------- bug 9


def test_runs_limit_counts_the_corrupt_row_and_it_carries_its_run_id(cli):
    ids = [cli.start("approval")["run_id"] for _ in range(5)]
    bad = ids[2]
    cli.run_file(bad).write_text("{not json")
    r = cli.run("runs", "--json", "--limit", "4")
    assert r.exit_code == 1, r.output  # a corrupt run is reported, never skipped
    rows = r.json()
    assert len(rows) == 4, rows
    corrupt = [x for x in rows if x["status"] == "corrupt"]
    assert [x["run_id"] for x in corrupt] == [bad]
    assert corrupt[0]["path"] and corrupt[0]["error"]
    plain = cli.run("runs", "--limit", "4")
    assert bad[:8] in plain.stdout and "CORRUPT" in plain.stdout


# ---------------------------------------------------------------------------- bug 10


def test_answer_a_run_that_waits_for_no_person_is_exit_1(cli, tmp_path):
    done = cli.start("onboarding_account", "--set", "name=Ada")["run_id"]
    event = cli.start("deploy_gate")["run_id"]
    rules = tmp_path / "rules.yaml"
    rules.write_text("- prompt: x\n  answer: y\n")
    for rid, needle in ((done, "status: completed"), (event, "waits for an event")):
        with unchanged(cli):
            r = cli.run("answer", "--script", str(rules), "--run", rid)
            assert_one_line_error(r, 1, rid, "not waiting for a person", needle)
            rj = cli.run("answer", "--script", str(rules), "--run", rid, "--json")
            assert rj.json()["error"]["code"] == "no_prompt"
    # A parent whose child asks is a run with a person's wait.
    parent = cli.start("onboarding", "--set", "name=Ada")["run_id"]
    rules.write_text("- prompt: welcome note\n  answer: hi\n")
    assert cli.run("answer", "--script", str(rules), "--run", parent).exit_code == 0


# ---------------------------------------------------------------------------- bug 11


def test_tick_run_quiet_prints_no_card_and_the_exit_code_tells(cli):
    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    rid = cli.start("approval", "--no-tick")["run_id"]
    r = cli.run("tick", rid, "--quiet")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", ""), r.output
    assert cli.state(rid)["status"] == "waiting"
    failing = cli.start("failing", "--no-tick")["run_id"]
    r = cli.run("tick", failing, "-q")
    assert (r.exit_code, r.stdout) == (3, ""), r.output
    r = cli.run("tick", rid, "--quiet", "--json")  # --json still prints its document
    assert r.json()["run_id"] == rid


# ---------------------------------------------------------------------------- friction


def test_shell_completion_is_on_and_completes_workflows_and_runs(cli):
    r = cli.run("--show-completion", "bash")
    assert r.exit_code == 0 and "_abstractrt_completion" in r.stdout, r.output
    done = cli.start("onboarding_account", "--set", "name=Ada")["run_id"]
    waiting = cli.start("approval")["run_id"]

    def complete(words: str, cword: int) -> list:
        env = dict(cli.env, _ABSTRACTRT_COMPLETE="complete_bash", COMP_WORDS=words,
                   COMP_CWORD=str(cword))
        cp = subprocess.run(abstractrt_command(), capture_output=True,
                            text=True, env=env, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.split()

    assert complete("abstractrt show ", 2) == [waiting, done]  # waiting runs first
    assert complete(f"abstractrt resume {waiting[:3]}", 2) == [waiting]
    assert complete("abstractrt start onb", 2) == ["onboarding", "onboarding_account",
                                                   "onboarding_swag", "onboarding_welcome"]
    assert "--max-steps" in complete("abstractrt tick --m", 2)


def test_show_prints_the_stored_traceback_with_file_and_line(cli):
    path = cli.write_workflow("broken_step.py", '''
        from abstractrt_cli import StepPlan, WorkflowSpec


        def helper(vars):
            return vars["missing_key"]


        def b(run, ctx):
            helper(run.vars)
            return StepPlan(node_id="b", complete_output={})


        broken = WorkflowSpec(workflow_id="broken_step", entry_node="b", nodes={"b": b})
    ''')
    run = cli.start("broken_step")
    assert run["status"] == "failed"
    info = run["error_info"]
    assert info["type"] == "KeyError" and info["file"] == str(path) and info["line"] == 6
    out = cli.ok("show", run["run_id"]).stdout
    assert re.search(rf"Raised at:\s+{re.escape(str(path))}, line 6", out), out
    assert "Traceback:" in out and "helper(run.vars)" in out and "KeyError: 'missing_key'" in out


def test_show_colours_failed_in_a_terminal(cli, monkeypatch):
    from abstractrt_cli.cli import render

    cli.write_workflow("failing.py", FAILING_WORKFLOW)
    rid = cli.start("failing")["run_id"]
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setattr(render, "is_plain", lambda: False)
    out = cli.ok("show", rid).stdout
    assert re.search(r"\x1b\[[0-9;]*31m[^\x1b]*failed", out), repr(out)


def test_workflows_reports_a_broken_graph_when_listing(cli):
    cli.write_workflow("graphs.py", '''
        from abstractrt_cli import StepPlan, WorkflowSpec


        def first(run, ctx):
            return StepPlan(node_id="first", next_node="secnod")


        def second(run, ctx):
            return StepPlan("second", None, "first")


        typo = WorkflowSpec(workflow_id="typo", entry_node="first",
                            nodes={"first": first, "second": second})
        no_entry = WorkflowSpec(workflow_id="no_entry", entry_node="start", nodes={"second": second})
        fine = WorkflowSpec(workflow_id="fine", entry_node="second",
                            nodes={"first": lambda run, ctx: StepPlan(node_id="first", next_node="second"),
                                   "second": second})
    ''')
    r = cli.run("workflows", "--json")
    assert r.exit_code == 1, r.output
    by_id = {w["workflow_id"]: w for w in r.json()}
    assert "next_node 'secnod'" in by_id["typo"]["error"] and "line 6" in by_id["typo"]["error"]
    assert "entry node 'start' is not one of its nodes" in by_id["no_entry"]["error"]
    assert by_id["fine"]["error"] is None and by_id["approval"]["error"] is None
    assert any("secnod" in line for line in r.stderr.splitlines())


def test_a_run_left_running_says_how_to_continue(cli):
    r = cli.run("start", "approval", "--no-tick")
    rid = re.search(r"started run (\S+)", r.stderr).group(1)
    assert f"continue it with `abstractrt tick {rid}`" in r.stderr, r.output
    cli.write_workflow("spin.py", '''
        from abstractrt_cli import StepPlan, WorkflowSpec
        spin = WorkflowSpec(workflow_id="spin", entry_node="a",
                            nodes={"a": lambda run, ctx: StepPlan(node_id="a", next_node="a")})
    ''')
    r = cli.run("start", "spin", "--max-steps", "3")
    assert r.exit_code == 0, r.output
    assert "still running (stopped after --max-steps 3)" in r.stderr
    rid = re.search(r"started run (\S+)", r.stderr).group(1)
    r = cli.run("tick", rid, "--max-steps", "2")
    assert f"`abstractrt tick {rid}`" in r.stderr


def test_config_shows_each_setting_and_where_it_came_from(cli, tmp_path):
    cli.config.write_text(f"workflows_dir: {cli.workflows_dir}\n")
    env = {k: v for k, v in cli.env.items() if k != "ABSTRACTRT_WORKFLOWS"}
    cp = subprocess.run(abstractrt_command() + ["config", "--json"],
                        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    rows = {r["setting"]: r for r in json.loads(cp.stdout)["settings"]}
    assert rows["data_dir"] == {"setting": "data_dir", "value": str(cli.data_dir), "from": "env"}
    assert rows["workflows_dir"]["from"] == "config"
    assert rows["store"]["from"] == "default"
    assert rows["config_file"]["value"] == str(cli.config) and rows["config_file"]["exists"]
    assert rows["max_payload"]["value"] == 16 * 1024 * 1024
    plain = cli.run("config", "--data-dir", "rel/data")
    assert plain.exit_code == 0, plain.output
    assert str(tmp_path / "rel" / "data") in plain.stdout  # absolute, though given relative
    assert re.search(r"data_dir\s+\S+\s+option", plain.stdout), plain.stdout


def test_no_runs_says_which_data_dir_was_read(cli):
    r = cli.run("runs")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"no runs in {cli.data_dir} (no data dir there yet)"
    cli.start("approval")
    assert cli.run("runs", "--status", "failed").stdout.strip() == f"no matching runs in {cli.data_dir}"


def test_cron_in_another_directory_is_told_which_workflows_dir_to_use(cli, tmp_path):
    rid = cli.start("approval", "--no-tick")["run_id"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in cli.env.items() if k != "ABSTRACTRT_WORKFLOWS"}
    cp = subprocess.run(abstractrt_command() + ["tick", "--all"],
                        capture_output=True, text=True, env=env, cwd=elsewhere, timeout=60)
    assert cp.returncode == 1, cp.stderr
    assert f"use --workflows {cli.workflows_dir}" in cp.stderr, cp.stderr
    assert str(elsewhere / "workflows") in cp.stderr  # the absolute path it looked in
    assert rid in cp.stderr


def test_people_see_local_times_json_keeps_utc(cli):
    rid = cli.start("approval")["run_id"]
    env = dict(cli.env, TZ="Asia/Kolkata")
    plain = subprocess.run(abstractrt_command() + ["show", rid],
                           capture_output=True, text=True, env=env, timeout=60)
    assert re.search(r"Created:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+05:30", plain.stdout), plain.stdout
    assert "+05:30" in subprocess.run(abstractrt_command() + ["ledger", rid],
                                      capture_output=True, text=True, env=env, timeout=60).stdout
    doc = json.loads(subprocess.run(abstractrt_command()
                                    + ["show", rid, "--json"], capture_output=True, text=True,
                                    env=env, timeout=60).stdout)
    assert doc["created_at"].endswith("+00:00")


def test_runs_since_and_parent(cli):
    old = cli.start_with_id("approval", "old-run-0001")
    from abstractrt_cli.storage.files import open_file_stores

    rs, _ = open_file_stores(cli.data_dir)
    run = rs.load(old)
    run.created_at = "2020-01-01T00:00:00+00:00"
    rs.save(run)
    parent = cli.start("onboarding", "--set", "name=Ada")["run_id"]
    lonely = cli.start("approval")["run_id"]
    recent = [r["run_id"] for r in cli.run("runs", "--since", "1h", "--json").json()]
    assert old not in recent and parent in recent and lonely in recent
    kids = cli.run("runs", "--parent", parent[:8], "--json").json()
    assert kids and {k["parent_run_id"] for k in kids} == {parent}
    assert_one_line_error(cli.run("runs", "--since", "soon"), 2, "--since", "not a duration")


def test_wording(cli):
    # The waiting-on column says the reason once; a job shows what kind of job it is.
    job = cli.start("tool_job")["run_id"]
    row = next(ln for ln in cli.run("runs").stdout.splitlines() if ln.startswith(job[:8]))
    assert "job: llm_call" in row and "job: job:" not in row, row
    # "1 record", not "1 records".
    rid = cli.start("approval", "--no-tick")["run_id"]
    assert cli.run("ledger", rid).stdout.splitlines()[0].endswith(": 1 record")
    # cancel says which children it cancelled.
    parent = cli.start("onboarding", "--set", "name=Ada")["run_id"]
    kids = [k["run_id"] for k in cli.state(parent)["children"] if k["status"] == "waiting"]
    r = cli.run("cancel", parent)
    assert r.exit_code == 0, r.output
    assert "also cancelled" in r.stderr and all(k in r.stderr for k in kids), r.stderr
    # start with a typo suggests the workflow meant.
    r = cli.run("start", "aproval")
    assert_one_line_error(r, 1, "no such workflow: aproval", "did you mean 'approval'?")


# ---------------------------------------------------------------------------- payload limits


def test_payload_limits_through_the_command(cli, tmp_path):
    from test_payloads import BILLION_LAUGHS

    rid = cli.start("tool_job")["run_id"]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + "[" * 30_000 + "]" * 30_000 + "}")
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * 3000 + '"}')
    nan = tmp_path / "nan.yaml"
    nan.write_text("score: .nan\n")
    exe = abstractrt_command()
    for path, needle in ((bomb, "alias"), (deep, "nested more than 200 levels"),
                         (big, "more than the limit of 2.0 kB"), (nan, "NaN and Infinity")):
        env = dict(cli.env, ABSTRACTRT_MAX_PAYLOAD="2k") if path == big else cli.env
        with unchanged(cli):
            t0 = time.monotonic()
            cp = subprocess.run(exe + ["resume", rid, "--payload-file", str(path)],
                                capture_output=True, text=True, env=env, timeout=60)
            assert time.monotonic() - t0 < 10
        assert cp.returncode == 1, (path, cp.stderr)
        assert cp.stderr.startswith("error: ") and needle in cp.stderr and cp.stderr.count("\n") == 1
        assert "RecursionError" not in cp.stderr and "internal error" not in cp.stderr
    assert cli.state(rid)["status"] == "waiting"


# ---------------------------------------------------------------------------- --json usage errors


@pytest.mark.parametrize("args", [["runs", "--limit", "0"], ["frobnicate"], ["start"],
                                  ["waiting", "--reason", "sleepy"], ["tick"]],
                         ids=lambda a: " ".join(a))
def test_usage_errors_with_json_print_the_json_error_document(cli, args):
    for where in ("after", "before"):
        argv = args + ["--json"] if where == "after" else ["--json"] + args
        r = cli.run(*argv)
        assert r.exit_code == 2, r.output
        doc = r.json()["error"]
        assert (doc["code"], doc["exit"]) == ("usage", 2), r.output
        assert doc["message"] and "Traceback" not in r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert lines == ["error: " + doc["message"]], r.output
    # Without --json, Typer's own usage message is kept.
    r = cli.run(*args)
    assert r.exit_code == 2 and r.stdout == "" and ("Usage" in r.stderr or "error" in r.stderr)


def test_paths_in_messages_are_absolute(cli, tmp_path):
    r = cli.run("workflows", "--workflows", "nowhere")
    assert f"workflows directory {tmp_path / 'nowhere'} does not exist" in r.stderr, r.output


def test_a_json_error_is_one_document_for_a_missing_run(cli):
    r = cli.run("show", "nosuchrun1", "--json")
    assert r.json() == {"error": {"code": "run_not_found", "exit": 1,
                                  "message": "no such run: nosuchrun1",
                                  "hint": "list runs with `abstractrt runs`"}}

