"""The README tells the truth: its workflow example and library snippet run as shown,
its command reference names exactly the commands the CLI has, and the quick start's
scripts exist and the CI entry point calls the README's test command."""

from __future__ import annotations

import re
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
