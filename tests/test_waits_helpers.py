"""Shared by the PRODUCT §8 tests (``test_waits_*``, ``test_events_*``): small workflows
whose waits are configured from the run's vars, and helpers over the installed command.

No tests here: the module is named ``test_`` so that it belongs with the tests it serves.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Dict, List

from cli_helpers import CLI, Result

from abstractrt_cli.core.timeutil import parse_timestamp

# ``ask``: one ask_user whose payload is vars["ask"] (timeout, on_timeout, schema,
# allowed_actors, choices... as the test wants), then done; ``escalate`` is there for
# ``on_timeout: {"goto": "escalate"}``. ``event``: one wait_event with vars["wait"].
# ``loop``: waits on vars["key"] (default k) vars["times"] times, collecting the payloads.
WAITS_WORKFLOWS = '''
"""Configurable waits for the PRODUCT §8 tests."""

from abstractrt_cli import Effect, StepPlan, WorkflowSpec


def ask(run, ctx):
    opts = dict(run.vars.get("ask") or {})
    opts.setdefault("prompt", "Go ahead?")
    return StepPlan("ask", effect=Effect("ask_user", opts, "answer"), next_node="done")


def escalate(run, ctx):
    return StepPlan("escalate", complete_output={"escalated": True,
                                                 "answer": run.vars.get("answer")})


def done(run, ctx):
    return StepPlan("done", complete_output={"answer": run.vars.get("answer"),
                                             "event": run.vars.get("event")})


ask_flow = WorkflowSpec("ask", "ask", {"ask": ask, "escalate": escalate, "done": done})


def wait(run, ctx):
    opts = dict(run.vars.get("wait") or {})
    opts.setdefault("wait_key", "k")
    return StepPlan("wait", effect=Effect("wait_event", opts, "event"), next_node="done")


event_flow = WorkflowSpec("event", "wait", {"wait": wait, "done": done})


def collect(run, ctx):
    got = run.vars.setdefault("got", [])
    if "last" in run.vars:
        got.append(run.vars.pop("last"))
    if len(got) >= int(run.vars.get("times", 2)):
        return StepPlan("collect", complete_output={"got": got})
    return StepPlan("collect", effect=Effect("wait_event", {"wait_key": run.vars.get("key", "k")},
                                             "last"), next_node="collect")


loop = WorkflowSpec("loop", "collect", {"collect": collect})
'''


def waits_world(tmp_path, monkeypatch=None) -> CLI:
    """A CLI world with the examples and the workflows above (``waits.py``)."""
    cli = CLI(tmp_path, monkeypatch)
    cli.write_workflow("waits.py", WAITS_WORKFLOWS)
    return cli


def run_ok(cli: CLI, *args: str, env: Dict[str, str] = None, input: str = None) -> Result:
    """The installed command, as a real process, that must succeed."""
    r = cli.run(*args, env=env, input=input)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.stderr, r.output
    return r


def run_json(cli: CLI, *args: str, env: Dict[str, str] = None) -> Any:
    return run_ok(cli, *args, "--json", env=env).json()


def as_actor(cli: CLI, name: str) -> Dict[str, str]:
    """The world's environment with ABSTRACTRT_ACTOR set to ``name``."""
    return {**cli.env, "ABSTRACTRT_ACTOR": name}


def resumes(cli: CLI, run_id: str) -> List[Dict[str, Any]]:
    return [r for r in run_json(cli, "ledger", run_id) if r.get("kind") == "resume"]


def sleep_past(iso: str) -> None:
    """Sleep until the moment ``iso`` has passed (a wait for a real deadline or expiry to
    come, not a timing assertion)."""
    left = (parse_timestamp(iso) - datetime.now(timezone.utc)).total_seconds()
    time.sleep(max(0.0, left) + 0.05)
    while datetime.now(timezone.utc) <= parse_timestamp(iso):
        time.sleep(0.05)
