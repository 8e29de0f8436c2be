"""Human waits through the installed command (PRODUCT §8): deadlines and what happens
then, schemas, who may answer, and rehearsals that change nothing.

Deadlines that must have passed are ISO times in the past (the wait starts with its
deadline already due, and the next tick acts on it), so no test waits for a clock, but
the one that shows an answer beats a deadline that then passes.
"""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta, timezone

import pytest
from cli_helpers import hold_lock, unchanged
from test_waits_helpers import as_actor, resumes, run_json, run_ok, sleep_past, waits_world

from abstractrt_cli.core.timeutil import parse_timestamp

PAST = "2020-01-01T00:00:00Z"
SCHEMA = {"type": "object", "required": ["amount"],
          "properties": {"amount": {"type": "number", "maximum": 1000},
                         "reason": {"type": "string"}}}


@pytest.fixture
def cli(tmp_path):
    return waits_world(tmp_path)


def ask(cli, env=None, **opts):
    """Start the ``ask`` workflow with these ask_user options; its RunState JSON."""
    return run_json(cli, "start", "ask", "--vars", json.dumps({"ask": opts}), env=env)


# ---------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize("timeout, after", [
    (90, timedelta(seconds=90)), ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
    ("4h", timedelta(hours=4)), ("2d", timedelta(days=2)), (2.5, timedelta(seconds=2.5)),
])
def test_timeout_durations_count_from_when_the_wait_starts(cli, timeout, after):
    w = ask(cli, timeout=timeout)["waiting"]
    # The kernel reads its clock for the deadline a moment after it stamps ``since``.
    drift = parse_timestamp(w["deadline"]) - parse_timestamp(w["since"]) - after
    assert abs(drift) < timedelta(seconds=1), drift
    assert w["on_timeout"] == "fail"


def test_timeout_as_an_iso_time_utc_without_an_offset(cli):
    assert ask(cli, timeout="2030-01-02T09:00:00")["waiting"]["deadline"] == "2030-01-02T09:00:00+00:00"
    assert (ask(cli, timeout="2030-01-02T09:00:00+02:00")["waiting"]["deadline"]
            == "2030-01-02T07:00:00+00:00")


def test_a_malformed_timeout_fails_the_effect_when_the_wait_starts(cli):
    r = cli.run("start", "ask", "--vars", json.dumps({"ask": {"timeout": "soon"}}), "--json")
    assert r.exit_code == 3, r.output
    assert "neither a duration" in r.json()["error"]


@pytest.mark.parametrize("on_timeout, extra, output", [
    ({"answer": "NO"}, {"choices": ["yes", "no"], "allow_free_text": False},
     {"answer": {"response": "no", "timed_out": True}, "event": None}),
    ({"payload": {"x": 1}}, {}, {"answer": {"x": 1}, "event": None}),
    ({"goto": "escalate"}, {}, {"escalated": True,
                                "answer": {"timed_out": True, "deadline": "2020-01-01T00:00:00+00:00"}}),
], ids=["answer", "payload", "goto"])
def test_each_on_timeout_form_acted_on_by_tick_all(cli, on_timeout, extra, output):
    run = ask(cli, timeout=PAST, on_timeout=on_timeout, **extra)
    rid = run["run_id"]
    assert run["status"] == "waiting"  # the wait starts; the next tick acts on its deadline
    assert run_json(cli, "tick", "--all", "--dry-run") == [{"run_id": rid, "reason": "deadline due"}]
    summary = run_json(cli, "tick", "--all")
    assert summary["moved"] == 1 and summary["completed"] == 1
    done = run_json(cli, "show", rid)
    assert done["status"] == "completed" and done["output"] == output
    (resume,) = resumes(cli, rid)
    assert resume["actor_id"] == "deadline" and resume["result"]["source"] == "deadline"
    run_ok(cli, "ledger", rid, "--verify")
    assert run_json(cli, "tick", "--all", "--dry-run") == []


def test_on_timeout_fail_is_the_default_and_tick_all_exits_3(cli):
    rid = ask(cli, timeout=PAST)["run_id"]
    r = cli.run("tick", "--all")
    assert r.exit_code == 3, r.output
    run = run_json(cli, "show", rid)
    assert run["status"] == "failed" and "no answer by the deadline" in run["error"]


