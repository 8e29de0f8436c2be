"""``abstractrt worker`` (PRODUCT §7) through the installed command, with real processes:
rounds, sleeping until due or woken, signals, several movers at once, kill -9, hooks.

Effects count their executions in a side file (``assets/worker/side_effects.py``), so
"exactly once" is checked outside the store; every wait polls with a generous deadline.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List

import pytest
from cli_helpers import CLI, FAILING_WORKFLOW, TIMER_WORKFLOW, abstractrt_command
from test_worker_helpers import (
    ASSETS,
    DEADLINE,
    Background,
    executions,
    recorded_tokens,
    side_lines,
    wait_for,
)

from abstractrt_cli.core.timeutil import parse_timestamp

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes")

ABSTRACTRT = abstractrt_command()


@pytest.fixture
def world(tmp_path: Path) -> CLI:
    w = CLI(tmp_path)
    shutil.copy(ASSETS / "side_effects.py", w.workflows_dir / "side_effects.py")
    w.write_workflow("timer.py", TIMER_WORKFLOW)
    w.write_workflow("failing.py", FAILING_WORKFLOW)
    return w


def run_json(world: CLI, *args: str, codes: tuple = (0,)) -> Any:
    r = world.run(*args, "--json")
    assert r.exit_code in codes, r.output
    return r.json()


def start(world: CLI, workflow: str, *sets: str, tick: bool = True) -> Dict[str, Any]:
    args = [a for s in sets for a in ("--set", s)] + ([] if tick else ["--no-tick"])
    return run_json(world, "start", workflow, *args, codes=(0, 3))


def status(world: CLI, run_id: str) -> str:
    return run_json(world, "show", run_id)["status"]


def in_seconds(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def beats_dir(world: CLI) -> Path:
    return world.data_dir / "audit" / "heartbeats"


def worker(world: CLI, *args: str, env: Any = None) -> Background:
    return Background(world.tmp, env or world.env, *args)


def completed_all(world: CLI, run_ids: List[str]) -> bool:
    done = {r["run_id"] for r in run_json(world, "runs", "--status", "completed", "--limit", "1000")}
    return set(run_ids) <= done


def check_exactly_once(world: CLI, side: Path, run_ids: List[str], steps: int) -> None:
    """Every step of every run ran once, and the run kept that execution's token."""
    got = executions(side)
    assert sorted(got) == sorted((rid, n) for rid in run_ids for n in range(steps)), got
    for rid in run_ids:
        run = run_json(world, "show", rid)
        assert run["status"] == "completed", run
        tokens = [got[(rid, n)] for n in range(steps)]
        assert all(len(t) == 1 for t in tokens), f"run {rid} repeated an effect: {tokens}"
        assert run["output"]["tokens"] == [t[0] for t in tokens]


# ---------------------------------------------------------------------------- --once


def test_once_moves_a_due_timer_run_and_a_failed_run_is_exit_3(world: CLI) -> None:
    until = in_seconds(6)  # time enough to start both on a slow machine
    rid = start(world, "timer", f"until={until}")["run_id"]
    json_rid = start(world, "timer", f"until={until}")["run_id"]
    assert status(world, rid) == status(world, json_rid) == "waiting"
    wait_for("the timer to fall due", lambda: datetime.now(timezone.utc) > parse_timestamp(until))

    r = world.run("worker", "--once", "--max-steps", "10")
    assert r.exit_code == 0, r.output
    assert "tick --all: 2 moved (2 completed" in r.stdout, r.output
    assert f"{rid}  timer  waiting (until) -> completed  [timer due]" in r.stderr, r.output
    assert " started: " not in r.stderr  # --once is tick --all: no start line, no heartbeat
    assert not beats_dir(world).exists()
    assert status(world, rid) == status(world, json_rid) == "completed"

    bad = start(world, "failing", tick=False)["run_id"]
    r = world.run("worker", "--once", "--json")
    assert r.exit_code == 3, r.output
    summary = r.json()  # exactly one document: tick --all's summary
    assert (summary["moved"], summary["failed"]) == (1, 1), summary
    assert summary["runs"] == [{"run_id": bad, "status": "failed"}]
    assert status(world, bad) == "failed"

    r = world.run("worker", "--once")
    assert r.exit_code == 0 and "tick --all: 0 moved" in r.stdout, r.output


