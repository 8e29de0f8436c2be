"""PRODUCT §10 in the kernel: the built-in llm_call against a real HTTP server on
127.0.0.1 (``tests/llm_fake.py``), tools with approvals, and limits that act."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from kernel_helpers import finish, node
from llm_fake import FakeLLM

from abstractrt_cli import Effect, RunStatus, RuntimeConfig, StepPlan, WaitReason, WorkflowSpec
from abstractrt_cli.core import loop as loop_module
from abstractrt_cli.core.integrity import verify_run
from abstractrt_cli.errors import LimitsError

KEY = "sk-test-0123456789abcdef-secret"


@pytest.fixture
def llm():
    with FakeLLM() as srv:
        yield srv


@pytest.fixture
def no_sleep(monkeypatch):
    slept: List[float] = []
    monkeypatch.setattr(loop_module.time, "sleep", slept.append)
    return slept


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    return "TEST_LLM_KEY"


def llm_wf(payload: Dict[str, Any], workflow_id: str = "chat") -> WorkflowSpec:
    return WorkflowSpec(workflow_id, "a", {
        "a": node("a", effect=Effect("llm_call", payload, "reply"), next="end"),
        "end": finish()})


def run_llm(make_runtime, registry, llm_cfg, payload, **entry_kw):
    w = llm_wf(payload)
    registry.register(w, **entry_kw)
    rt = make_runtime(config=RuntimeConfig(llm=llm_cfg))
    rid = rt.start(workflow=w)
    return rt, rid, rt.tick(run_id=rid)


def test_llm_call_sends_the_request_and_records_the_answer(make_runtime, registry, llm, key_env):
    llm.script([(200, llm.reply("Paris", total_tokens=21), {})])
    cfg = {"base_url": llm.base_url, "model": "m-config", "api_key_env": key_env}
    rt, rid, run = run_llm(make_runtime, registry, cfg,
                           {"prompt": "Capital of France?", "temperature": 0, "max_tokens": 5})
    assert run.status is RunStatus.COMPLETED, run.error
    (req,) = llm.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    assert req["body"] == {"model": "m-config", "temperature": 0, "max_tokens": 5,
                           "messages": [{"role": "user", "content": "Capital of France?"}]}
    reply = run.vars["reply"]
    assert reply["content"] == "Paris" and reply["finish_reason"] == "stop"
    assert reply["usage"]["total_tokens"] == 21 and reply["tool_calls"] == []
    limits = run.vars["_limits"]
    assert limits["current_iteration"] == 1 and limits["estimated_tokens_used"] == 21
    text = json.dumps([run.to_jsonable(), rt.get_ledger(rid)])
    assert KEY not in text


def test_payload_model_overrides_and_module_llm_overrides_config(make_runtime, registry, llm):
    cfg = {"base_url": "http://127.0.0.1:9/unused", "model": "m-config"}
    _, _, run = run_llm(make_runtime, registry, cfg,
                        {"messages": [{"role": "user", "content": "hi"}], "model": "m-payload"},
                        llm={"base_url": llm.base_url})
    assert run.status is RunStatus.COMPLETED, run.error
    assert llm.requests[0]["body"]["model"] == "m-payload"


def test_429_then_200_succeeds_after_a_retry_honouring_retry_after(make_runtime, registry, llm, no_sleep):
    llm.script([(429, {"error": {"message": "slow down"}}, {"Retry-After": "1.5"}),
                (200, llm.reply("ok"), {})])
    rt, rid, run = run_llm(make_runtime, registry, {"base_url": llm.base_url, "model": "m"},
                           {"prompt": "x"})
    assert run.status is RunStatus.COMPLETED and len(llm.requests) == 2
    assert no_sleep == [1.5]  # Retry-After beat the policy's 1 s
    attempts = [(r["attempt"], r["status"]) for r in rt.get_ledger(rid) if r["kind"] == "effect"]
    assert attempts == [(1, "failed"), (2, "completed")]


def test_repeated_500_fails_after_three_attempts_naming_status_and_message(make_runtime, registry, llm, no_sleep):
    llm.default = (500, {"error": {"message": "model exploded"}}, {})
    _, _, run = run_llm(make_runtime, registry, {"base_url": llm.base_url, "model": "m"},
                        {"prompt": "x"})
    assert run.status is RunStatus.FAILED and len(llm.requests) == 3
    assert "HTTP 500" in run.error and "model exploded" in run.error and "3 attempts" in run.error
    assert no_sleep == [1.0, 2.0]


def test_400_fails_at_once_with_the_servers_message(make_runtime, registry, llm, no_sleep, key_env):
    llm.default = (400, {"error": {"message": "unknown model 'nope'"}}, {})
    rt, rid, run = run_llm(make_runtime, registry,
                           {"base_url": llm.base_url, "model": "nope", "api_key_env": key_env},
                           {"prompt": "x"})
    assert run.status is RunStatus.FAILED and len(llm.requests) == 1
    assert "HTTP 400" in run.error and "unknown model 'nope'" in run.error
    assert KEY not in run.error and KEY not in json.dumps(rt.get_ledger(rid))


def test_a_timeout_is_retried(make_runtime, registry, llm, no_sleep):
    llm.script([("hang", 2.0, {}), (200, llm.reply("late but fine"), {})])
    _, _, run = run_llm(make_runtime, registry,
                        {"base_url": llm.base_url, "model": "m", "timeout": 0.3}, {"prompt": "x"})
    assert run.status is RunStatus.COMPLETED, run.error
    assert run.vars["reply"]["content"] == "late but fine" and len(llm.requests) == 2


def test_an_unreachable_server_is_retried_then_fails_clearly(make_runtime, registry, no_sleep):
    _, _, run = run_llm(make_runtime, registry, {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
                        {"prompt": "x"})
    assert run.status is RunStatus.FAILED and "cannot reach http://127.0.0.1:9/v1" in run.error


def test_without_llm_config_llm_call_stays_a_job_and_its_usage_counts(make_runtime, registry):
    w = llm_wf({"prompt": "x"})
    registry.register(w)
    rt = make_runtime()
    rid = rt.start(workflow=w)
    run = rt.tick(run_id=rid)
    assert run.waiting.reason is WaitReason.JOB
    run = rt.resume(run_id=rid, payload={"content": "done", "usage": {"total_tokens": 120}})
    assert run.status is RunStatus.COMPLETED
    assert run.vars["_limits"]["estimated_tokens_used"] == 120
    assert run.vars["_limits"]["current_iteration"] == 1


def test_tool_calls_from_an_llm_answer_are_parsed(make_runtime, registry, llm):
    llm.script([(200, llm.reply(None, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}]), {})])
    _, _, run = run_llm(make_runtime, registry, {"base_url": llm.base_url, "model": "m"},
                        {"prompt": "add", "tools": [{"type": "function", "function": {"name": "add"}}]})
    assert run.vars["reply"]["tool_calls"] == [{"call_id": "call_0", "name": "add",
                                                "arguments": {"a": 1, "b": 2}}]
    assert llm.requests[0]["body"]["tools"] == [{"type": "function", "function": {"name": "add"}}]


# ---------------------------------------------------------------------------- tools

CALLS = [{"call_id": "c1", "name": "add", "arguments": {"a": 2, "b": 3}},
         {"call_id": "c2", "name": "rm", "arguments": {"path": "/tmp/x"}},
         {"call_id": "c3", "name": "boom", "arguments": {}}]


def tools_wf() -> WorkflowSpec:
    return WorkflowSpec("tools", "a", {
        "a": node("a", effect=Effect("tool_calls", {"tool_calls": CALLS}, "out"), next="end"),
        "end": finish()})


def tool_runtime(make_runtime, registry, ran, approval):
    def add(a, b):
        ran.append("add")
        return a + b

    def rm(path):
        ran.append("rm")
        return f"removed {path}"

    def boom():
        ran.append("boom")
        raise RuntimeError("no such thing")

    w = tools_wf()
    registry.register(w, tools={"add": add, "rm": rm, "boom": boom}, tool_approval=approval)
    rt = make_runtime()
    rid = rt.start(workflow=w)
    return rt, rid


def test_tools_run_and_a_raising_tool_is_a_failed_call(make_runtime, registry):
    ran: List[str] = []
    rt, rid = tool_runtime(make_runtime, registry, ran, None)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED and ran == ["add", "rm", "boom"]
    res = run.vars["out"]["results"]
    assert [(r["call_id"], r["success"]) for r in res] == [("c1", True), ("c2", True), ("c3", False)]
    assert res[0]["output"] == 5 and "RuntimeError: no such thing" in res[2]["error"]
    rec = [r for r in rt.get_ledger(rid) if r["kind"] == "effect"][-1]
    assert rec["effect"]["payload"]["tool_calls"][0]["arguments"] == {"a": 2, "b": 3}
    assert rec["result"]["results"][0]["output"] == 5


def test_a_call_that_needs_approval_waits_and_runs_once_approved(make_runtime, registry):
    ran: List[str] = []
    rt, rid = tool_runtime(make_runtime, registry, ran, {"rm": "ask"})
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.WAITING and ran == ["add"]
    w = run.waiting
    assert w.reason is WaitReason.USER and w.choices == ["approve", "deny"] and not w.allow_free_text
    assert "rm" in w.prompt and "/tmp/x" in w.prompt
    run = rt.resume(run_id=rid, payload={"response": "Approve"})
    assert run.status is RunStatus.COMPLETED and ran == ["add", "rm", "boom"]
    assert [r["success"] for r in run.vars["out"]["results"]] == [True, True, False]
    assert run.tool_progress is None
    assert verify_run(run, rt.get_ledger(rid))["ok"]


def test_a_denied_call_is_recorded_and_never_run(make_runtime, registry):
    ran: List[str] = []
    rt, rid = tool_runtime(make_runtime, registry, ran, {"rm": "ask", "boom": "deny"})
    rt.tick(run_id=rid)
    run = rt.resume(run_id=rid, payload={"response": "deny"})
    assert run.status is RunStatus.COMPLETED and ran == ["add"]
    res = run.vars["out"]["results"]
    assert res[1]["success"] is False and "denied" in res[1]["error"]
    assert res[2]["success"] is False and "TOOL_APPROVAL" in res[2]["error"]


# ---------------------------------------------------------------------------- limits that act


def agent_loop_wf() -> WorkflowSpec:
    """llm_call again and again (a runaway agent loop)."""
    def think(run, ctx):
        n = run.vars.get("n", 0)
        if n >= 10:
            return StepPlan("think", complete_output={"n": n})
        run.vars["n"] = n + 1
        return StepPlan("think", effect=Effect("llm_call", {"prompt": f"step {n}"}, "last"),
                        next_node="think")
    return WorkflowSpec("agent", "think", {"think": think})


def agent(make_runtime, registry, llm, max_tokens=1000):
    llm.default = (200, llm.reply("more", total_tokens=400), {})
    w = agent_loop_wf()
    registry.register(w)
    rt = make_runtime(config=RuntimeConfig(llm={"base_url": llm.base_url, "model": "m"},
                                           max_tokens=max_tokens))
    rid = rt.start(workflow=w)
    return rt, rid


def test_a_token_limit_makes_the_run_wait_for_a_person_after_the_third_call(make_runtime, registry, llm):
    rt, rid = agent(make_runtime, registry, llm)
    run = rt.tick(run_id=rid)
    assert len(llm.requests) == 3 and run.status is RunStatus.WAITING
    w = run.waiting
    assert w.reason is WaitReason.USER and w.choices == ["continue", "stop"]
    assert w.details == {"guard": {"limit": "tokens", "used": 1200, "max": 1000}}
    assert "1200" in w.prompt and "1000" in w.prompt
    # Ticking again does not run on.
    assert rt.tick(run_id=rid).status is RunStatus.WAITING and len(llm.requests) == 3
    # continue: one more call, then the guard asks again.
    run = rt.resume(run_id=rid, payload={"response": "continue"})
    assert len(llm.requests) == 4 and run.waiting.details["guard"]["used"] == 1600
    run = rt.resume(run_id=rid, payload={"response": "stop"})
    assert run.status is RunStatus.CANCELLED and "tokens limit" in run.error
    assert verify_run(run, rt.get_ledger(rid))["ok"]


def test_lifting_the_limit_resumes_the_run_by_itself(make_runtime, registry, llm):
    rt, rid = agent(make_runtime, registry, llm)
    rt.tick(run_id=rid)
    with pytest.raises(LimitsError, match="above"):
        rt.update_limits(rid, {"max_tokens": 1200})
    run = rt.update_limits(rid, {"max_tokens": 2500})
    assert len(llm.requests) == 7 and run.status is RunStatus.WAITING
    assert run.waiting.details["guard"] == {"limit": "tokens", "used": 2800, "max": 2500}


def test_iterations_limit_acts_too(make_runtime, registry, llm):
    llm.default = (200, llm.reply("more", total_tokens=1), {})
    w = agent_loop_wf()
    registry.register(w)
    rt = make_runtime(config=RuntimeConfig(llm={"base_url": llm.base_url, "model": "m"},
                                           max_iterations=2))
    rid = rt.start(workflow=w)
    run = rt.tick(run_id=rid)
    assert len(llm.requests) == 2 and run.waiting.details["guard"]["limit"] == "iterations"


# ---------------------------------------------------------------------------- crash

DRIVER = Path(__file__).parent / "assets" / "kernel" / "llm_driver.py"


@pytest.mark.slow
def test_kill_after_the_answer_is_recorded_makes_exactly_one_request(tmp_path, llm):
    llm.default = (200, llm.reply("once", total_tokens=5), {})
    data = tmp_path / "data"
    env = dict(os.environ, LLM_URL=llm.base_url)
    p = subprocess.Popen([sys.executable, str(DRIVER), str(data), "start"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rid = p.stdout.readline().strip()
    # Wait until the answer's record is on disk, then kill -9 (the run file is not
    # checkpointed yet: the next node sleeps).
    deadline = time.monotonic() + 30
    ledger = None
    while time.monotonic() < deadline:
        ledgers = list(data.glob(f"runs/*/{rid}.jsonl"))
        if ledgers and '"status":"completed","effect":{"type":"llm_call"' in ledgers[0].read_text():
            ledger = ledgers[0]
            break
        time.sleep(0.005)
    assert ledger is not None, p.stderr.read()
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    assert len(llm.requests) == 1
    out = subprocess.run([sys.executable, str(DRIVER), str(data), "tick", rid], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed once"
    assert len(llm.requests) == 1
