"""How much a CLI call costs compared with starting Python and Typer (PRODUCT.md §5: "a CLI
call costs little more than starting Python"), and how ``tick --all`` scales with the runs kept.

    python bench/cli.py                    # defaults: 20 repeats, 20,000 stored runs, 100 due
    python bench/cli.py --repeats 10 --total 2000 --due 50 --importtime
    python bench/cli.py --installs-only    # just the start-up targets below
    python bench/cli.py --installs-only --instructions   # and as instructions (valgrind)

Measures, as wall time of real processes (median of ``--repeats``):

1. Start-up against ``python -c "import typer"``, from two installs side by side, the
   commands interleaved so drift in machine load hits them all alike:
   - *regular*: ``pip install .`` into a throw-away venv (bytecode compiled, as users get
     it); target: ``abstractrt tick RUN`` within 1.5x;
   - *editable*: this interpreter's install (``pip install -e .``, what the README's quick
     start makes); target: within 2x.
   Both report ``abstractrt tick RUN`` (a fresh run that ticks to its first prompt) and
   ``abstractrt waiting``. ``--no-regular`` skips building the venv.
2. ``python -c pass`` (the floor), ``abstractrt runs --limit 1``, ``abstractrt tick RUN``
   and ``abstractrt resume RUN --answer x`` on a run waiting for free text (it then waits
   again), from this interpreter's install;
3. ``abstractrt tick --all --quiet`` over ``--total`` stored runs of which ``--due`` have a
   ``wait_until`` that has passed (the rest wait on people or are completed), the stored
   runs written directly through the store API. Then the same again with nothing due.

Bytecode is cached in the temporary directory (as an installed package's would be);
``BENCH_NO_PYCACHE=1`` measures without it.

With ``--importtime`` (or when the tick ratio is above 3x) it prints the modules that cost
most to import for a command's startup (``python -X importtime``).

With ``--instructions`` it also counts the CPU instructions each start-up command executes
(``valgrind --tool=callgrind``, if installed): the same figures for every run whatever else
the machine is doing, where wall times on a shared machine swing by 2x. They leave out
what a command waits for (fsyncs, the disk), which the wall-time rows include.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

BENCH_WORKFLOWS = '''
"""Workflows for bench/cli.py."""

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec


def ask(run, ctx):
    # Free text, and back to itself: every resume records an answer and waits again.
    return StepPlan(node_id="ask", next_node="ask",
                    effect=Effect(EffectType.ASK_USER, {"prompt": "Say something"},
                                  result_key="said"))


bench_loop = WorkflowSpec(workflow_id="bench_loop", entry_node="prep",
                          nodes={"prep": lambda run, ctx: StepPlan(node_id="prep", next_node="ask"),
                                 "ask": ask})


def sleep(run, ctx):
    return StepPlan(node_id="sleep", next_node="done",
                    effect=Effect(EffectType.WAIT_UNTIL, {"until": run.vars["until"]},
                                  result_key="woke"))


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={"ok": True})


bench_timer = WorkflowSpec(workflow_id="bench_timer", entry_node="sleep",
                           nodes={"sleep": sleep, "done": done})
'''


def abstractrt_command() -> List[str]:
    exe = Path(sys.executable).parent / "abstractrt"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "abstractrt_cli"]


def timed(cmd: Sequence[str], env: Dict[str, str], *, check: bool = True) -> Tuple[float, str]:
    t0 = time.perf_counter()
    cp = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if check and cp.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({cp.returncode}): {' '.join(cmd)}\n{cp.stdout}{cp.stderr}"
        )
    return dt, cp.stdout


def median_ms(samples: List[float]) -> float:
    return statistics.median(samples) * 1000


def fmt(samples: List[float]) -> str:
    return (
        f"median {median_ms(samples):7.1f} ms  (min {min(samples) * 1000:6.1f}, "
        f"max {max(samples) * 1000:6.1f}, n={len(samples)})"
    )


def empty_config(root: Path) -> Path:
    """An empty config file: ABSTRACTRT_CONFIG must name one that exists, and the
    benchmark must not read the config of whoever runs it."""
    path = root / "empty-config.yaml"
    path.touch()
    return path


def make_env(root: Path, data_dir: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    env.update(
        {
            "ABSTRACTRT_DATA_DIR": str(data_dir),
            "ABSTRACTRT_WORKFLOWS": str(root / "workflows"),
            "ABSTRACTRT_CONFIG": str(empty_config(root)),
            "ABSTRACTRT_ACTOR": "bench",
            "NO_COLOR": "1",
        }
    )
    # Installed packages have their bytecode compiled; a PYTHONDONTWRITEBYTECODE inherited
    # from a dev shell would make every call recompile every module (~60 ms here), so
    # cache bytecode in the bench's temp dir (the checkout stays clean).
    if not os.environ.get("BENCH_NO_PYCACHE"):
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


def runtime_for(root: Path, data_dir: Path):  # -> (Runtime, LoadedWorkflows)
    from abstractrt_cli import Runtime
    from abstractrt_cli.loader import load_workflows
    from abstractrt_cli.storage.files import open_file_stores

    loaded = load_workflows(root / "workflows")
    run_store, ledger_store = open_file_stores(data_dir)
    return Runtime(
        run_store=run_store, ledger_store=ledger_store, workflow_registry=loaded.registry
    ), loaded


def bench_single_run_commands(root: Path, repeats: int) -> Dict[str, List[float]]:
    data_dir = root / "data-small"
    env = make_env(root, data_dir)
    cli = abstractrt_command()
    rt, loaded = runtime_for(root, data_dir)
    spec = loaded.entry("bench_loop").spec
    fresh = [rt.start(workflow=spec, vars={}) for _ in range(repeats)]
    looping = rt.start(workflow=spec, vars={})
    rt.tick(run_id=looping)

    out: Dict[str, List[float]] = {
        "python -c pass": [],
        "abstractrt runs --limit 1": [],
        "abstractrt tick RUN": [],
        "abstractrt resume RUN --answer x": [],
    }
    # Interleave the commands so drift in machine load hits them all alike.
    timed(cli + ["runs", "--limit", "1"], env)  # warm the OS caches once
    for i in range(repeats):
        out["python -c pass"].append(timed([sys.executable, "-c", "pass"], env)[0])
        out["abstractrt runs --limit 1"].append(timed(cli + ["runs", "--limit", "1"], env)[0])
        out["abstractrt tick RUN"].append(timed(cli + ["tick", fresh[i]], env)[0])
        out["abstractrt resume RUN --answer x"].append(
            timed(cli + ["resume", looping, "--answer", f"x{i}"], env)[0]
        )
    state = rt.get_state(looping)
    assert state.status.value == "waiting" and state.vars["said"] == {"response": f"x{repeats - 1}"}
    return out


def regular_install(root: Path) -> Path:
    """A throw-away venv with ``pip install .`` of this checkout (not editable)."""
    venv = root / "regular-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    cp = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                         str(REPO)], capture_output=True, text=True)
    if cp.returncode != 0:
        raise SystemExit(f"pip install . failed:\n{cp.stdout}{cp.stderr}")
    return venv


REPO = Path(__file__).resolve().parent.parent


def bench_installs(root: Path, repeats: int, regular: bool) -> Dict[str, Dict[str, List[float]]]:
    """``import typer``, ``tick RUN`` and ``waiting`` for each install, interleaved."""
    data_dir = root / "data-installs"
    env = make_env(root, data_dir)
    installs = {"editable": Path(sys.executable).parent}
    if regular:
        installs["regular"] = regular_install(root) / "bin"
    rt, loaded = runtime_for(root, data_dir)
    spec = loaded.entry("bench_loop").spec
    fresh = {name: [rt.start(workflow=spec, vars={}) for _ in range(repeats)] for name in installs}
    for _ in range(3):  # a few prompts for `waiting` to show
        rt.tick(run_id=rt.start(workflow=spec, vars={}))
    out: Dict[str, Dict[str, List[float]]] = {
        name: {"python -c 'import typer'": [], "abstractrt tick RUN": [], "abstractrt waiting": []}
        for name in installs}
    # The regular install must import its own copy, never a source tree on PYTHONPATH.
    envs = {name: env if name == "editable" else {k: v for k, v in env.items() if k != "PYTHONPATH"}
            for name in installs}
    for name, bindir in installs.items():  # warm the OS caches and the bytecode once
        timed([str(bindir / "abstractrt"), "waiting"], envs[name])
    for i in range(repeats):
        for name, bindir in installs.items():
            res, e = out[name], envs[name]
            res["python -c 'import typer'"].append(
                timed([str(bindir / "python"), "-c", "import typer"], e)[0])
            res["abstractrt tick RUN"].append(
                timed([str(bindir / "abstractrt"), "tick", fresh[name][i]], e)[0])
            res["abstractrt waiting"].append(timed([str(bindir / "abstractrt"), "waiting"], e)[0])
    return out


TARGETS = {"regular": 1.5, "editable": 2.0}


def instructions(cmd: Sequence[str], env: Dict[str, str]) -> int:
    """CPU instructions ``cmd`` executes, counted by callgrind (deterministic, unlike time)."""
    cp = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                         *cmd], env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", cp.stderr)
    if cp.returncode != 0 or not m:
        raise SystemExit(f"valgrind failed ({cp.returncode}) on {' '.join(cmd)}:\n{cp.stderr[-2000:]}")
    return int(m.group(1))


def bench_instructions(root: Path, regular: bool) -> None:
    """``import typer``, ``tick RUN`` (a fresh run to its first prompt) and ``waiting``,
    as instructions executed, for each install."""
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed; skipped\n")
        return
    data_dir = root / "data-instructions"
    env = make_env(root, data_dir)
    installs = {"editable": Path(sys.executable).parent}
    if regular:
        venv = root / "regular-venv"
        installs["regular"] = (venv if venv.exists() else regular_install(root)) / "bin"
    rt, loaded = runtime_for(root, data_dir)
    spec = loaded.entry("bench_loop").spec
    rt.tick(run_id=rt.start(workflow=spec, vars={}))  # a prompt for `waiting` to show
    print("start-up as CPU instructions executed (callgrind), against `python -c 'import typer'`")
    for name, bindir in installs.items():
        e = env if name == "editable" else {k: v for k, v in env.items() if k != "PYTHONPATH"}
        timed([str(bindir / "abstractrt"), "waiting"], e)  # bytecode cached
        base = instructions([str(bindir / "python"), "-c", "import typer"], e)
        tick = instructions([str(bindir / "abstractrt"), "tick", rt.start(workflow=spec, vars={})], e)
        wait = instructions([str(bindir / "abstractrt"), "waiting"], e)
        print(f"  {name} install")
        print(f"    python -c 'import typer'     {base / 1e6:8.1f} M instructions")
        mark = "  ok" if tick / base <= TARGETS[name] else f"  above {TARGETS[name]}x"
        print(f"    abstractrt tick RUN          {tick / 1e6:8.1f} M instructions   "
              f"{tick / base:4.2f}x typer{mark}")
        print(f"    abstractrt waiting           {wait / 1e6:8.1f} M instructions   {wait / base:4.2f}x typer")
    print()


def report_installs(results: Dict[str, Dict[str, List[float]]]) -> None:
    print("start-up against `python -c 'import typer'` (targets: tick RUN within "
          "1.5x from a regular install, 2x from an editable one)")
    for name, res in results.items():
        base = median_ms(res["python -c 'import typer'"])
        print(f"  {name} install")
        for cmd, samples in res.items():
            ratio = median_ms(samples) / base
            mark = ""
            if cmd == "abstractrt tick RUN":
                mark = "  ok" if ratio <= TARGETS[name] else f"  above {TARGETS[name]}x"
            extra = "" if cmd.startswith("python") else f"   {ratio:4.2f}x typer{mark}"
            print(f"    {cmd:28s} {fmt(samples)}{extra}")
    print()


def populate(root: Path, data_dir: Path, total: int, due: int) -> float:
    """Write ``total`` runs straight through the store: ``due`` timers already due, the rest
    waiting on a person (two thirds) or completed (one third)."""
    from abstractrt_cli import RunState, RunStatus, WaitReason, WaitState
    from abstractrt_cli.storage.files import open_file_stores

    # fsync=False: a bulk load needs no crash safety, and the commands measured below open
    # the store themselves with the default (fsync on).
    run_store, _ = open_file_stores(data_dir, fsync=False)
    now = datetime.now(timezone.utc)
    past = (now - timedelta(minutes=5)).isoformat()
    t0 = time.perf_counter()
    for i in range(total):
        created = (now - timedelta(seconds=total - i)).isoformat()
        if i < due:
            run = RunState(
                run_id=f"due-{i:06d}",
                workflow_id="bench_timer",
                status=RunStatus.WAITING,
                current_node="sleep",
                vars={"until": past},
                waiting=WaitState(
                    reason=WaitReason.UNTIL, until=past, resume_to_node="done", result_key="woke"
                ),
                created_at=created,
                updated_at=created,
            )
        elif i % 3:
            run = RunState(
                run_id=f"user-{i:06d}",
                workflow_id="bench_loop",
                status=RunStatus.WAITING,
                current_node="ask",
                waiting=WaitState(
                    reason=WaitReason.USER,
                    prompt="Say something",
                    wait_key=f"user:user-{i:06d}:ask",
                    resume_to_node="ask",
                    result_key="said",
                ),
                created_at=created,
                updated_at=created,
            )
        else:
            run = RunState(
                run_id=f"done-{i:06d}",
                workflow_id="bench_loop",
                status=RunStatus.COMPLETED,
                current_node="ask",
                output={"ok": True},
                created_at=created,
                updated_at=created,
            )
        run_store.save(run)
    return time.perf_counter() - t0


def bench_tick_all(root: Path, total: int, due: int) -> Dict[str, float]:
    data_dir = root / "data-big"
    env = make_env(root, data_dir)
    cli = abstractrt_command()
    wrote = populate(root, data_dir, total, due)
    res = {"populate_s": wrote}
    dt, out = timed(cli + ["tick", "--all", "--quiet"], env)
    expected = f"tick --all: {due} moved ({due} completed"
    if not out.startswith(expected):
        raise SystemExit(f"unexpected tick --all output: {out!r} (expected {expected}…)")
    res["tick_all_due_s"] = dt
    idle = [timed(cli + ["tick", "--all", "--quiet"], env)[0] for _ in range(5)]
    res["tick_all_idle_s"] = statistics.median(idle)
    res["waiting_user_s"] = timed(cli + ["waiting", "--reason", "until", "--json"], env)[0]
    res["runs_limit_s"] = timed(cli + ["runs", "--limit", "20", "--json"], env)[0]
    return res


def importtime(
    root: Path, top: int = 12
) -> Tuple[float, List[Tuple[float, str]], List[Tuple[float, str]]]:
    """Import costs of ``abstractrt tick RUN``: total, self time summed per top-level
    package, and the slowest single imports (cumulative), in milliseconds."""
    data_dir = root / "data-small"
    env = make_env(root, data_dir)
    rt, loaded = runtime_for(root, data_dir)
    rid = rt.start(workflow=loaded.entry("bench_loop").spec, vars={})
    code = (
        "import sys; from abstractrt_cli.cli.app import main; "
        f"sys.argv = ['abstractrt', 'tick', {rid!r}]; main()"
    )
    cp = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True
    )
    per_pkg: Dict[str, float] = {}
    cumulative: List[Tuple[float, str]] = []
    for line in cp.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        self_us, cum_us, name = int(m.group(1)), int(m.group(2)), m.group(4)
        pkg = name.split(".")[0]
        per_pkg[pkg] = per_pkg.get(pkg, 0.0) + self_us / 1000
        cumulative.append((cum_us / 1000, name))
    total = sum(per_pkg.values())
    pkgs = sorted(((ms, name) for name, ms in per_pkg.items()), reverse=True)[:top]
    cumulative.sort(reverse=True)
    return total, pkgs, cumulative[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--total", type=int, default=20_000)
    ap.add_argument("--due", type=int, default=100)
    ap.add_argument("--importtime", action="store_true", help="always show import costs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    ap.add_argument("--no-regular", action="store_true",
                    help="skip the regular (pip install .) install: editable only")
    ap.add_argument("--installs-only", action="store_true",
                    help="only the start-up comparison of the two installs")
    ap.add_argument("--instructions", action="store_true",
                    help="also count the start-up commands' CPU instructions (valgrind)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="abstractrt-bench-"))
    try:
        (root / "workflows").mkdir()
        (root / "workflows" / "bench.py").write_text(textwrap.dedent(BENCH_WORKFLOWS))
        print(f"abstractrt CLI benchmark  ({sys.executable}, Python {sys.version.split()[0]})")
        print(f"command: {' '.join(abstractrt_command())}\n")

        report_installs(bench_installs(root, args.repeats, regular=not args.no_regular))
        if args.instructions:
            bench_instructions(root, regular=not args.no_regular)
        if args.installs_only:
            return

        res = bench_single_run_commands(root, args.repeats)
        base = median_ms(res["python -c pass"])
        for name, samples in res.items():
            ratio = (
                "" if name.startswith("python") else f"   {median_ms(samples) / base:4.1f}x python"
            )
            print(f"{name:36s} {fmt(samples)}{ratio}")
        tick_ratio = median_ms(res["abstractrt tick RUN"]) / base

        print(f"\npopulating {args.total:,} runs ({args.due} due) through the store API …")
        big = bench_tick_all(root, args.total, args.due)
        print(
            f"  written in {big['populate_s']:.1f} s "
            f"({big['populate_s'] / args.total * 1e6:.0f} µs per run)"
        )
        due_ms = big["tick_all_due_s"] * 1000
        print(
            f"abstractrt tick --all --quiet ({args.due} due)    {due_ms:8.1f} ms"
            f"   ({(big['tick_all_due_s'] - big['tick_all_idle_s']) / args.due * 1000:.1f} ms "
            "per due run above an idle tick --all)"
        )
        print(
            f"abstractrt tick --all --quiet (none due)   {big['tick_all_idle_s'] * 1000:8.1f} ms"
            f"   ({big['tick_all_idle_s'] * 1000 / base:.1f}x python)"
        )
        print(f"abstractrt waiting --reason until --json   {big['waiting_user_s'] * 1000:8.1f} ms")
        print(f"abstractrt runs --limit 20 --json          {big['runs_limit_s'] * 1000:8.1f} ms")

        if args.importtime or tick_ratio > 3:
            total, pkgs, slowest = importtime(root)
            print(
                f"\nimports of `abstractrt tick RUN` (python -X importtime): {total:.1f} ms in all"
            )
            print("  self time per top-level package:")
            for ms, name in pkgs:
                print(f"    {ms:7.1f} ms  {name}")
            print("  slowest imports (cumulative, nested ones included):")
            for ms, name in slowest:
                print(f"    {ms:7.1f} ms  {name}")
    finally:
        if args.keep:
            print(f"\ndata kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
