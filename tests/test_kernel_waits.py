"""PRODUCT §8 in the kernel: deadlines with on_timeout, schemas, who may answer."""

from __future__ import annotations

import pytest

from kernel_helpers import finish, node

from abstractrt_cli import Effect, RunStatus, WorkflowSpec
from abstractrt_cli.core.integrity import verify_run
from abstractrt_cli.errors import ActorNotAllowedError, SchemaError


def ask(workflow_id="w", **payload):
    payload.setdefault("prompt", "Approve?")
    return WorkflowSpec(workflow_id, "a", {
        "a": node("a", effect=Effect("ask_user", payload, "ans"), next="end"),
        "escalate": node("escalate", out={"escalated": True}),
        "end": finish()})


def launch(make_runtime, registry, w):
    registry.register(w)
    rt = make_runtime()
    rid = rt.start(workflow=w)
    return rt, rid, rt.tick(run_id=rid)


@pytest.mark.parametrize("timeout,seconds", [(90, 90), ("90s", 90), ("15m", 900), ("4h", 14400),
                                             ("2d", 172800)])
def test_timeout_forms_set_the_deadline_from_when_the_wait_starts(make_runtime, registry, clock,
                                                                  timeout, seconds):
    rt, rid, run = launch(make_runtime, registry, ask(timeout=timeout))
    assert run.waiting.deadline == (clock() + __import__("datetime").timedelta(seconds=seconds)).isoformat()
    assert run.waiting.on_timeout == "fail"


def test_an_iso_deadline_without_offset_is_utc(make_runtime, registry):
    _, _, run = launch(make_runtime, registry, ask(timeout="2026-01-02T09:00:00"))
    assert run.waiting.deadline == "2026-01-02T09:00:00+00:00"


def test_on_timeout_answer_resumes_as_that_answer_by_deadline(make_runtime, registry, clock):
    rt, rid, run = launch(make_runtime, registry,
                          ask(timeout="1h", choices=["yes", "no"], allow_free_text=False,
                              on_timeout={"answer": "NO"}))
    assert run.waiting.on_timeout == {"answer": "no"}  # matched to the choice as written
    clock.advance(1800)
    assert rt.tick(run_id=rid).status is RunStatus.WAITING
    clock.advance(1801)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.COMPLETED and run.vars["ans"]["response"] == "no"
    resume = [r for r in rt.get_ledger(rid) if r["kind"] == "resume"][-1]
    assert resume["actor_id"] == "deadline" and resume["result"]["source"] == "deadline"
    assert verify_run(run, rt.get_ledger(rid))["ok"]


def test_on_timeout_answer_not_among_the_choices_fails_when_the_wait_starts(make_runtime, registry):
    _, _, run = launch(make_runtime, registry,
                       ask(timeout=60, choices=["yes"], allow_free_text=False,
                           on_timeout={"answer": "maybe"}))
    assert run.status is RunStatus.FAILED and "not among the choices" in run.error


def test_on_timeout_payload_and_goto(make_runtime, registry, clock):
    rt, rid, _ = launch(make_runtime, registry, ask(timeout=60, on_timeout={"payload": {"x": 1}}))
    clock.advance(61)
    assert rt.tick(run_id=rid).vars["ans"] == {"x": 1}
    rt, rid, _ = launch(make_runtime, registry, ask("w2", timeout=60, on_timeout={"goto": "escalate"}))
    clock.advance(61)
    run = rt.tick(run_id=rid)
    assert run.output == {"escalated": True} and run.vars["ans"]["timed_out"] is True


def test_on_timeout_fail_is_the_default(make_runtime, registry, clock):
    rt, rid, _ = launch(make_runtime, registry, ask(timeout=60))
    clock.advance(61)
    run = rt.tick(run_id=rid)
    assert run.status is RunStatus.FAILED and "deadline" in run.error


def test_an_answer_before_the_deadline_wins_and_the_deadline_never_fires_later(make_runtime, registry, clock):
    rt, rid, _ = launch(make_runtime, registry, ask(timeout=60, on_timeout={"answer": "late"},
                                                    wait_key="k"))
    run = rt.resume(run_id=rid, payload={"response": "person"})
    clock.advance(3600)
    assert rt.tick(run_id=rid).vars["ans"] == {"response": "person"}
    assert [r["actor_id"] for r in rt.get_ledger(rid) if r["kind"] == "resume"] != ["deadline"]
    assert run.status is RunStatus.COMPLETED


def test_wait_event_deadline(make_runtime, registry, clock):
    w = WorkflowSpec("ev", "a", {"a": node("a", effect=Effect("wait_event", {
        "wait_key": "evt", "timeout": "10m", "on_timeout": {"payload": {"none": True}}}, "e"),
        next="end"), "end": finish()})
    rt, rid, run = launch(make_runtime, registry, w)
    assert run.waiting.deadline
    clock.advance(601)
    assert rt.tick(run_id=rid).vars["e"] == {"none": True}


@pytest.mark.parametrize("bad", [{"timeout": -1}, {"timeout": "soon"}, {"on_timeout": "fail"},
                                 {"timeout": 5, "on_timeout": {"explode": 1}},
                                 {"schema": {"type": 12}}, {"allowed_actors": []}])
def test_malformed_wait_options_fail_the_effect_at_once(make_runtime, registry, bad):
    _, _, run = launch(make_runtime, registry, ask(**bad))
    assert run.status is RunStatus.FAILED and "failed: ask_user: " in run.error


SCHEMA = {"type": "object", "required": ["amount"],
          "properties": {"amount": {"type": "number", "maximum": 1000},
                         "reason": {"type": "string"}}}


def test_a_payload_that_does_not_match_the_schema_is_refused_naming_the_path(make_runtime, registry):
    rt, rid, _ = launch(make_runtime, registry, ask(schema=SCHEMA))
    before = (rt.get_state(rid).to_jsonable(), rt.get_ledger(rid))
    for payload, path in (({"amount": "lots"}, "$.amount"), ({"amount": 5000}, "$.amount"),
                          ({"reason": "x"}, "$")):
        with pytest.raises(SchemaError) as err:
            rt.resume(run_id=rid, payload=payload)
        assert f"at {path}:" in str(err.value)
    assert (rt.get_state(rid).to_jsonable(), rt.get_ledger(rid)) == before
    assert rt.resume(run_id=rid, payload={"amount": 12.5}).vars["ans"] == {"amount": 12.5}


def test_only_allowed_actors_may_answer(make_runtime, registry):
    rt, rid, _ = launch(make_runtime, registry, ask(allowed_actors=["alice", "bob"]))
    before = (rt.get_state(rid).to_jsonable(), rt.get_ledger(rid))
    with pytest.raises(ActorNotAllowedError, match="mallory may not answer .* only alice, bob may"):
        rt.resume(run_id=rid, payload={"response": "ok"}, actor_id="mallory")
    assert (rt.get_state(rid).to_jsonable(), rt.get_ledger(rid)) == before
    run = rt.resume(run_id=rid, payload={"response": "ok"}, actor_id="bob")
    assert run.status is RunStatus.COMPLETED
    assert [r["actor_id"] for r in rt.get_ledger(rid) if r["kind"] == "resume"] == ["bob"]


def test_the_deadline_answers_whatever_allowed_actors_say(make_runtime, registry, clock):
    rt, rid, _ = launch(make_runtime, registry, ask(allowed_actors=["alice"], timeout=5,
                                                    on_timeout={"answer": "auto"}))
    clock.advance(6)
    assert rt.tick(run_id=rid).vars["ans"]["response"] == "auto"
