"""Four emitters and four tickers as real processes on one data dir (PRODUCT §8): no event
is lost and none is delivered twice.

Every run loops on ``wait_event k`` until it has collected one payload per event; it is
created before any emit, so each must end up with every event exactly once — whether an
emit delivered it while the run waited, or the run found it kept when a ticker brought it
back to its wait (also when an emit met it busy in a ticker's hands).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

from cli_helpers import abstractrt_command
from test_waits_helpers import resumes, run_json, run_ok, waits_world

EMITTERS, EVENTS_EACH, TICKERS, RUNS = 4, 4, 4, 3
TOTAL = EMITTERS * EVENTS_EACH

_EMITTER = textwrap.dedent("""
    import json, subprocess, sys
    cmd, who, n = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(n):
        cp = subprocess.run(cmd + ["emit", "k", "--set", f"who={who}", "--set", f"i={i}"],
                            capture_output=True, text=True)
        if cp.returncode != 0:
            sys.exit(f"emit {who}/{i}: exit {cp.returncode}: {cp.stderr}")
""")

# Ticks every run in turn until each has completed (or 180 s have passed): a tick of a run
# at its wait hands it the kept events it has not received.
_TICKER = textwrap.dedent("""
    import json, subprocess, sys, time
    cmd, runs = json.loads(sys.argv[1]), sys.argv[2:]
    done, give_up = set(), time.monotonic() + 180
    while len(done) < len(runs) and time.monotonic() < give_up:
        for rid in runs:
            if rid in done:
                continue
            cp = subprocess.run(cmd + ["tick", rid, "--json"], capture_output=True, text=True)
            if cp.returncode == 0 and json.loads(cp.stdout)["status"] == "completed":
                done.add(rid)
            elif cp.returncode not in (0, 4):  # 4: busy in another process, fine
                sys.exit(f"tick {rid}: exit {cp.returncode}: {cp.stderr}")
        time.sleep(0.2)
    sys.exit(0 if len(done) == len(runs) else f"not completed: {sorted(set(runs) - done)}")
""")


def test_concurrent_emitters_and_tickers_lose_no_event_and_deliver_none_twice(tmp_path):
    cli = waits_world(tmp_path)
    runs = [run_json(cli, "start", "loop", "--set", f"times={TOTAL}")["run_id"] for _ in range(RUNS)]
    cmd = json.dumps(abstractrt_command())

    def spawn(script, *args):
        return subprocess.Popen([sys.executable, "-c", script, cmd, *args], env=cli.env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    procs = [spawn(_EMITTER, f"e{n}", str(EVENTS_EACH)) for n in range(EMITTERS)]
    procs += [spawn(_TICKER, *runs) for _ in range(TICKERS)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{p.args[3:]}: {out}{err}"

    events = run_json(cli, "events")
    assert len(events) == TOTAL
    sent = {(e["payload"]["who"], e["payload"]["i"]) for e in events}
    assert len(sent) == TOTAL
    for rid in runs:
        run = run_json(cli, "show", rid)
        assert run["status"] == "completed", run
        got = [(g["who"], g["i"]) for g in run["output"]["got"]]
        assert len(got) == TOTAL and set(got) == sent  # nothing lost, nothing twice
        ids = [r["result"]["event_id"] for r in resumes(cli, rid)]
        assert sorted(ids) == sorted(e["event_id"] for e in events)
        run_ok(cli, "ledger", rid, "--verify")
    for e in events:
        assert Counter(e["received_by"]) == Counter(runs), e  # each run once, no other