def test_an_on_timeout_answer_that_is_not_a_choice_fails_when_the_wait_starts(cli):
    r = cli.run("start", "ask", "--json", "--vars", json.dumps({"ask": {
        "timeout": "1h", "choices": ["yes"], "allow_free_text": False,
        "on_timeout": {"answer": "maybe"}}}))
    assert r.exit_code == 3 and "not among the choices" in r.json()["error"], r.output


def test_an_answer_before_the_deadline_wins_and_the_deadline_never_fires_later(cli):
    # The deadline has passed, but no tick has acted on it: the person's answer wins.
    late = ask(cli, timeout=PAST, on_timeout={"answer": "too late"})["run_id"]
    assert run_json(cli, "resume", late, "--answer", "in time")["status"] == "completed"
    # A deadline still to come, answered, then passed.
    soon = ask(cli, timeout="2s", on_timeout={"goto": "escalate"})
    run_json(cli, "resume", soon["run_id"], "--answer", "quick")
    sleep_past(soon["waiting"]["deadline"])
    before = cli.snapshot()
    assert run_json(cli, "tick", "--all", "--dry-run") == []
    assert run_json(cli, "tick", "--all")["moved"] == 0
    assert cli.snapshot() == before
    for rid, answer in ((late, "in time"), (soon["run_id"], "quick")):
        run = run_json(cli, "show", rid)
        assert run["output"]["answer"] == {"response": answer}
        assert [r["actor_id"] for r in resumes(cli, rid)] == ["tester"]


