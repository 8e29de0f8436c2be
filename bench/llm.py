"""LLM benchmark: what the runtime adds to each built-in ``llm_call`` beyond the HTTP round trip.

One run makes N ``llm_call`` effects in a row (default 1,000) against the fake
OpenAI-compatible server of ``tests/llm_fake.py`` on 127.0.0.1 — in its own process by
default (``--server thread``: in this one), so the client's CPU time is the client's. In
the same run, against the same server, with the same request body:

  * http     — the round trip alone: ``urllib.request.urlopen`` of the JSON body, the
               response read and parsed (what any client must do);
  * handler  — ``core.llm.call_llm`` called directly: the round trip plus building the
               request and shaping the result;
  * runtime  — the whole effect step on the file store (fsync on, as the CLI runs): node,
               idempotency key, ledger records, checkpoints, limit counting, and the
               round trip;
  * memory   — the same with the in-memory stores (the runtime without the disk).

Overhead per call = runtime − http. The runtime rows also give the mean time per call of
the first 100 and of the last 100 calls: a long agent loop must not get slower per call
as its ledger grows. Each measure is repeated (``--repeat``, interleaved)
and the best is kept: the machine may be shared. Wall time and this process's CPU time
are both reported; with the server in its own process, CPU time is the client's alone.

    python bench/llm.py [--calls 1000] [--repeat 3] [--server process|thread] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = {"messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 5}
MODEL = "fake-1"


# ---------------------------------------------------------------------------- the server


class Server:
    """The fake server, in its own process (default) or on a thread of this one."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._proc: Optional[subprocess.Popen] = None
        self._fake: Any = None
        if mode == "process":
            self._proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "llm_fake.py")],
                                          stdout=subprocess.PIPE, text=True)
            assert self._proc.stdout is not None
            self.base_url = self._proc.stdout.readline().strip()
        else:
            sys.path.insert(0, str(REPO / "tests"))
            from llm_fake import FakeLLM

            self._fake = FakeLLM().__enter__()
            self.base_url = self._fake.base_url

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            if self._proc.stdout:
                self._proc.stdout.close()
        if self._fake is not None:
            self._fake.__exit__(None, None, None)


# ---------------------------------------------------------------------------- measures


def timed(fn: Callable[[], None]) -> Tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def measure_http(base_url: str, n: int) -> Tuple[float, float]:
    import urllib.request

    body = json.dumps({"model": MODEL, **PAYLOAD}).encode()
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}

    def go() -> None:
        for _ in range(n):
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=60) as resp:
                json.loads(resp.read())

    return timed(go)


def measure_handler(base_url: str, n: int) -> Tuple[float, float]:
    from abstractrt_cli.core.llm import call_llm

    config = {"base_url": base_url, "model": MODEL}

    def go() -> None:
        for _ in range(n):
            out = call_llm(config, PAYLOAD)
            assert out.status == "completed", out.error

    return timed(go)


def _workflow(n: int) -> Any:
    from abstractrt_cli import Effect, StepPlan, WorkflowSpec

    def ask(run: Any, ctx: Any) -> Any:
        i = run.vars.get("i", 0)
        if i >= n:
            return StepPlan("ask", complete_output={"calls": i})
        run.vars["i"] = i + 1
        return StepPlan("ask", effect=Effect("llm_call", PAYLOAD, "reply"), next_node="ask")

    return WorkflowSpec("bench_llm", "ask", {"ask": ask})


WINDOW = 100
STAMPS: Dict[str, List[float]] = {}