# ---------------------------------------------------------------------------- in the background


def test_a_background_worker_moves_a_timer_when_it_falls_due_and_picks_up_new_runs(world: CLI) -> None:
    with worker(world, "--interval", "1") as w:
        w.wait_started()
        assert "wake-ups: the data dir's wake file" in w.stderr, w.output()
        until = in_seconds(3)
        timed = start(world, "timer", f"until={until}")["run_id"]
        assert status(world, timed) == "waiting"
        run = wait_for("the timer run to complete",
                       lambda: (lambda r: r if r["status"] == "completed" else None)(
                           run_json(world, "show", timed)))
        assert parse_timestamp(run["updated_at"]) >= parse_timestamp(until)  # not early

        side = world.tmp / "side.txt"
        fresh = start(world, "effects", f"side={side}", tick=False)["run_id"]
        wait_for("the --no-tick run to complete", lambda: status(world, fresh) == "completed")
        assert len(side_lines(side)) == 3

        assert w.stop() == 0, w.output()
    err = w.stderr
    assert f"{timed}  timer  waiting (until) -> completed  [timer due]" in err, w.output()
    assert f"{fresh}  effects  running -> completed  [running]" in err, w.output()
    assert "stopped (SIGTERM) after" in err and "2 runs moved" in err, w.output()
    assert "error" not in err and "warning" not in err, w.output()
    (beat_file,) = beats_dir(world).glob("*.json")
    beat = json.loads(beat_file.read_text())
    assert beat["pid"] == w.proc.pid and beat["interval"] == 1.0 and beat["moved"] == 2
    assert beat["stopped_by"] == "SIGTERM" and beat["stopped_at"] and beat["rounds"] >= 2
    assert set(beat) >= {"worker_id", "host", "started_at", "beat_at", "last_round_at"}


def test_a_wake_up_from_start_beats_a_long_interval(world: CLI) -> None:
    with worker(world, "--interval", "600") as w:
        w.wait_started()
        w.wait_rounds(beats_dir(world), 1)  # the first round is done: it sleeps now
        side = world.tmp / "side.txt"
        t0 = time.monotonic()
        rid = start(world, "effects", f"side={side}", tick=False)["run_id"]
        wait_for("the woken worker to complete the run", lambda: status(world, rid) == "completed",
                 timeout=60)
        # Far below the interval: start's wake-up (the wake file) ended the sleep.
        assert time.monotonic() - t0 < 60
        assert w.stop() == 0, w.output()


def test_json_lines_one_object_per_moved_run(world: CLI) -> None:
    side = world.tmp / "side.txt"
    with worker(world, "--interval", "1", "--json") as w:
        w.wait_started()
        rids = [start(world, "effects", f"side={side}", "steps=1", tick=False)["run_id"]
                for _ in range(2)]
        wait_for("both runs to complete", lambda: completed_all(world, rids))
        assert w.stop() == 0, w.output()
    lines = [json.loads(line) for line in w.stdout.splitlines()]  # every line one object
    assert sorted(m["run_id"] for m in lines) == sorted(rids), w.output()
    for m in lines:
        assert (m["workflow_id"], m["from"], m["to"], m["reason"]) == \
            ("effects", "running", "completed", "running")
        parse_timestamp(m["at"])
    assert " started: " in w.stderr and " -> " not in w.stderr, w.output()


def test_a_store_that_cannot_be_opened_is_one_error_and_exit_1(world: CLI) -> None:
    r = world.run("worker", "--store", "postgresql://nobody@127.0.0.1:1/none", timeout=60)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- signals


