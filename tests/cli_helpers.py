"""Shared helpers for the command-line tests: an isolated environment, invoking the app
in-process (``CliRunner``) or as the installed program (``subprocess``), snapshots of the
data dir, and a helper process that holds a run's lock.

A test module makes its own fixture from ``CLI``::

    @pytest.fixture
    def cli(tmp_path, monkeypatch):
        return CLI(tmp_path, monkeypatch)
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_WORKFLOWS = REPO / "workflows"

# Variables every CLI test sets; any other inherited ABSTRACTRT_* variable is removed.
ENV_PREFIX = "ABSTRACTRT_"


def abstractrt_command() -> List[str]:
    """The installed console script beside this interpreter, else ``python -m``."""
    exe = Path(sys.executable).parent / "abstractrt"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "abstractrt_cli"]


def empty_config(directory: Path) -> str:
    """An empty config file in ``directory`` for ``ABSTRACTRT_CONFIG``: it must exist, and
    the user's own config must never leak into a test."""
    path = directory / "empty-config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("", encoding="utf-8")
    return str(path)


def _is_lock(path: Path) -> bool:
    # Lock files are kept after release by design (STYLE.md habit 10): they are not data.
    return path.name.endswith(".lock") or "locks" in path.parts


_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _sqlite_content(path: Path) -> str:
    """The logical content of a SQLite file (its WAL included), as SQL text."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def snapshot(root: Path) -> Dict[str, Tuple[Any, int]]:
    """Every file's bytes and mode (and every directory's mode) under ``root``.

    Lock files are left out. The query index is a SQLite database in WAL mode: merely
    opening it may create, checkpoint or delete its ``-wal``/``-shm`` files without any
    change to what it holds, so it is compared by its logical content (and mode) instead.
    """
    if not root.exists():
        return {}
    out: Dict[str, Tuple[Any, int]] = {".": ("dir", stat.S_IMODE(root.stat().st_mode))}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if _is_lock(rel) or p.name.endswith(_SQLITE_SIDE_FILES):
            continue
        st = p.lstat()
        if stat.S_ISDIR(st.st_mode):
            out[rel.as_posix() + "/"] = ("dir", stat.S_IMODE(st.st_mode))
        elif p.suffix in (".sqlite3", ".sqlite", ".db"):
            out[rel.as_posix()] = (_sqlite_content(p), stat.S_IMODE(st.st_mode))
        else:
            out[rel.as_posix()] = (p.read_bytes(), stat.S_IMODE(st.st_mode))
    return out


def diff_snapshots(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """Human-readable differences (empty when equal)."""
    out = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            out.append(f"removed {k}")
        elif k not in before:
            out.append(f"added {k}")
        elif before[k] != after[k]:
            out.append(f"changed {k}")
    return out


class Result:
    """What a command did: exit code, stdout, stderr (CliRunner or subprocess alike)."""

    def __init__(
        self,
        args: Sequence[str],
        exit_code: int,
        stdout: str,
        stderr: str,
        exception: Optional[BaseException] = None,
    ) -> None:
        self.args = list(args)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.exception = exception

    @property
    def output(self) -> str:
        """For assertion messages: the command, its exit code and both streams."""
        return (
            f"$ abstractrt {shlex.join(self.args)}\n[exit {self.exit_code}]\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    def json(self) -> Any:
        """stdout parsed as exactly one JSON document (json.loads refuses trailing data)."""
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return self.output


def invoked(args: Sequence[str], r: Any) -> Result:
    """A ``Result`` from a ``CliRunner`` result (a SystemExit is an exit, not an exception)."""
    exc = r.exception if not isinstance(r.exception, SystemExit) else None
    return Result(args, r.exit_code, r.stdout, r.stderr, exc)


class CLI:
    """An isolated abstractrt world in ``tmp``: data dir, workflows dir, environment."""

    def __init__(
        self,
        tmp: Path,
        monkeypatch: Optional[pytest.MonkeyPatch] = None,
        *,
        copy_examples: bool = True,
    ) -> None:
        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.workflows_dir = tmp / "workflows"
        # An empty config file: ABSTRACTRT_CONFIG must name a file that exists, and the
        # user's own config must never leak into a test.
        self.config = tmp / "config" / "config.yaml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text("", encoding="utf-8")
        self.workflows_dir.mkdir(parents=True, exist_ok=True)
        if copy_examples:
            for f in sorted(EXAMPLE_WORKFLOWS.glob("*.py")):
                shutil.copy(f, self.workflows_dir / f.name)
        self.env = self._env()
        if monkeypatch is not None:
            for k in list(os.environ):
                if k.startswith(ENV_PREFIX):
                    monkeypatch.delenv(k)
            for k, v in self.env.items():
                if k.startswith(ENV_PREFIX) or k in ("NO_COLOR", "COLUMNS", "XDG_CONFIG_HOME"):
                    monkeypatch.setenv(k, v)
        self._runner = CliRunner()

    def _env(self) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.update(
            {
                "ABSTRACTRT_DATA_DIR": str(self.data_dir),
                "ABSTRACTRT_WORKFLOWS": str(self.workflows_dir),
                "ABSTRACTRT_CONFIG": str(self.config),
                "ABSTRACTRT_ACTOR": "tester",
                "NO_COLOR": "1",
                "COLUMNS": "200",
                # No signing key or config of the person running the tests leaks in.
                "XDG_CONFIG_HOME": str(self.tmp / "xdg-config"),
            }
        )
        return env

    # -- running commands

    def __call__(self, *args: str, input: Optional[str] = None) -> Result:
        """Run ``abstractrt ARGS`` in-process with CliRunner."""
        from abstractrt_cli.cli.app import app

        res = invoked(args, self._runner.invoke(app, list(args), input=input, catch_exceptions=True))
        if res.exception is not None:  # an exception escaping the app is a bug: show it
            import traceback

            res.stderr += "".join(traceback.format_exception(res.exception))
        return res

    def ok(self, *args: str, input: Optional[str] = None) -> Result:
        """Run a command that must succeed (exit 0)."""
        r = self(*args, input=input)
        assert r.exit_code == 0, r.output
        return r

    def run(
        self,
        *args: str,
        input: Optional[str] = None,
        timeout: float = 60,
        env: Optional[Dict[str, str]] = None,
    ) -> Result:
        """Run the installed ``abstractrt`` as a real process."""
        cp = subprocess.run(
            abstractrt_command() + list(args),
            input=input,
            text=True,
            capture_output=True,
            env=env or self.env,
            cwd=self.tmp,
            timeout=timeout,
        )
        return Result(args, cp.returncode, cp.stdout, cp.stderr)

    def start(self, workflow: str, *args: str) -> Dict[str, Any]:
        """Start a run (``--json``) and return its RunState JSON."""
        r = self("start", workflow, *args, "--json")
        assert r.exit_code in (0, 3), r.output
        return r.json()

    def state(self, run_id: str) -> Dict[str, Any]:
        return self.ok("show", run_id, "--json").json()

    # -- the stores, directly

    def stores(self) -> Tuple[Any, Any]:
        from abstractrt_cli.storage.files import open_file_stores

        return open_file_stores(self.data_dir)

    def runtime(self) -> Any:
        from abstractrt_cli import Runtime
        from abstractrt_cli.loader import load_workflows

        rs, ls = self.stores()
        return Runtime(
            run_store=rs,
            ledger_store=ls,
            workflow_registry=load_workflows(self.workflows_dir).registry,
        )

    def start_with_id(
        self,
        workflow: str,
        run_id: str,
        *,
        tick: bool = False,
        vars: Optional[Dict[str, Any]] = None,
    ) -> str:
        """Create a run with a chosen id through the library (e.g. ids sharing a prefix)."""
        from abstractrt_cli.loader import load_workflows

        rt = self.runtime()
        spec = load_workflows(self.workflows_dir).entry(workflow).spec
        rid = rt.start(workflow=spec, vars=vars or {}, run_id=run_id, actor_id="tester")
        if tick:
            rt.tick(run_id=rid)
        return rid

    # -- files

    def _find(self, run_id: str, suffix: str) -> Path:
        hits = [
            p
            for p in self.data_dir.rglob(f"*{suffix}")
            if run_id in p.name and not _is_lock(p.relative_to(self.data_dir))
        ]
        assert len(hits) == 1, f"expected one {suffix} file for run {run_id}, found {hits}"
        return hits[0]

    def run_file(self, run_id: str) -> Path:
        return self._find(run_id, ".json")

    def ledger_file(self, run_id: str) -> Path:
        return self._find(run_id, ".jsonl")

    def write_workflow(self, name: str, source: str) -> Path:
        path = self.workflows_dir / name
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    def snapshot(self) -> Dict[str, Tuple[Any, int]]:
        return snapshot(self.data_dir)


def assert_one_line_error(r: Result, code: int, *needles: str) -> str:
    """The command failed with ``code`` and one ``error:`` line on stderr naming the problem."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.stdout + r.stderr, r.output
    assert "internal error" not in r.stderr, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    line = lines[0]
    assert line.startswith("error: "), r.output
    for n in needles:
        assert n in line, f"{n!r} not in the error line\n{r.output}"
    return line


