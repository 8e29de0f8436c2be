"""``abstractrt answer`` as a person uses it: in a real pseudo-terminal.

The installed program runs with its stdin, stdout and stderr on the slave side of a pty;
the test reads the master side with ``poll`` and a deadline, so a command that hangs
fails the test instead of blocking the suite. A pipe instead of a terminal must be
refused with a pointer to the non-interactive ways of answering.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from cli_helpers import empty_config, snapshot

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

ABSTRACTRT = Path(sys.executable).parent / "abstractrt"
EXAMPLES = Path(__file__).resolve().parent.parent / "workflows"
TIMEOUT = 15.0  # generous per step: a slow CI machine must not make this flaky


# ---------------------------------------------------------------------------- helpers


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    e.update({
        "ABSTRACTRT_DATA_DIR": str(tmp_path / "data"),
        "ABSTRACTRT_WORKFLOWS": str(EXAMPLES),
        "ABSTRACTRT_CONFIG": empty_config(tmp_path),
        "ABSTRACTRT_ACTOR": "tester",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "TERM": "xterm",
    })
    return e


def run_cli(env: Dict[str, str], *args: str,
            stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ABSTRACTRT), *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def run_json(env: Dict[str, str], *args: str) -> Any:
    cp = run_cli(env, *args, "--json")
    assert cp.returncode == 0, f"{args}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return json.loads(cp.stdout)


def start(env: Dict[str, str], workflow: str, *sets: str) -> str:
    args = [a for s in sets for a in ("--set", s)]
    run = run_json(env, "start", workflow, *args)
    assert run["status"] == "waiting", run
    return run["run_id"]


def state(env: Dict[str, str], run_id: str) -> Dict[str, Any]:
    return run_json(env, "show", run_id)


def readable(fd: int, timeout: float) -> bool:
    """``fd`` has data (or EOF) within ``timeout`` seconds. poll(), not select(): select
    cannot watch a descriptor numbered 1024 or more, which a long test session reaches."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


class Terminal:
    """``abstractrt ARGS`` on a pseudo-terminal, driven like a person at a keyboard."""

    def __init__(self, env: Dict[str, str], *args: str, rows: int = 50, cols: int = 200) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.args = args
        try:
            self.proc = subprocess.Popen([str(ABSTRACTRT), *args], stdin=slave, stdout=slave,
                                         stderr=slave, env=env, close_fds=True)
        finally:
            os.close(slave)
        self.raw = b""
        self.pos = 0  # how far expect() has consumed the transcript
        self.eof = False

    @property
    def transcript(self) -> str:
        text = self.raw.decode("utf-8", "replace").replace("\r\n", "\n")
        return ANSI.sub("", text)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return
        if not readable(self.master, remaining):
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every slave fd is closed, the program has exited
            data = b""
        if data:
            self.raw += data
        else:
            self.eof = True

    def expect(self, text: str, timeout: float = TIMEOUT) -> str:
        """Wait until ``text`` appears after what was already consumed; return the output
        up to and including it."""
        deadline = time.monotonic() + timeout
        while True:
            plain = self.transcript
            i = plain.find(text, self.pos)
            if i >= 0:
                seen, self.pos = plain[self.pos:i + len(text)], i + len(text)
                return seen
            if self.eof or time.monotonic() >= deadline:
                why = "the program exited" if self.eof else f"{timeout}s passed"
                raise AssertionError(f"{text!r} did not appear ({why}) in `abstractrt "
                                     f"{' '.join(self.args)}`; terminal so far:\n{plain}")
            self._fill(deadline)

    def type(self, line: str) -> None:
        """Type a line and press Enter (a terminal sends CR; the line discipline maps it)."""
        os.write(self.master, line.encode("utf-8") + b"\r")

    def wait_blocked(self, timeout: float = 5.0) -> None:
        """Wait until the program sleeps in a read of the terminal (Linux: /proc)."""
        wchan = Path(f"/proc/{self.proc.pid}/wchan")
        if not wchan.exists():
            time.sleep(0.5)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                where = wchan.read_text()
            except OSError:
                break
            if where not in ("", "0"):  # asleep in the kernel: the tty read
                time.sleep(0.05)
                return
            time.sleep(0.01)

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Read to the end of output and return the exit code."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._fill(deadline)
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`abstractrt {' '.join(self.args)}` did not exit; terminal:\n"
                                 f"{self.transcript}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(env: Dict[str, str]):
    opened: List[Terminal] = []

    def open_terminal(*args: str, env_override: Optional[Dict[str, str]] = None) -> Terminal:
        t = Terminal(env_override or env, *args)
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()