def measure_runtime(base_url: str, n: int, store: str, root: Path) -> Tuple[float, float]:
    from abstractrt_cli.core import llm as llm_module
    from abstractrt_cli import (
        InMemoryLedgerStore, InMemoryRunStore, RunStatus, Runtime, RuntimeConfig, WorkflowRegistry,
    )
    from abstractrt_cli.storage import open_stores

    wf = _workflow(n)
    registry = WorkflowRegistry()
    registry.register(wf)
    # Every call counts one iteration: the limits must not stop the bench.
    config = RuntimeConfig(llm={"base_url": base_url, "model": MODEL}, max_iterations=n + 10,
                           max_tokens=10 ** 12)
    if store == "files":
        data = Path(tempfile.mkdtemp(prefix="bench-llm-", dir=root))
        stores = open_stores(None, data, create=True)
        rs, ls = stores.runs, stores.ledger
    else:
        stores, rs, ls = None, InMemoryRunStore(), InMemoryLedgerStore()
    rt = Runtime(run_store=rs, ledger_store=ls, workflow_registry=registry, config=config)
    rid = rt.start(workflow=wf)
    out: Dict[str, Any] = {}
    stamps: List[float] = []
    real_call = llm_module.call_llm

    def stamped(*a: Any, **kw: Any) -> Any:  # when each request starts: the per-call gaps
        stamps.append(time.perf_counter())
        return real_call(*a, **kw)

    def go() -> None:
        out["run"] = rt.tick(run_id=rid, max_steps=n + 10)

    llm_module.call_llm = stamped
    try:
        result = timed(go)
    finally:
        llm_module.call_llm = real_call
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    if len(gaps) >= 2 * WINDOW:
        first, last = sum(gaps[:WINDOW]) / WINDOW, sum(gaps[-WINDOW:]) / WINDOW
        old = STAMPS.get(store)
        if old is None or first + last < old[0] + old[1]:
            STAMPS[store] = [first, last]
    run = out["run"]
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.vars["_limits"]["current_iteration"] == n
    if stores is not None:
        stores.close()
        shutil.rmtree(data, ignore_errors=True)
    return result


# ---------------------------------------------------------------------------- report


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="llm_call effects per measure (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N, interleaved (default 3)")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="the fake server in its own process (default) or on a thread")
    parser.add_argument("--dir", default=None, help="where the file store's data dirs go (default: a temp dir)")
    args = parser.parse_args(argv)
    n = args.calls
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-llm-"))
    root.mkdir(parents=True, exist_ok=True)
    server = Server(args.server)
    try:
        measure_http(server.base_url, 20)  # warm: imports, the server's first connections
        measure_runtime(server.base_url, 20, "files", root)
        best: Dict[str, Tuple[float, float]] = {}
        for _ in range(args.repeat):
            for name, fn in (("http", lambda: measure_http(server.base_url, n)),
                             ("handler", lambda: measure_handler(server.base_url, n)),
                             ("runtime", lambda: measure_runtime(server.base_url, n, "files", root)),
                             ("memory", lambda: measure_runtime(server.base_url, n, "memory", root))):
                wall, cpu = fn()
                old = best.get(name)
                best[name] = (min(wall, old[0]), min(cpu, old[1])) if old else (wall, cpu)
    finally:
        server.close()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)

    def us(name: str, i: int) -> float:
        return best[name][i] / n * 1e6

    rows = [
        ("http: urllib round trip alone", "http"),
        ("handler: call_llm (round trip + request/result)", "handler"),
        ("runtime: llm_call effect, file store (fsync)", "runtime"),
        ("memory: llm_call effect, in-memory stores", "memory"),
    ]
    print(f"LLM benchmark — {n:,} llm_call effects per measure, fake server on a "
          f"{'separate process' if args.server == 'process' else 'thread of this process'}, "
          f"best of {args.repeat}")
    head = ("", "wall µs/call", "client CPU µs/call")
    width = max(len(r[0]) for r in rows) + 2
    print(f"{head[0]:<{width}}{head[1]:>14}{head[2]:>20}")
    for label, name in rows:
        print(f"{label:<{width}}{us(name, 0):>14,.0f}{us(name, 1):>20,.0f}")
    print()
    for label, name in (("file store", "runtime"), ("in-memory stores", "memory")):
        print(f"runtime overhead per call beyond the round trip, {label}: "
              f"{us(name, 0) - us('http', 0):,.0f} µs wall, {us(name, 1) - us('http', 1):,.0f} µs CPU "
              f"({us(name, 0) / us('http', 0):.2f}× the round trip)")
    print(f"of which the handler (request and result shaping): "
          f"{us('handler', 0) - us('http', 0):,.0f} µs wall, {us('handler', 1) - us('http', 1):,.0f} µs CPU")
    for label, store in (("file store", "files"), ("in-memory stores", "memory")):
        if store in STAMPS:
            first, last = STAMPS[store]
            print(f"µs per call, {label}: first {WINDOW} {first * 1e6:,.0f}, last {WINDOW} "
                  f"{last * 1e6:,.0f} ({last / first:.2f}×)")


if __name__ == "__main__":
    main()
