"""Helpers for the worker tests (no tests here): a background ``abstractrt worker``, waiting for a
condition with a deadline, and reading the side file the test workflows write.

Nothing here sleeps a fixed time to make a test pass: every wait polls a condition until
a generous deadline, so a slow machine makes a test slower, not red.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from cli_helpers import abstractrt_command

ASSETS = Path(__file__).resolve().parent / "assets" / "worker"
DEADLINE = 90.0  # seconds: generous, for a loaded CI machine


def wait_for(what: str, check: Callable[[], Any], timeout: float = DEADLINE,
             every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Background:
    """``abstractrt worker ARGS`` as a background process, its output in files."""

    count = 0

    def __init__(self, tmp: Path, env: Dict[str, str], *args: str, command: str = "worker") -> None:
        Background.count += 1
        name = f"{command}-{Background.count}"
        self.out_path = tmp / f"{name}.out"
        self.err_path = tmp / f"{name}.err"
        self.args = [command, *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(abstractrt_command() + self.args, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env, cwd=tmp)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def output(self) -> str:
        return (f"$ abstractrt {' '.join(self.args)}  [exit {self.proc.poll()}]\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")

    def wait_started(self, timeout: float = DEADLINE) -> None:
        wait_for(f"the worker's start line\n{self.output()}",
                 lambda: " started: " in self.stderr or self.proc.poll() is not None, timeout)
        assert self.proc.poll() is None, self.output()

    def wait_rounds(self, beats_dir: Path, rounds: int, timeout: float = DEADLINE) -> None:
        """Until this worker's heartbeat says it finished ``rounds`` rounds (files store)."""
        def done() -> bool:
            for p in beats_dir.glob("*.json") if beats_dir.is_dir() else ():
                try:
                    beat = json.loads(p.read_text())
                except ValueError:
                    continue  # being replaced
                if beat.get("pid") == self.proc.pid and beat.get("rounds", 0) >= rounds:
                    return True
            return False

        wait_for(f"{rounds} rounds of worker pid {self.proc.pid}\n{self.output()}", done, timeout)

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the worker did not stop within {timeout} s\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def side_lines(side: Path) -> List[Tuple[str, int, str]]:
    """(run id, step, token) for every execution of a ``side`` effect, in order."""
    if not side.exists():
        return []
    out = []
    for line in side.read_text(encoding="utf-8").splitlines():
        rid, n, token = line.split()
        out.append((rid, int(n), token))
    return out


def executions(side: Path) -> Dict[Tuple[str, int], List[str]]:
    """The tokens of each (run, step), in the order the executions happened."""
    got: Dict[Tuple[str, int], List[str]] = defaultdict(list)
    for rid, n, token in side_lines(side):
        got[(rid, n)].append(token)
    return dict(got)


def recorded_tokens(ledger: List[Dict[str, Any]]) -> Dict[int, List[str]]:
    """The tokens of the completed ``side`` effect records of a run's ledger, by step."""
    got: Dict[int, List[str]] = defaultdict(list)
    for rec in ledger:
        effect = rec.get("effect") or {}
        if rec.get("kind") == "effect" and effect.get("type") == "side" \
                and rec.get("status") == "completed":
            got[int(effect["payload"]["n"])].append(rec["result"]["token"])
    return dict(got)