def test_sigterm_in_a_slow_effect_finishes_it_takes_no_new_step_and_exits_0(world: CLI) -> None:
    side = world.tmp / "side.txt"
    started, go = Path(f"{side}.started"), Path(f"{side}.go")
    rid = start(world, "effects", f"side={side}", "steps=2", "sleep=60", tick=False)["run_id"]
    with worker(world, "--interval", "1") as w:
        wait_for("the slow effect to start", lambda: started.exists() and started.read_text())
        w.send(signal.SIGTERM)
        wait_for("the worker to take the signal", lambda: "SIGTERM: taking no new step" in w.stderr)
        assert w.proc.poll() is None  # the step in flight goes on...
        t0 = time.monotonic()
        go.touch()  # ...until it ends; the next one would start at once (go exists)
        assert w.proc.wait(timeout=10) == 0, w.output()
        assert time.monotonic() - t0 < 10
    # The step in flight finished and was recorded; the next one never started.
    assert [(r, n) for r, n, _ in side_lines(side)] == [(rid, 0)], w.output()
    assert started.read_text().split() == [rid, "0"]
    verified = world.run("ledger", rid, "--verify")
    assert verified.exit_code == 0, verified.output
    assert "stopped (SIGTERM) after" in w.stderr, w.output()

    r = world.run("tick", rid, "--json")  # the lock was released: not busy
    assert r.exit_code == 0 and r.json()["status"] == "completed", r.output
    check_exactly_once(world, side, [rid], 2)  # the recorded effect did not run again


def test_a_second_signal_exits_130_at_once_and_the_step_runs_again_later(world: CLI) -> None:
    side = world.tmp / "side.txt"
    started, go = Path(f"{side}.started"), Path(f"{side}.go")
    rid = start(world, "effects", f"side={side}", "steps=1", "sleep=60", tick=False)["run_id"]
    with worker(world, "--interval", "1") as w:
        wait_for("the slow effect to start", lambda: started.exists() and started.read_text())
        w.send(signal.SIGINT)
        wait_for("the first signal to be taken", lambda: "SIGINT: taking no new step" in w.stderr)
        w.send(signal.SIGTERM)
        assert w.proc.wait(timeout=20) == 130, w.output()
    assert "second SIGTERM: exiting now" in w.stderr, w.output()
    assert side_lines(side) == []  # killed in the middle of the effect: nothing recorded
    assert status(world, rid) == "running"

    go.touch()
    r = world.run("tick", rid, "--json")
    assert r.exit_code == 0 and r.json()["status"] == "completed", r.output
    assert started.read_text().split() == [rid, "0", rid, "0"]  # it was in flight: run again
    check_exactly_once(world, side, [rid], 1)


# ---------------------------------------------------------------------------- several movers


def make_runs(world: CLI, side: Path, n: int, steps: int, sleep: float = 0) -> List[str]:
    """``n`` running runs of ``effects``, made through the library (faster than n commands)."""
    from abstractrt_cli.loader import load_workflows

    rt = world.runtime()
    spec = load_workflows(world.workflows_dir).entry("effects").spec
    return [rt.start(workflow=spec, vars={"side": str(side), "steps": steps, "sleep": sleep},
                     actor_id="tester")
            for _ in range(n)]


@pytest.mark.parametrize("beside", ["another worker", "a tick --all loop"])
def test_every_effect_runs_exactly_once_beside_another_mover(world: CLI, beside: str) -> None:
    side = world.tmp / "side.txt"
    rids = make_runs(world, side, 20, 3)
    stop = threading.Event()
    ticks: List[int] = []

    def tick_loop() -> None:
        while not stop.is_set():
            r = world.run("tick", "--all", "--quiet")
            ticks.append(r.exit_code)

    with worker(world, "--interval", "1") as a:
        other = worker(world, "--interval", "1") if beside == "another worker" else None
        loop = threading.Thread(target=tick_loop) if other is None else None
        if loop is not None:
            loop.start()
        try:
            wait_for("all 20 runs to complete", lambda: completed_all(world, rids))
        finally:
            stop.set()
            if loop is not None:
                loop.join(timeout=120)
        assert a.stop() == 0, a.output()
        if other is not None:
            assert other.stop() == 0, other.output()
            other.kill()
    check_exactly_once(world, side, rids, 3)
    assert all(code in (0, 4) for code in ticks), ticks  # 4: a run was busy elsewhere
    for w in (a, other) if other is not None else (a,):
        assert "error" not in w.stderr, w.output()