@contextmanager
def unchanged(cli: CLI, *, ignore: Sequence[str] = ()) -> Iterator[None]:
    """Assert the data dir is byte-for-byte (and mode-for-mode) the same after the block.

    ``ignore``: path prefixes (relative to the data dir) left out of the comparison.
    """

    def snap() -> Dict[str, Tuple[Any, int]]:
        return {k: v for k, v in cli.snapshot().items() if not k.startswith(tuple(ignore))}

    before = snap()
    yield
    after = snap()
    assert before == after, "data dir changed: " + ", ".join(diff_snapshots(before, after))


_HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from abstractrt_cli.storage.files import open_file_stores

    run_store, _ = open_file_stores(Path(sys.argv[1]))
    with run_store.lock(sys.argv[2], timeout=10):
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes our stdin
    print("released", flush=True)
""")


@contextmanager
def hold_lock(data_dir: Path, run_id: str) -> Iterator[subprocess.Popen]:
    """Hold a run's lock in another process (the store's own ``lock()``) for the block."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data_dir), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "locked", (
            f"lock holder failed: {line!r} {p.stderr.read() if p.stderr else ''}"
        )
        yield p
    finally:
        if p.stdin:
            p.stdin.close()
        try:
            p.wait(timeout=15)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for stream in (p.stdout, p.stderr):
                if stream:
                    stream.close()


# Small workflows for tests (written into the test's workflows dir as needed).

FAILING_WORKFLOW = '''
"""Always fails: its only node raises."""

from abstractrt_cli import StepPlan, WorkflowSpec


def explode(run, ctx):
    raise RuntimeError("kaboom")


failing = WorkflowSpec(workflow_id="failing", entry_node="explode", nodes={"explode": explode})
'''

TIMER_WORKFLOW = '''
"""Sleeps until vars["until"], then completes."""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def sleep(run, ctx):
    return StepPlan(node_id="sleep", next_node="done",
                    effect=Effect(EffectType.WAIT_UNTIL, {"until": run.vars["until"]},
                                  result_key="woke"))


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={"woke": run.vars["woke"]})


timer = WorkflowSpec(workflow_id="timer", entry_node="sleep", nodes={"sleep": sleep, "done": done})
'''
