"""PRODUCT §10 from the command line: the installed ``abstractrt`` against a fake
OpenAI-compatible server (``tests/llm_fake.py``, served from this test process while the
command runs as a real process).

The agent loop is the example ``workflows/agent_loop.py``: llm_call, tool_calls with the
model's calls, llm_call again until no tool calls are left; ``save_note`` needs a
person's approval. The API key comes from the variable named by ``llm.api_key_env`` and
must appear in no file of the data dir and in no output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from cli_helpers import CLI, Result, assert_one_line_error, unchanged
from llm_fake import FakeLLM

KEY = "sk-cli-test-7f3a9c2e5b1d-secret"
KEY_ENV = "TEST_LLM_KEY"


class World:
    """A CLI world whose config file names the fake server; every output is kept."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch, srv: FakeLLM, *,
                 configured: bool = True) -> None:
        self.cli = CLI(tmp, monkeypatch)
        self.srv = srv
        self.notes = tmp / "notes"
        self.env = dict(self.cli.env, **{KEY_ENV: KEY, "AGENT_NOTES_DIR": str(self.notes)})
        if configured:
            self.cli.config.write_text(
                f"llm:\n  base_url: {srv.base_url}\n  model: fake-model\n"
                f"  api_key_env: {KEY_ENV}\n  timeout: 10\n", encoding="utf-8")
        self.outputs: List[str] = []

    def __call__(self, *args: str) -> Result:
        r = self.cli.run(*args, env=self.env)
        self.outputs.append(r.stdout + r.stderr)
        assert "Traceback" not in r.stdout + r.stderr, r.output
        return r

    def ok(self, *args: str) -> Result:
        r = self(*args)
        assert r.exit_code == 0, r.output
        return r

    def start(self, *args: str) -> Dict[str, Any]:
        r = self("start", "agent_loop", *args, "--json")
        assert r.exit_code in (0, 3), r.output
        return r.json()

    def show(self, rid: str) -> Dict[str, Any]:
        return self.ok("show", rid, "--json").json()

    def ledger(self, rid: str) -> List[Dict[str, Any]]:
        return self.ok("ledger", rid, "--json").json()

    def limits(self, rid: str) -> Dict[str, Any]:
        return self.ok("limits", rid, "--json").json()

    def tick(self, rid: str) -> Dict[str, Any]:
        return self.ok("tick", rid, "--json").json()

    def resume(self, rid: str, answer: str) -> Dict[str, Any]:
        return self.ok("resume", rid, "--answer", answer, "--json").json()

    def assert_no_key_anywhere(self) -> None:
        for out in self.outputs:
            assert KEY not in out
        for p in self.cli.data_dir.rglob("*"):
            if p.is_file():
                assert KEY.encode() not in p.read_bytes(), p


@pytest.fixture
def srv():
    with FakeLLM() as s:
        yield s


@pytest.fixture
def world(tmp_path, monkeypatch, srv):
    return World(tmp_path, monkeypatch, srv)


def call(name: str, call_id: str, **arguments: Any) -> Dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": arguments}


def effects(ledger: List[Dict[str, Any]], etype: str) -> List[Dict[str, Any]]:
    return [r for r in ledger if r.get("kind") == "effect" and (r.get("effect") or {}).get("type") == etype]


# ---------------------------------------------------------------------------- the agent loop


