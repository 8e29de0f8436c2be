"""The README tells the truth: its workflow example and library snippet run as shown,
its command reference names exactly the commands the CLI has, and the quick start's
scripts exist and the CI entry point calls the README's test command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from cli_helpers import empty_config
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_workflow_and_library_snippet_run(tmp_path: Path) -> None:
    workflow, library = _python_blocks()[:2]
    assert "workflows/greet.py" in workflow
    data_dir = tmp_path / "data"
    script = workflow + "\n" + library.replace('"/tmp/rt-data"', repr(str(data_dir)))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "{'greeting': 'Hello, Ada!'}" in proc.stdout
    assert proc.stdout.strip().endswith("True")
    assert list((data_dir).rglob("*.json")), "the file stores wrote nothing"


def test_readme_greet_workflow_runs_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    from abstractrt_cli.cli.app import app

    wf_dir = tmp_path / "workflows"
    wf_dir.mkdir()
    (wf_dir / "greet.py").write_text(_python_blocks()[0], encoding="utf-8")
    monkeypatch.setenv("ABSTRACTRT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ABSTRACTRT_WORKFLOWS", str(wf_dir))
    monkeypatch.setenv("ABSTRACTRT_CONFIG", empty_config(tmp_path))
    runner = CliRunner()
    r = runner.invoke(app, ["start", "greet", "--json"])
    assert r.exit_code == 0, r.output
    import json

    run_id = json.loads(r.stdout)["run_id"]
    r = runner.invoke(app, ["resume", run_id, "--answer", "Ada", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["output"] == {"greeting": "Hello, Ada!"}


def test_readme_command_reference_matches_the_cli() -> None:
    import typer.main

    from abstractrt_cli.cli.app import app

    group = typer.main.get_command(app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    section = README.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `abstractrt (\w+)", section, flags=re.M))
    assert documented == commands


def test_quick_start_scripts_and_ci() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(bash scripts/\S+)", quick, flags=re.M)
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for cmd in commands:
        assert (ROOT / cmd.split()[1]).is_file()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in ci


def test_readme_exit_codes_table() -> None:
    section = README.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| (\d) \|", section, flags=re.M) == ["0", "1", "2", "3", "4"]


def _normalised(text: str, ids: dict) -> list:
    for real, shown in ids.items():
        text = text.replace(real, shown)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d", "<time>", text)
    text = re.sub(r"\(\d+s ago\)", "(<ago>)", text)
    text = re.sub(r"\b\d+ms\b", "<ms>", text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def test_quick_start_transcript_matches_the_real_output(tmp_path: Path) -> None:
    """The README's transcript, command by command, against what the installed program
    prints (run ids, times and durations aside)."""
    from cli_helpers import abstractrt_command

    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", quick, flags=re.S).group(1)
    steps: list = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    env.update({"ABSTRACTRT_DATA_DIR": str(tmp_path / "data"),
                "ABSTRACTRT_WORKFLOWS": str(ROOT / "workflows"),
                "ABSTRACTRT_CONFIG": empty_config(tmp_path), "ABSTRACTRT_ACTOR": "alice",
                "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "NO_COLOR": "1", "COLUMNS": "200",
                "TZ": "Europe/Berlin"})
    ids: dict = {}
    shown_id = re.search(r"started run (\S+)", block).group(1)
    for command, expected in steps:
        argv = shlex.split(command, comments=True)
        assert argv[0] == "abstractrt", command
        if ids:
            real_id = next(iter(ids))
            argv = [a.replace(shown_id[:6], real_id[:6]) for a in argv]
        cp = subprocess.run(abstractrt_command() + argv[1:], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, timeout=60)
        if not ids:
            real_id = re.search(r"started run (\S+)", cp.stdout).group(1)
            ids = {real_id: shown_id, real_id[:8]: shown_id[:8]}
        assert _normalised(cp.stdout, ids) == _normalised("\n".join(expected), {}), (
            f"$ {command}\n--- real output\n{cp.stdout}")