def test_kill_9_at_random_moments_loses_and_repeats_nothing_recorded(world: CLI) -> None:
    side = world.tmp / "side.txt"
    steps = 4
    rids = make_runs(world, side, 12, steps, sleep=0.25)  # kills land in effects too
    seed = int(os.environ.get("ABSTRACTRT_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    workers = [worker(world, "--interval", "0.2") for _ in range(2)]
    kills = 0
    try:
        deadline = time.monotonic() + 240
        while not completed_all(world, rids):
            assert time.monotonic() < deadline, f"runs did not complete (seed {seed})"
            i = rng.randrange(len(workers))
            workers[i].wait_started()  # then at a random moment of its work:
            time.sleep(rng.uniform(0.0, 1.5))
            workers[i].kill()  # SIGKILL: no clean-up of any kind
            kills += 1
            workers[i] = worker(world, "--interval", "0.2")
    finally:
        for w in workers:
            w.stop()
            w.kill()
    assert kills >= 3, f"seed {seed}"
    got = executions(side)
    began = len(Path(f"{side}.started").read_text().splitlines())
    print(f"seed {seed}: {kills} kills; {began - len(rids) * steps} executions cut short "
          "before their outcome was recorded, and run again")
    for rid in rids:
        ledger = run_json(world, "ledger", rid)
        verified = world.run("ledger", rid, "--verify")
        assert verified.exit_code == 0, f"seed {seed}\n{verified.output}"
        recorded = recorded_tokens(ledger)
        run = run_json(world, "show", rid)
        assert run["status"] == "completed", run
        for n in range(steps):
            # One recorded execution per step, which the run kept (nothing recorded lost)...
            assert len(recorded.get(n, [])) == 1, f"seed {seed}: {rid} step {n}: {recorded}"
            token = recorded[n][0]
            assert run["output"]["tokens"][n] == token, f"seed {seed}"
            # ...and it was the last execution of that step: nothing ran again after it.
            # (Earlier ones were killed before their outcome was recorded.)
            assert got[(rid, n)][-1] == token and got[(rid, n)].count(token) == 1, \
                f"seed {seed}: {rid} step {n}: {got[(rid, n)]}"


# ---------------------------------------------------------------------------- hooks


def _hook(kind: str, out: Path, data_dir: Path, show: bool = True) -> str:
    """A hook command that keeps its stdin, its environment and (optionally) what
    ``abstractrt show`` says of the run at that moment, in files under ``out``. (It names
    the data dir: a hook inherits the environment of the command that runs it, which need
    not name the store.)"""
    base = f'{out}/{kind}-"$ABSTRACTRT_RUN_ID"'
    cmd = f'cat > {base}.stdin; env | grep ^ABSTRACTRT_ > {base}.env'
    if show:
        cmd += (f'; {shlex.join(ABSTRACTRT)} show "$ABSTRACTRT_RUN_ID" --json '
                f'--data-dir {shlex.quote(str(data_dir))} > {base}.show')
    return cmd


def _read_env(path: Path) -> Dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _answer_in_a_terminal(command: str, env: Dict[str, str], answers: List[str]) -> str:
    """Run ``command`` through the shell on a pseudo-terminal, as a person would paste it,
    typing each answer once its prompt shows; return what the terminal showed."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the shell, on the terminal
        os.execve("/bin/sh", ["/bin/sh", "-c", command], env)
    seen = b""
    deadline = time.monotonic() + DEADLINE
    todo = list(answers)
    try:
        import select

        # poll, not select: a long test session may hold descriptors above FD_SETSIZE.
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while time.monotonic() < deadline:
            ready = poller.poll(200)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break  # the program exited
                if not chunk:
                    break
                seen += chunk
                if todo and seen.rstrip().endswith((b":", b">", b"?")):
                    os.write(fd, (todo.pop(0) + "\n").encode())
        _, code = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = seen.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(code) == 0, text
    return text


def test_each_hook_fires_with_the_run_on_stdin_and_its_environment(world: CLI) -> None:
    out = world.tmp / "hooks"
    out.mkdir()
    world.config.write_text(json.dumps({"hooks": {
        "on_wait": _hook("wait", out, world.data_dir),
        "on_complete": _hook("complete", out, world.data_dir),
        "on_fail": _hook("fail", out, world.data_dir, show=False)}}))
    ask = start(world, "approval", "title=Laptop", "amount=1450", tick=False)["run_id"]
    bad = start(world, "failing", tick=False)["run_id"]
    with worker(world, "--interval", "1") as w:
        w.wait_started()
        assert "hooks: on_wait, on_complete, on_fail (timeout 10 s)" in w.stderr, w.output()
        wait_for("the on_wait hook", lambda: (out / f"wait-{ask}.show").exists()
                 and (out / f"wait-{ask}.show").read_text())
        wait_for("the on_fail hook", lambda: (out / f"fail-{bad}.env").exists())

        # on_wait: the run as stored (on stdin, and as `show` saw it: already durable).
        stdin = json.loads((out / f"wait-{ask}.stdin").read_text())
        assert (stdin["run_id"], stdin["status"]) == (ask, "waiting")
        shown = json.loads((out / f"wait-{ask}.show").read_text())
        assert (shown["status"], shown["waiting"]["prompt"]) == ("waiting", stdin["waiting"]["prompt"])
        env = _read_env(out / f"wait-{ask}.env")
        assert env["ABSTRACTRT_RUN_ID"] == ask and env["ABSTRACTRT_EVENT"] == "wait"
        assert env["ABSTRACTRT_PROMPT"] == "Approve expense 'Laptop' for 1450 EUR?"
        answer_cmd = env["ABSTRACTRT_ANSWER_CMD"]
        assert shlex.split(answer_cmd) == [
            "abstractrt", "--data-dir", str(world.data_dir), "--workflows", str(world.workflows_dir),
            "answer", ask]

        # on_fail.
        env = _read_env(out / f"fail-{bad}.env")
        assert env["ABSTRACTRT_EVENT"] == "fail" and "ABSTRACTRT_PROMPT" not in env
        assert "ABSTRACTRT_ANSWER_CMD" not in env
        assert json.loads((out / f"fail-{bad}.stdin").read_text())["status"] == "failed"

        # The answer command works as given, in a terminal, from anywhere (it names the
        # store and the workflows), with nothing of the worker's environment.
        person = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
        person.update(PATH=f"{Path(ABSTRACTRT[0]).parent}{os.pathsep}{person.get('PATH', '')}",
                      ABSTRACTRT_CONFIG=str(world.config), NO_COLOR="1", TERM="xterm",
                      XDG_CONFIG_HOME=world.env["XDG_CONFIG_HOME"])
        transcript = _answer_in_a_terminal(f"cd / && {answer_cmd}", person, ["1", "within budget"])
        assert "Approve expense" in transcript, transcript
        assert status(world, ask) == "completed"
        # on_complete fired from the answering command itself (every path that moves a run).
        wait_for("the on_complete hook", lambda: (out / f"complete-{ask}.show").exists())
        assert json.loads((out / f"complete-{ask}.show").read_text())["status"] == "completed"
        done = json.loads((out / f"complete-{ask}.stdin").read_text())
        assert (done["run_id"], done["status"]) == (ask, "completed")
        assert _read_env(out / f"complete-{ask}.env")["ABSTRACTRT_EVENT"] == "complete"
        assert w.stop() == 0, w.output()
    assert "warning" not in w.stderr, w.output()


def test_a_failing_or_sleeping_hook_is_a_warning_and_the_run_is_unaffected(world: CLI) -> None:
    world.config.write_text(json.dumps({"hooks": {
        "on_wait": "sleep 60", "on_fail": "echo broken >&2; exit 7", "timeout": 1}}))
    ask = start(world, "approval", "title=x", "amount=1", tick=False)["run_id"]
    bad = start(world, "failing", tick=False)["run_id"]
    t0 = time.monotonic()
    r = world.run("worker", "--once")
    assert time.monotonic() - t0 < 30  # the sleeping hook was cut at its 1 s timeout
    assert r.exit_code == 3, r.output  # the failing run failed: the hooks change nothing
    assert f"warning: hook on_wait for run {ask[:8]} ran past its 1 s timeout and was killed" \
        in r.stderr, r.output
    assert f"warning: hook on_fail for run {bad[:8]} exited 7: broken" in r.stderr, r.output
    assert (status(world, ask), status(world, bad)) == ("waiting", "failed")

    # From any command that moves a run, the same: here `start` itself.
    r = world.run("start", "approval", "--set", "title=y", "--set", "amount=2", "--json")
    assert r.exit_code == 0 and r.json()["status"] == "waiting", r.output
    assert "ran past its 1 s timeout" in r.stderr, r.output


def test_hooks_are_validated_like_every_config_key(world: CLI) -> None:
    world.config.write_text(json.dumps({"hooks": {"on_start": "echo"}}))
    r = world.run("worker", "--once")
    assert r.exit_code == 2, r.output
    assert "unknown hook key(s) on_start" in r.stderr, r.output
    r = world.run("config", "--json")
    assert r.exit_code == 2, r.output

    world.config.write_text(json.dumps({"hooks": {"on_fail": "logger failed", "timeout": 3}}))
    rows = {row["setting"]: row for row in run_json(world, "config")["settings"]}
    assert rows["hooks"]["from"] == "config"
    assert rows["hooks"]["hooks"] == {"on_fail": "logger failed", "timeout": 3.0}


# ---------------------------------------------------------------------------- in-process pieces


@pytest.mark.parametrize("store, shown", [
    ("postgresql://rt:s3cret@db.example:5432/rt", "postgresql://rt@db.example:5432/rt"),
    ("postgresql://rt@db.example/rt?sslmode=require&password=s3cret",
     "postgresql://rt@db.example/rt?sslmode=require"),
    ("postgresql:///rt?host=/run/postgresql", "postgresql:///rt?host=/run/postgresql"),
    ("/srv/abstractrt", "/srv/abstractrt"),
])
def test_the_answer_command_names_the_store_without_its_password(tmp_path: Path, store: str,
                                                                 shown: str) -> None:
    from abstractrt_cli.core.models import RunState, WaitReason, WaitState
    from abstractrt_cli.ops.session import Session
    from abstractrt_cli.settings import Settings

    s = Session(Settings(data_dir=tmp_path / "d", workflows_dir=tmp_path / "w", store=store))
    run = RunState.new(workflow_id="w", entry_node="a", vars={})
    run.waiting = WaitState(reason=WaitReason.USER, prompt="?")
    argv = shlex.split(s.answer_command(run))
    assert argv == ["abstractrt", "--store", shown, "--workflows", str(tmp_path / "w"),
                    "answer", run.run_id]
    assert "s3cret" not in s.answer_command(run)


def test_heartbeat_states_tell_running_stale_and_stopped() -> None:
    from abstractrt_cli.ops.worker import heartbeat_states

    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    beats = [{"worker_id": "a", "interval": 5, "beat_at": "2026-01-01T11:59:30+00:00"},
             {"worker_id": "b", "interval": 5, "beat_at": "2026-01-01T11:58:00+00:00"},
             {"worker_id": "c", "interval": 60, "beat_at": "2026-01-01T11:58:00+00:00"},
             {"worker_id": "d", "interval": 5, "beat_at": "2026-01-01T10:00:00+00:00",
              "stopped_at": "2026-01-01T10:00:00+00:00"},
             {"worker_id": "e", "beat_at": "not a time"}]
    assert [b["state"] for b in heartbeat_states(beats, now=now)] == \
        ["running", "stale", "running", "stopped", "stale"]


def test_a_stop_takes_no_new_step_in_process(tmp_path: Path) -> None:
    """The guard itself: once a stop is asked for, the next node raises StopRequested
    (not an Exception: the kernel must not fail the run for it) and the run stays where
    the last recorded step left it."""
    from abstractrt_cli.core.spec import WorkflowRegistry, WorkflowSpec
    from abstractrt_cli.ops.worker import StopRequested, StopSwitch, _StoppingRegistry

    calls: List[str] = []

    def a(run: Any, ctx: Any) -> Any:
        calls.append("a")
        return None

    reg = WorkflowRegistry()
    reg.register(WorkflowSpec("w", "a", {"a": a}), source="x.py")
    switch = StopSwitch()
    guarded = _StoppingRegistry(reg, switch)
    assert guarded.entry("w") is reg.entry("w")  # same source, fingerprint, handlers
    node = guarded.get("w").nodes["a"]
    node(None, None)
    switch.request("SIGTERM")
    with pytest.raises(StopRequested):
        node(None, None)
    assert calls == ["a"] and not issubclass(StopRequested, Exception)