def test_waiting_shows_the_deadline_in_local_time_what_happens_then_who_and_reminders(cli):
    rid = ask(cli, timeout="2030-01-02T09:00:00Z", on_timeout={"answer": "no"},
              allowed_actors=["alice", "bob"], remind_every="1h", schema=SCHEMA)["run_id"]
    env = {**cli.env, "TZ": "Asia/Kolkata"}
    out = run_ok(cli, "waiting", env=env).stdout
    fields = dict(ln.strip().split(":", 1) for ln in out.splitlines()
                  if ln.startswith("  ") and ":" in ln and not ln.strip().startswith("→"))
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    assert fields["Deadline"].startswith("2030-01-02 14:30:00 +05:30 (") and " left)" in fields["Deadline"]
    assert fields["Then"] == "answered 'no' by the deadline"
    assert fields["Who may answer"] == "alice, bob"
    since = parse_timestamp(run_json(cli, "show", rid)["waiting"]["since"])
    k = int((datetime.now(timezone.utc) - since) / timedelta(hours=1)) + 1
    nxt = (since + k * timedelta(hours=1)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert fields["Reminders"].startswith(f"every 1h; next {nxt:%Y-%m-%d %H:%M:%S} +05:30"), fields
    assert fields["Payload"] == "amount (number, required)"
    assert "reason (string)" in out
    assert f"abstractrt resume {rid} --set amount=NUMBER" in out
    # JSON keeps the raw fields, in UTC.
    (doc,) = run_json(cli, "waiting")
    w = doc["waiting"]
    assert w["deadline"] == "2030-01-02T09:00:00+00:00" and w["on_timeout"] == {"answer": "no"}
    assert w["allowed_actors"] == ["alice", "bob"] and w["remind_every"] == "1h"
    assert w["schema"] == SCHEMA


def test_waiting_says_a_passed_deadline_is_acted_on_by_the_next_tick(cli):
    ask(cli, timeout=PAST, on_timeout={"goto": "escalate"})
    out = run_ok(cli, "waiting").stdout
    assert "the next tick acts on it" in out and "escalates: goes on at node 'escalate'" in out


# ---------------------------------------------------------------------------- schemas


def test_a_payload_that_does_not_match_the_schema_is_refused_naming_the_path(cli):
    rid = ask(cli, schema=SCHEMA)["run_id"]
    for args, path, why in (
            (["--set", "amount=lots"], "$.amount", "'lots' is not of type 'number'"),
            (["--set", "amount=5000"], "$.amount", "5000 is greater than the maximum of 1000"),
            (["--set", "reason=none"], "$", "'amount' is a required property"),
            (["--payload-file", "-"], "$.reason", "12 is not of type 'string'")):
        with unchanged(cli):
            r = cli.run("resume", rid, *args, "--json", input="amount: 3\nreason: 12\n")
        assert r.exit_code == 1, r.output
        err = r.json()["error"]
        assert err["code"] == "schema_mismatch"
        assert err["message"] == f"payload for run {rid} does not match its schema at {path}: {why}"
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    run = run_json(cli, "resume", rid, "--set", "amount=12.5", "--set", "reason=taxi")
    assert run["output"]["answer"] == {"amount": 12.5, "reason": "taxi"}


def test_an_answers_script_whose_payload_does_not_match_is_refused_and_changes_nothing(cli, tmp_path):
    rid = ask(cli, prompt="Claim?", schema=SCHEMA)["run_id"]
    rules = tmp_path / "rules.yaml"
    rules.write_text('- prompt: "Claim?"\n  payload: {amount: "a lot"}\n')
    with unchanged(cli):
        r = cli.run("answer", "--script", str(rules))
    assert r.exit_code == 1, r.output
    assert "does not match its schema at $.amount" in r.stderr and rid[:8] in r.stderr
    rules.write_text('- prompt: "Claim?"\n  payload: {amount: 40}\n')
    run_ok(cli, "answer", "--script", str(rules))
    assert run_json(cli, "show", rid)["output"]["answer"] == {"amount": 40}


# ---------------------------------------------------------------------------- who may answer


def test_a_refused_actor_changes_nothing_and_an_allowed_one_is_in_the_ledger(cli):
    rid = ask(cli, allowed_actors=["alice", "bob"])["run_id"]
    with unchanged(cli):
        r = cli.run("resume", rid, "--answer", "ok", env=as_actor(cli, "mallory"))
    assert r.exit_code == 1, r.output
    assert r.stderr.strip() == f"error: mallory may not answer run {rid}: only alice, bob may"
    with unchanged(cli):
        r = cli.run("resume", rid, "--answer", "ok", "--json", env=as_actor(cli, "mallory"))
    assert r.json()["error"]["code"] == "actor_not_allowed"
    run = run_json(cli, "resume", rid, "--answer", "ok", env=as_actor(cli, "bob"))
    assert run["status"] == "completed"
    assert [r["actor_id"] for r in resumes(cli, rid)] == ["bob"]
    run_ok(cli, "ledger", rid, "--verify")


def test_the_login_name_acts_when_abstractrt_actor_is_not_set(cli):
    me = getpass.getuser()
    env = {k: v for k, v in cli.env.items() if k != "ABSTRACTRT_ACTOR"}
    rid = ask(cli, allowed_actors=["someone", me])["run_id"]
    run_json(cli, "resume", rid, "--answer", "yes", env=env)
    assert [r["actor_id"] for r in resumes(cli, rid)] == [me]


def test_as_on_the_file_store_is_a_usage_error_explaining_files_cannot_authenticate(cli):
    rid = ask(cli, allowed_actors=["alice"])["run_id"]
    for args in (["resume", rid, "--answer", "ok", "--as", "alice"],
                 ["emit", "k", "--payload", "{}", "--as", "alice"],
                 ["answer", "--script", "-", "--as", "alice"],
                 ["waiting", "--as", "alice"]):
        with unchanged(cli):
            r = cli.run(*args, input="- prompt: Go\n  answer: ok\n")
        assert r.exit_code == 2, r.output
        assert "files cannot authenticate who you are" in r.stderr and "ABSTRACTRT_ACTOR" in r.stderr
        assert r.stderr.count("\n") == 1


def test_answer_script_skips_prompts_the_actor_may_not_answer_and_says_so(cli, tmp_path):
    mine = ask(cli, prompt="Mine?")["run_id"]
    theirs = ask(cli, prompt="Theirs?", allowed_actors=["alice"])["run_id"]
    before = run_json(cli, "ledger", theirs)
    rules = tmp_path / "rules.yaml"
    rules.write_text('- prompt: "?"\n  answer: yes\n')
    r = cli.run("answer", "--script", str(rules), "--json")
    assert r.exit_code == 0, r.output
    report = r.json()
    assert [a["run_id"] for a in report["answered"]] == [mine]
    (skip,) = report["skipped"]
    assert skip["run_id"] == theirs and skip["why"] == f"tester may not answer run {theirs}: only alice may"
    assert f"skipped: run {theirs[:8]}, prompt 'Theirs?' (rule 1): tester may not answer" in r.stderr
    assert run_json(cli, "ledger", theirs) == before
    assert run_json(cli, "show", theirs)["status"] == "waiting"
    # alice's turn: the same file answers it.
    r = run_ok(cli, "answer", "--script", str(rules), env=as_actor(cli, "alice"))
    assert run_json(cli, "show", theirs)["status"] == "completed"


# ---------------------------------------------------------------------------- rehearsals


def test_answer_script_dry_run_prints_run_prompt_rule_and_answer_and_changes_nothing(cli, tmp_path):
    approval = run_json(cli, "start", "approval", "--set", "title=Desk", "--set", "amount=300")["run_id"]
    claim = ask(cli, prompt="Claim taxi?", schema=SCHEMA)["run_id"]
    other = ask(cli, prompt="Nobody answers this")["run_id"]
    theirs = ask(cli, prompt="Alice's claim?", allowed_actors=["alice"])["run_id"]
    rules = tmp_path / "rules.yaml"
    rules.write_text('- prompt: "Approve expense"\n  answer: APPROVE\n'
                     '- prompt_regex: "^Claim"\n  payload: {amount: 12}\n'
                     "- prompt: \"Alice's\"\n  answer: ok\n")
    with unchanged(cli):
        plan = run_json(cli, "answer", "--script", str(rules), "--dry-run")
        r = run_ok(cli, "answer", "--script", str(rules), "--dry-run")
    by_run = {p["run_id"]: p for p in plan}
    assert set(by_run) == {approval, claim}
    assert by_run[approval] == {"run_id": approval, "prompt": "Approve expense 'Desk' for 300 EUR?",
                                "rule": 1, "payload": {"response": "approve"}}  # the choice as written
    assert by_run[claim] == {"run_id": claim, "prompt": "Claim taxi?", "rule": 2,
                             "payload": {"amount": 12}}
    out = r.stdout
    assert out.splitlines()[0] == "would answer 2 prompts (nothing changed)"
    assert f"{approval[:8]}  Approve expense 'Desk' for 300 EUR?  → " in out
    assert "rule 1 (prompt='Approve expense')" in out and "rule 2 (prompt_regex='^Claim')" in out
    assert other[:8] in out.split("no rule matches", 1)[1]
    assert f"would skip: run {theirs[:8]}" in r.stderr and "only alice may" in r.stderr
    # The real thing does what the rehearsal said.
    report = run_json(cli, "answer", "--script", str(rules))
    assert {(a["run_id"], a["rule"]) for a in report["answered"]} >= {(approval, 1), (claim, 2)}


def test_answer_script_dry_run_says_which_answers_would_be_refused(cli, tmp_path):
    rid = ask(cli, prompt="Claim?", schema=SCHEMA)["run_id"]
    rules = tmp_path / "rules.yaml"
    rules.write_text('- prompt: "Claim?"\n  payload: {amount: 99999}\n')
    with unchanged(cli):
        r = cli.run("answer", "--script", str(rules), "--dry-run", "--json")
    assert r.exit_code == 1, r.output
    assert r.json() == []
    assert f"error: would be refused: run {rid[:8]}" in r.stderr and "at $.amount" in r.stderr
    r = cli.run("answer", "--dry-run")
    assert r.exit_code == 2 and "--dry-run goes with --script" in r.stderr


STICKY = '''
"""Fails its effect and retries an hour later."""

from abstractrt_cli import Effect, RetryPolicy, StepPlan, WorkflowSpec


def always_fails(run, effect):
    raise ConnectionError("service down")


EFFECT_HANDLERS = {"always_fails": always_fails}
EFFECT_POLICY = RetryPolicy(effect_max_attempts={"always_fails": 3}, backoff_base=3600,
                            backoff_max=3600)


def call(run, ctx):
    return StepPlan("call", effect=Effect("always_fails", {}, "r"), next_node="done")


def done(run, ctx):
    return StepPlan("done", complete_output={})


sticky = WorkflowSpec("sticky", "call", {"call": call, "done": done})
'''


def past_runtime(cli, hours_ago):
    """A runtime over the world's file store whose clock is ``hours_ago`` hours behind."""
    from abstractrt_cli import Runtime
    from abstractrt_cli.loader import load_workflows

    rs, ls = cli.stores()
    then = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    return Runtime(run_store=rs, ledger_store=ls, clock=lambda: then,
                   workflow_registry=load_workflows(cli.workflows_dir).registry)


def test_tick_all_dry_run_lists_what_would_move_and_why_and_changes_nothing(cli):
    cli.write_workflow("sticky.py", STICKY)
    running = run_json(cli, "start", "ask", "--no-tick")["run_id"]
    deadline = ask(cli, timeout=PAST, on_timeout={"goto": "escalate"})["run_id"]
    not_yet = ask(cli, timeout="1h")["run_id"]
    # Two hours ago, a timer for one hour later and a retry an hour later: both due now.
    from abstractrt_cli.loader import load_workflows

    specs = load_workflows(cli.workflows_dir)
    rt = past_runtime(cli, 2)
    then = rt.now()
    timer = rt.start(workflow=specs.entry("reminder").spec,
                     vars={"delay": "1h", "task": "stretch"}, actor_id="tester")
    assert rt.tick(run_id=timer).waiting.reason.value == "until"
    retry = rt.start(workflow=specs.entry("sticky").spec, actor_id="tester")
    assert parse_timestamp(rt.tick(run_id=retry).waiting.until) == then + timedelta(hours=1)
    # A parent waiting on a child that ended while the parent was busy elsewhere.
    parent = run_json(cli, "start", "onboarding")
    child = parent["waiting"]["details"]["sub_run_id"]
    with hold_lock(cli.data_dir, parent["run_id"]):
        assert run_json(cli, "resume", child, "--answer", "Welcome!")["status"] == "completed"
    assert run_json(cli, "show", parent["run_id"])["status"] == "waiting"

    with unchanged(cli):
        plan = run_json(cli, "tick", "--all", "--dry-run")
        table = run_ok(cli, "tick", "--all", "--dry-run").stdout
    assert {(p["run_id"], p["reason"]) for p in plan} == {
        (running, "running"), (deadline, "deadline due"), (timer, "timer due"),
        (retry, "retry due"), (parent["run_id"], "child ended")}
    assert all(set(p) == {"run_id", "reason"} for p in plan)
    assert not_yet not in {p["run_id"] for p in plan}
    rows = {ln.split()[0]: ln for ln in table.splitlines()[1:]}
    assert table.splitlines()[0].split() == ["RUN", "WORKFLOW", "NODE", "WHY", "DETAIL"]
    assert "deadline due" in rows[deadline[:8]] and "escalates" in rows[deadline[:8]]
    assert "child ended" in rows[parent["run_id"][:8]] and child[:8] in rows[parent["run_id"][:8]]
    # What moves is what the rehearsal said.
    summary = cli.run("tick", "--all", "--json").json()
    assert {m["run_id"] for m in summary["runs"]} == {p["run_id"] for p in plan}
    r = cli.run("tick", running, "--dry-run")
    assert r.exit_code == 2 and "--dry-run goes with --all" in r.stderr


def test_tick_all_dry_run_on_a_data_dir_that_does_not_exist_creates_nothing(cli):
    assert not cli.data_dir.exists()
    r = run_ok(cli, "tick", "--all", "--dry-run")
    assert r.stdout.strip() == "tick --all --dry-run: nothing would move"
    assert run_ok(cli, "tick", "--all", "--dry-run", "--quiet").stdout == ""
    assert not cli.data_dir.exists()