def test_an_agent_loop_runs_from_the_cli_and_the_ledger_holds_every_call(world, srv):
    srv.script([
        (200, srv.reply(None, total_tokens=30, tool_calls=[
            call("add", "c1", a=17, b=25), call("add", "c2", a=1),  # c2 raises: a failed call
            call("word_count", "c3", text="one two three")])),
        (200, srv.reply("17 + 25 = 42.", total_tokens=50)),
    ])
    run = world.start()
    assert run["status"] == "completed", run
    assert run["output"] == {"answer": "17 + 25 = 42.", "rounds": 1}

    first, second = srv.requests
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == f"Bearer {KEY}"
    body = first["body"]
    assert body["model"] == "fake-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "17 + 25" in body["messages"][1]["content"]
    assert [t["function"]["name"] for t in body["tools"]] == ["add", "word_count", "save_note"]
    # The second call carries the model's calls and every result, the failure included.
    msgs = second["body"]["messages"]
    assert msgs[2]["role"] == "assistant" and [c["id"] for c in msgs[2]["tool_calls"]] == ["c1", "c2", "c3"]
    told = {m["tool_call_id"]: json.loads(m["content"]) for m in msgs[3:]}
    assert told["c1"] == 42 and told["c3"] == 3
    assert "TypeError" in told["c2"]["error"] and "b" in told["c2"]["error"]

    rid = run["run_id"]
    ledger = world.ledger(rid)
    llm = effects(ledger, "llm_call")
    assert len(llm) == 2 and all(r["status"] == "completed" for r in llm)
    assert llm[0]["effect"]["payload"]["messages"][1]["role"] == "user"
    assert llm[0]["result"]["tool_calls"][0] == {"call_id": "c1", "name": "add",
                                                  "arguments": {"a": 17, "b": 25}}
    assert llm[1]["result"]["content"] == "17 + 25 = 42." and llm[1]["result"]["usage"]["total_tokens"] == 50
    (tools,) = effects(ledger, "tool_calls")
    assert [c["arguments"] for c in tools["effect"]["payload"]["tool_calls"]] == [
        {"a": 17, "b": 25}, {"a": 1}, {"text": "one two three"}]
    results = tools["result"]["results"]
    assert [(r["call_id"], r["success"], r["output"]) for r in results] == [
        ("c1", True, 42), ("c2", False, None), ("c3", True, 3)]

    lim = world.limits(rid)["limits"]
    assert lim["current_iteration"] == 2 and lim["estimated_tokens_used"] == 80
    assert "chain intact" in world.ok("ledger", rid, "--verify").stdout
    world.ok("show", rid)
    world.ok("ledger", rid)
    shown = world.ok("config").stdout
    assert f"api_key_env={KEY_ENV} (set)" in shown and srv.base_url in shown
    world.assert_no_key_anywhere()


def test_a_payload_model_overrides_the_configured_one(world, srv):
    srv.default = (200, srv.reply("hi"), {})
    assert world.start("--set", "model=other-model")["status"] == "completed"
    assert srv.requests[0]["body"]["model"] == "other-model"


# ---------------------------------------------------------------------------- approvals


def note_script(srv: FakeLLM) -> None:
    srv.script([
        (200, srv.reply(None, total_tokens=20, tool_calls=[
            call("add", "c1", a=40, b=2), call("save_note", "c2", title="sum", text="42")])),
        (200, srv.reply("Done.", total_tokens=20)),
    ])


def test_a_call_that_needs_approval_waits_and_resume_approve_runs_it(world, srv):
    note_script(srv)
    run = world.start()
    rid = run["run_id"]
    assert run["status"] == "waiting", run
    w = run["waiting"]
    assert w["reason"] == "user" and w["choices"] == ["approve", "deny"] and not w["allow_free_text"]
    assert "save_note" in w["prompt"] and '"title": "sum"' in w["prompt"]
    assert not world.notes.exists() and len(srv.requests) == 1
    shown = world.ok("waiting").stdout
    assert "Run tool save_note" in shown

    r = world.ok("resume", rid, "--answer", "approve")
    assert "completed" in r.stdout
    assert (world.notes / "sum.txt").read_text() == "42\n"
    assert len(srv.requests) == 2
    told = {m["tool_call_id"]: json.loads(m["content"])
            for m in srv.requests[1]["body"]["messages"] if m["role"] == "tool"}
    assert told == {"c1": 42, "c2": {"saved": str(world.notes / "sum.txt")}}
    # add ran once, before the wait: its result was kept, not run again after approval.
    (tools,) = [r for r in effects(world.ledger(rid), "tool_calls") if r["status"] == "completed"]
    assert [x["success"] for x in tools["result"]["results"]] == [True, True]
    assert "chain intact" in world.ok("ledger", rid, "--verify").stdout
    world.assert_no_key_anywhere()