def resumes(env: Dict[str, str], run_id: str) -> List[Dict[str, Any]]:
    records = run_json(env, "ledger", run_id)
    return [r for r in records if r.get("kind") == "resume"]


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("typed, verdict, approved", [
    ("1", "approve", True),      # the menu number
    ("Reject", "reject", False),  # the choice's text, any case
])
def test_menu_refuses_invalid_choice_then_takes_number_then_free_text(
        env, terminal, typed, verdict, approved):
    rid = start(env, "approval", "title=New laptop", "amount=1450")
    t = terminal("answer")

    card = t.expect("answer (number or text; empty to skip; Ctrl-D to stop)> ")
    assert "Approve expense 'New laptop' for 1450 EUR?" in card
    assert "1) approve" in card and "2) reject" in card
    assert rid in card

    t.type("maybe")
    refusal = t.expect("> ")
    assert "invalid answer 'maybe'" in refusal
    assert "must be one of 'approve', 'reject'" in refusal
    assert "Approve expense" not in refusal  # asked again in place, not the whole card

    t.type("3")  # a number off the menu says which numbers there are
    refusal = t.expect("> ")
    assert "there is no choice 3" in refusal and "pick 1–2" in refusal, refusal

    t.type(typed)
    reason_card = t.expect("answer (text; empty to skip; Ctrl-D to stop)> ")
    assert f"Reason for '{verdict}'" in reason_card

    t.type("within budget, see ticket #42")
    t.expect("answered 2 prompts")
    assert t.finish() == 0, t.transcript
    assert "Traceback" not in t.transcript
    # The summary lists each prompt with its answer, once.
    summary = [ln.strip() for ln in t.transcript.split("answered 2 prompts", 1)[1].strip().splitlines()]
    assert summary == [
        f"✓ {rid[:8]}  Approve expense 'New laptop' for 1450 EUR?  → {verdict}  (run waiting)",
        f"✓ {rid[:8]}  Reason for '{verdict}' (free text, kept in the ledger)?  → within budget, "
        "see ticket #42  (run completed)",
    ], summary

    run = state(env, rid)
    assert run["status"] == "completed", run
    assert run["output"] == {"title": "New laptop", "amount": 1450, "approved": approved,
                             "reason": "within budget, see ticket #42"}

    # The ledger shows who answered what; the refused answer left no trace.
    rs = resumes(env, rid)
    assert [r["result"]["payload"] for r in rs] == [
        {"response": verdict}, {"response": "within budget, see ticket #42"}]
    assert {r["actor_id"] for r in rs} == {"tester"}
    assert rs[0]["result"]["wait_key"] == f"approval:{rid}"
    assert "maybe" not in json.dumps(run_json(env, "ledger", rid))
    human = run_cli(env, "ledger", rid)
    assert human.returncode == 0, human.stderr
    assert "by tester" in human.stdout and verdict in human.stdout
    assert run_cli(env, "ledger", rid, "--verify").returncode == 0


def test_answer_run_asks_only_that_run(env, terminal):
    mine = start(env, "approval", "title=Laptop A", "amount=900")
    other = start(env, "approval", "title=Chair B", "amount=300")
    other_before = state(env, other)

    t = terminal("answer", mine[:8])  # a unique prefix names the run
    first = t.expect("> ")
    assert "Laptop A" in first
    t.type("2")
    t.expect("Reason for 'reject'")
    t.expect("> ")
    t.type("too expensive")
    t.expect("answered 2 prompts")
    assert t.finish() == 0, t.transcript
    assert "Chair B" not in t.transcript

    assert state(env, mine)["output"]["approved"] is False
    assert state(env, other) == other_before  # untouched: still waiting, same checkpoint


def test_answer_parent_run_asks_its_childs_prompt(env, terminal):
    parent = start(env, "onboarding", "name=Grace Hopper")
    t = terminal("answer", parent)
    card = t.expect("> ")
    assert "Write a welcome note for Grace Hopper" in card
    t.type("Welcome aboard, Grace!")
    t.expect("answered 1 prompt")
    assert t.finish() == 0, t.transcript

    run = state(env, parent)  # the parent resumed by itself when its child completed
    assert run["status"] == "completed", run
    assert run["output"]["welcome_note"] == "Welcome aboard, Grace!"
    assert run["output"]["login"] == "grace.hopper"


def test_empty_line_skips_and_ctrl_d_ends_the_session(env, terminal, tmp_path):
    """Ctrl-D counted as "skip" and the session carried on: the next thing typed, a shell
    command, was recorded as an answer (issue 9, bug 3). Now it ends the session, exit 0,
    with a newline so the shell prompt starts on a line of its own."""
    a = start(env, "approval", "title=First")
    b = start(env, "approval", "title=Second")
    c = start(env, "approval", "title=Third")
    before = snapshot(tmp_path / "data")

    t = terminal("answer")
    assert "'First'" in t.expect("> ")
    t.type("")  # Enter on an empty line: skip this prompt, go on
    assert "'Second'" in t.expect("> ")
    t.wait_blocked()
    os.write(t.master, b"\x04")  # Ctrl-D at the start of a line: end of input
    t.expect("answered 0 prompts, skipped 2")
    assert t.finish() == 0, t.transcript
    assert "Ctrl-D to stop)> \nanswered 0 prompts, skipped 2\n" in t.transcript, t.transcript
    assert "'Third'" not in t.transcript  # nothing more was asked
    summary = [ln.strip() for ln in t.transcript.split("skipped 2\n", 1)[1].splitlines()]
    assert summary == [f"– {a[:8]}  Approve expense 'First' for 250 EUR?  (skipped)",
                       f"– {b[:8]}  Approve expense 'Second' for 250 EUR?  (skipped)"], summary
    try:  # what is typed next goes to the shell, never into a run
        os.write(t.master, b"echo rc=$?\r")
    except OSError:
        pass
    assert snapshot(tmp_path / "data") == before
    assert {state(env, r)["status"] for r in (a, b, c)} == {"waiting"}


