"""Notification hooks (PRODUCT §7) run by the kernel's transitions, with real processes."""

from __future__ import annotations

import json
import time

import pytest

from kernel_helpers import finish, node

from abstractrt_cli import Effect, RunStatus, WorkflowSpec
from abstractrt_cli.errors import ConfigError
from abstractrt_cli.hooks import HookRunner, parse_hooks


def ask_wf():
    return WorkflowSpec("ask", "a", {
        "a": node("a", effect=Effect("ask_user", {"prompt": "Ship it?"}, "x"), next="end"),
        "end": finish()})


def test_hooks_get_the_run_on_stdin_and_its_env(make_runtime, registry, tmp_path):
    out = tmp_path / "hook.log"
    hooks = parse_hooks({"on_wait": f'(printf "%s|%s|%s|%s|" "$ABSTRACTRT_EVENT" "$ABSTRACTRT_RUN_ID" '
                                    f'"$ABSTRACTRT_PROMPT" "$ABSTRACTRT_ANSWER_CMD"; cat) >> {out}',
                         "on_complete": f'echo "done $ABSTRACTRT_RUN_ID" >> {out}'}, source="t")
    runner = HookRunner(hooks, answer_cmd=lambda run: f"abstractrt answer {run.run_id}")
    registry.register(ask_wf())
    rt = make_runtime(on_transition=runner)
    rid = rt.start(workflow=registry.get("ask"))
    rt.tick(run_id=rid)
    event, run_id, prompt, cmd, doc = out.read_text().split("|", 4)
    assert (event, run_id, prompt, cmd) == ("wait", rid, "Ship it?", f"abstractrt answer {rid}")
    assert json.loads(doc)["status"] == "waiting"
    rt.resume(run_id=rid, payload={"response": "yes"})
    assert out.read_text().endswith(f"done {rid}\n")
    assert runner.warnings == []


def test_a_failing_or_hanging_hook_is_a_warning_and_never_fails_the_run(make_runtime, registry):
    runner = HookRunner(parse_hooks({"on_wait": "sleep 30", "on_complete": "echo nope >&2; exit 3",
                                     "timeout": 0.3}, source="t"), answer_cmd=lambda r: "")
    registry.register(ask_wf())
    rt = make_runtime(on_transition=runner)
    rid = rt.start(workflow=registry.get("ask"))
    t0 = time.monotonic()
    assert rt.tick(run_id=rid).status is RunStatus.WAITING
    assert time.monotonic() - t0 < 5
    run = rt.resume(run_id=rid, payload={"response": "y"})
    assert run.status is RunStatus.COMPLETED and rt.get_state(rid).status is RunStatus.COMPLETED
    assert "timeout" in runner.warnings[0] and "exited 3: nope" in runner.warnings[1]


@pytest.mark.parametrize("bad", [[], {"on_start": "x"}, {"on_wait": 3}, {"timeout": 0}])
def test_malformed_hooks_are_config_errors(bad):
    with pytest.raises(ConfigError):
        parse_hooks(bad, source="config.yaml")


def test_remind_every_runs_the_on_wait_hook_again_once_per_period(make_runtime, registry, clock, tmp_path):
    from abstractrt_cli.core.integrity import verify_run

    out = tmp_path / "reminders.log"
    runner = HookRunner(parse_hooks({"on_wait": f'echo "$ABSTRACTRT_EVENT" >> {out}'}, source="t"),
                        answer_cmd=lambda r: "")
    w = WorkflowSpec("nag", "a", {
        "a": node("a", effect=Effect("ask_user", {"prompt": "Sign?", "remind_every": "1h"}, "x"),
                  next="end"),
        "end": finish()})
    registry.register(w)
    rt = make_runtime(on_transition=runner)
    rid = rt.start(workflow=w)
    rt.tick(run_id=rid)
    assert out.read_text().split() == ["wait"]
    assert rt.remind_due() == []  # not due yet
    clock.advance(3601)
    assert [r.run_id for r in rt.remind_due()] == [rid]
    assert rt.remind_due() == []  # once per period
    clock.advance(2 * 3600)
    assert len(rt.remind_due()) == 1  # two periods later: one reminder, counted as the 3rd
    assert out.read_text().split() == ["wait", "wait", "wait"]
    run = rt.get_state(rid)
    assert run.waiting.reminded == 3
    assert [r["result"]["reminder"] for r in rt.get_ledger(rid) if r["kind"] == "reminder"] == [1, 3]
    assert verify_run(run, rt.get_ledger(rid))["ok"]
    assert rt.resume(run_id=rid, payload={"response": "ok"}).status is RunStatus.COMPLETED
