"""stdout is the command's own output: what workflow code prints goes to stderr, with or
without --json (issue 9: `tick --all --quiet` was not quiet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import empty_config

NOISY = '''
from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec

def ask(run, ctx):
    print("node ask is running")          # chatty workflow code
    return StepPlan("ask", effect=Effect(EffectType.ASK_USER, {"prompt": "Go?"}, "go"), next_node="end")

def end(run, ctx):
    print("node end is running")
    return StepPlan("end", complete_output={"go": run.vars["go"]["response"]})

noisy = WorkflowSpec("noisy", "ask", {"ask": ask, "end": end})
'''


def _abstractrt() -> list:
    exe = Path(sys.executable).parent / "abstractrt"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "abstractrt_cli"]


def test_prints_in_workflow_code_go_to_stderr(tmp_path: Path) -> None:
    wf = tmp_path / "workflows"
    wf.mkdir()
    (wf / "noisy.py").write_text(NOISY, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "ABSTRACTRT_DATA_DIR": str(tmp_path / "data"),
           "ABSTRACTRT_WORKFLOWS": str(wf), "ABSTRACTRT_CONFIG": empty_config(tmp_path),
           "ABSTRACTRT_ACTOR": "tester", "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(_abstractrt() + list(args), capture_output=True, text=True,
                              env=env, timeout=60)

    started = run("start", "noisy", "--json")
    assert started.returncode == 0, started.stderr
    run_id = json.loads(started.stdout)["run_id"]
    assert "node ask is running" in started.stderr

    resumed = run("--json", "resume", run_id, "--answer", "yes")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["output"] == {"go": "yes"}
    assert "node end is running" in resumed.stderr

    # Without --json too: the person still sees the prints (on stderr), and stdout holds
    # only the command's own output.
    plain = run("start", "noisy")
    assert plain.returncode == 0, plain.stderr
    assert "node ask is running" in plain.stderr and "node ask is running" not in plain.stdout
    assert "Go?" in plain.stdout

    # A cron tick with --quiet prints only its summary line on stdout, even when nodes print.
    run("start", "noisy", "--no-tick")
    quiet = run("tick", "--all", "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("tick --all: 1 moved"), quiet.stdout
    assert "node ask is running" not in quiet.stdout and "node ask is running" in quiet.stderr