def test_a_denied_call_is_recorded_returned_as_an_error_and_never_run(world, srv):
    note_script(srv)
    rid = world.start()["run_id"]
    r = world.ok("resume", rid, "--answer", "deny")
    assert "completed" in r.stdout
    assert not world.notes.exists()  # the side file save_note would have written
    told = {m["tool_call_id"]: json.loads(m["content"])
            for m in srv.requests[1]["body"]["messages"] if m["role"] == "tool"}
    assert told["c1"] == 42 and "denied" in told["c2"]["error"]
    (tools,) = [r for r in effects(world.ledger(rid), "tool_calls") if r["status"] == "completed"]
    denied = tools["result"]["results"][1]
    assert denied["success"] is False and denied["output"] is None and "denied" in denied["error"]


def test_an_answer_script_approves_a_tool_call(world, srv, tmp_path):
    note_script(srv)
    rid = world.start()["run_id"]
    rules = tmp_path / "answers.yaml"
    rules.write_text('- prompt: "Run tool save_note"\n  answer: approve\n', encoding="utf-8")
    r = world.ok("answer", "--script", str(rules))
    assert "answered 1 prompt" in r.stdout, r.output
    assert world.show(rid)["status"] == "completed"
    assert (world.notes / "sum.txt").is_file()


def test_start_with_answers_approves_as_the_prompts_come(world, srv, tmp_path):
    note_script(srv)
    rules = tmp_path / "answers.yaml"
    rules.write_text('- prompt_regex: "^Run tool save_note"\n  answer: Approve\n', encoding="utf-8")
    r = world("start", "agent_loop", "--answers", str(rules), "--json")
    assert r.exit_code == 0, r.output
    assert (world.notes / "sum.txt").is_file() and len(world.srv.requests) == 2


# ---------------------------------------------------------------------------- limits that act


def runaway(srv: FakeLLM) -> None:
    """Every answer costs 400 tokens and asks for one more tool call: a loop with no end."""
    srv.default = (200, srv.reply(None, total_tokens=400, tool_calls=[call("add", "c", a=1, b=1)]), {})


def test_a_runaway_loop_waits_at_its_token_limit_and_a_person_decides(world, srv):
    runaway(srv)
    rid = world.start("--no-tick")["run_id"]
    world.ok("limits", rid, "--set", "max_tokens=1000")
    run = world.tick(rid)
    assert len(srv.requests) == 3 and run["status"] == "waiting"
    w = run["waiting"]
    assert w["reason"] == "user" and w["choices"] == ["continue", "stop"]
    assert w["details"] == {"guard": {"limit": "tokens", "used": 1200, "max": 1000}}
    assert "1200" in w["prompt"] and "1000" in w["prompt"]
    assert "tokens 1200/1000" in world.ok("limits", rid).stdout
    assert "used 1200 of its 1000 tokens" in world.ok("waiting").stdout

    # Ticking does not run on; refusals change nothing.
    assert world.tick(rid)["status"] == "waiting" and len(srv.requests) == 3
    for value, needle in (("1200", "above"), ("-5", "negative")):
        with unchanged(world.cli):
            r = world("limits", rid, "--set", f"max_tokens={value}")
        assert_one_line_error(r, 1, needle)

    # Lifting the limit resumes the run by itself, until it reaches the new one; the
    # command shows where the run went after the limits.
    out = world.ok("limits", rid, "--set", "max_tokens=2500").stdout
    assert "tokens" in out and "resumed" in out and "2800" in out, out
    run = world.show(rid)
    assert len(srv.requests) == 7
    assert run["waiting"]["details"]["guard"] == {"limit": "tokens", "used": 2800, "max": 2500}

    # continue: one more step, then the guard asks again.
    assert world.resume(rid, "continue")["waiting"]["details"]["guard"]["used"] == 3200
    assert len(srv.requests) == 8

    run = world.resume(rid, "stop")
    assert run["status"] == "cancelled" and "tokens limit" in run["error"]
    assert len(srv.requests) == 8
    with unchanged(world.cli):
        r = world("limits", rid, "--set", "max_tokens=99999")
    assert_one_line_error(r, 1, "ended")
    assert "chain intact" in world.ok("ledger", rid, "--verify").stdout
    world.assert_no_key_anywhere()