def test_answer_a_run_that_waits_for_no_person_in_a_terminal(env, terminal):
    """`answer RUN` on a completed run reported "answered 0 prompt(s)", exit 0."""
    rid = start(env, "approval", "title=Done")
    assert run_cli(env, "resume", rid, "--answer", "approve").returncode == 0
    assert run_cli(env, "resume", rid, "--answer", "ok").returncode == 0
    t = terminal("answer", rid)
    assert t.finish() == 1, t.transcript
    lines = [ln for ln in t.transcript.splitlines() if ln.strip()]
    assert lines == [f"error: run {rid} is not waiting for a person's answer, nor are its "
                     "children (status: completed)"], lines


def test_ctrl_c_stops_cleanly(env, terminal, tmp_path):
    rid = start(env, "approval")
    before = snapshot(tmp_path / "data")
    t = terminal("answer")
    t.expect("> ")
    # A signal that lands between writing the prompt and blocking in read() is only seen
    # at the next read (a CPython race no person can hit): wait until it really reads.
    t.wait_blocked()
    t.proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the foreground program
    t.expect("interrupted")
    assert t.finish() == 130, t.transcript
    assert "Traceback" not in t.transcript
    assert snapshot(tmp_path / "data") == before
    assert state(env, rid)["status"] == "waiting"


def test_rich_terminal_output_still_answers(env, terminal):
    """Without NO_COLOR the card is drawn with rich; answering works the same."""
    rich_env = {k: v for k, v in env.items() if k != "NO_COLOR"}
    rich_env["TERM"] = "xterm-256color"
    rid = start(env, "approval", "title=Desk")
    t = terminal("answer", env_override=rich_env)
    card = t.expect("> ")
    assert "Approve expense 'Desk'" in card and "1) approve" in card
    t.type("APPROVE")
    t.expect("Reason for 'approve'")
    t.expect("> ")
    t.type("ergonomics")
    t.expect("answered 2 prompts")
    assert t.finish() == 0, t.transcript
    assert "\x1b[" in t.raw.decode("utf-8", "replace"), "expected rich styling in a terminal"
    assert state(env, rid)["output"]["reason"] == "ergonomics"


def test_answer_without_prompts_says_so(env, terminal):
    t = terminal("answer")
    assert t.finish() == 0, t.transcript
    assert re.search(r"answered 0 prompt|no (waiting )?prompts", t.transcript), t.transcript


def test_answer_unknown_run_in_terminal_is_one_clear_error(env, terminal):
    start(env, "approval")
    t = terminal("answer", "nosuchrun")
    assert t.finish() == 1, t.transcript
    lines = [ln for ln in t.transcript.splitlines() if ln.strip()]
    assert lines == ["error: no such run: nosuchrun (list runs with `abstractrt runs`)"], lines


# ---------------------------------------------------------------------------- no terminal


def _assert_refused_no_terminal(code: int, stdout: str, stderr: str) -> None:
    assert code == 2, (code, stdout, stderr)  # wrong usage (PRODUCT.md §4)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "terminal" in lines[0]
    assert "--script" in lines[0] and "resume RUN --answer" in lines[0], lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args", [["answer"], ["answer", "RUN"]])
def test_answer_with_piped_stdin_refuses_and_changes_nothing(env, tmp_path, args):
    rid = start(env, "approval")
    args = [rid if a == "RUN" else a for a in args]
    before = snapshot(tmp_path / "data")
    cp = run_cli(env, *args, stdin="1\nbecause\n")
    _assert_refused_no_terminal(cp.returncode, cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert snapshot(tmp_path / "data") == before
    assert state(env, rid)["status"] == "waiting"


def test_answer_with_piped_stdin_but_terminal_stdout_refuses(env, tmp_path):
    """`echo 1 | abstractrt answer` typed in a terminal: stdin is not one, so refuse."""
    rid = start(env, "approval")
    before = snapshot(tmp_path / "data")
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([str(ABSTRACTRT), "answer"], stdin=subprocess.PIPE, stdout=slave,
                                stderr=subprocess.PIPE, env=env, close_fds=True)
        os.close(slave)
        slave = -1
        _, err = proc.communicate(b"1\nbecause\n", timeout=TIMEOUT)
        out = b""
        while readable(master, 0.2):
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    _assert_refused_no_terminal(proc.returncode, out.decode(), err.decode())
    assert out == b""
    assert snapshot(tmp_path / "data") == before
    assert state(env, rid)["status"] == "waiting"