def test_the_iterations_limit_acts_too(world, srv):
    runaway(srv)
    srv.default = (200, srv.reply(None, total_tokens=1, tool_calls=[call("add", "c", a=1, b=1)]), {})
    rid = world.start("--no-tick")["run_id"]
    world.ok("limits", rid, "--set", "max_iterations=2")
    run = world.tick(rid)
    assert len(srv.requests) == 2
    assert run["waiting"]["details"]["guard"] == {"limit": "iterations", "used": 2, "max": 2}
    moved = world.ok("limits", rid, "--set", "max_iterations=3", "--json").json()
    assert moved["moved"] is True and moved["run_status"] == "waiting"
    assert len(srv.requests) == 3
    assert world.ok("limits", rid, "--json").json()["moved"] is False
    assert world.show(rid)["waiting"]["details"]["guard"]["used"] == 3


def test_a_passed_through_jobs_reported_usage_counts(tmp_path, monkeypatch, srv):
    world = World(tmp_path, monkeypatch, srv, configured=False)  # no llm: llm_call is a job
    run = world.start()
    rid = run["run_id"]
    assert run["waiting"]["reason"] == "job" and srv.requests == []
    world.ok("resume", rid, "--payload", json.dumps({"content": "Done.", "usage": {"total_tokens": 120}}))
    lim = world.limits(rid)
    assert lim["limits"]["estimated_tokens_used"] == 120 and lim["limits"]["current_iteration"] == 1
    assert "tokens 120/" in world.ok("limits", rid).stdout
    assert world.show(rid)["output"] == {"answer": "Done.", "rounds": 0}


# ---------------------------------------------------------------------------- retries


def test_429_then_200_succeeds_after_one_retry(world, srv):
    srv.script([(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
                (200, srv.reply("fine"))])
    run = world.start()
    assert run["status"] == "completed" and len(srv.requests) == 2
    attempts = [(r["attempt"], r["status"]) for r in effects(world.ledger(run["run_id"]), "llm_call")]
    assert attempts == [(1, "failed"), (2, "completed")]


def test_repeated_500_fails_after_three_attempts_naming_the_status(world, srv):
    srv.default = (500, {"error": {"message": "model exploded"}}, {})
    r = world("start", "agent_loop")
    assert r.exit_code == 3, r.output
    assert len(srv.requests) == 3
    run = world.show(r.stderr.split("started run ")[1].split()[0])
    assert run["status"] == "failed"
    assert "HTTP 500" in run["error"] and "model exploded" in run["error"] and "3 attempts" in run["error"]
    assert "HTTP 500" in r.stdout + r.stderr
    world.assert_no_key_anywhere()


def test_400_fails_at_once_with_the_servers_message(world, srv):
    srv.default = (400, {"error": {"message": "model 'fake-model' not found"}}, {})
    r = world("start", "agent_loop", "--json")
    assert r.exit_code == 3, r.output
    run = r.json()
    assert run["status"] == "failed" and len(srv.requests) == 1
    assert "HTTP 400" in run["error"] and "model 'fake-model' not found" in run["error"]
    world.assert_no_key_anywhere()


def test_a_timeout_is_retried(world, srv):
    world.cli.config.write_text(
        f"llm:\n  base_url: {srv.base_url}\n  model: m\n  timeout: 0.5\n", encoding="utf-8")
    srv.script([("hang", 3.0, {}), (200, srv.reply("late but fine"))])
    run = world.start()
    assert run["status"] == "completed" and run["output"]["answer"] == "late but fine"
    (failed, done) = effects(world.ledger(run["run_id"]), "llm_call")
    assert "timeout" in failed["error"] and done["status"] == "completed"


# ---------------------------------------------------------------------------- the bench runs


def test_the_llm_bench_runs(tmp_path):
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench" / "llm.py"
    cp = subprocess.run([sys.executable, str(bench), "--calls", "10", "--repeat", "1", "--dir", str(tmp_path)],
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert "runtime overhead per call beyond the round trip, file store" in cp.stdout
