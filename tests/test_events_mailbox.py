"""The event mailbox through the installed command (PRODUCT §8): ``emit`` keeps what it
delivers for runs that reach ``wait_event KEY`` later; ``events`` lists and prunes.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cli_helpers import hold_lock, unchanged
from test_waits_helpers import resumes, run_json, run_ok, sleep_past, waits_world

from abstractrt_cli.core.timeutil import parse_timestamp


@pytest.fixture
def cli(tmp_path):
    return waits_world(tmp_path)


def start(cli, workflow, *args):
    return run_json(cli, "start", workflow, *args)


def kept(cli, *args):
    return {e["event_id"]: e for e in run_json(cli, "events", *args)}


def test_an_emit_before_the_wait_is_received_on_the_first_tick_that_reaches_it(cli):
    rid = start(cli, "event", "--no-tick", "--vars", '{"wait": {"wait_key": "order:1"}}')["run_id"]
    doc = run_json(cli, "emit", "order:1", "--set", "paid=true")
    assert doc["delivered"] == [] and doc["busy"] == []
    event_id = doc["event"]["event_id"]
    assert kept(cli)[event_id]["received_by"] == []

    run = run_json(cli, "tick", rid)
    assert run["status"] == "completed" and run["output"]["event"] == {"paid": True}
    (resume,) = resumes(cli, rid)
    assert resume["result"]["event_id"] == event_id and resume["result"]["source"] == "mailbox"
    assert kept(cli)[event_id]["received_by"] == [rid]
    run_ok(cli, "ledger", rid, "--verify")


def test_a_run_waiting_when_the_event_comes_gets_it_at_once_and_the_ledger_names_it(cli):
    rid = start(cli, "event", "--vars", '{"wait": {"wait_key": "order:2"}}')["run_id"]
    doc = run_json(cli, "emit", "order:2", "--set", "n=1")
    assert [r["run_id"] for r in doc["delivered"]] == [rid]
    assert doc["delivered"][0]["status"] == "completed"
    (resume,) = resumes(cli, rid)
    assert resume["result"]["event_id"] == doc["event"]["event_id"]
    assert resume["actor_id"] == "tester"
    assert kept(cli)[doc["event"]["event_id"]]["received_by"] == [rid]


def test_a_run_created_after_the_emit_does_not_get_the_older_event(cli):
    old = run_json(cli, "emit", "k", "--set", "old=true")["event"]["event_id"]
    rid = start(cli, "event")["run_id"]
    assert run_json(cli, "tick", rid)["status"] == "waiting"
    assert kept(cli)[old]["received_by"] == []
    # A newer event reaches it, and only that one.
    new = run_json(cli, "emit", "k", "--set", "new=true")
    assert new["delivered"][0]["output"]["event"] == {"new": True}


def test_no_keep_delivers_to_the_waiting_runs_and_keeps_nothing(cli):
    waiting = start(cli, "event")["run_id"]
    later = start(cli, "event", "--no-tick")["run_id"]
    r = run_ok(cli, "emit", "k", "--set", "x=1", "--no-keep")
    assert r.stdout.splitlines() == ["emitted 'k' to 1 run", f"  {waiting}  event  completed",
                                     "not kept (--no-keep)"]
    assert run_json(cli, "tick", later)["status"] == "waiting"  # nothing was kept for it
    assert run_json(cli, "events") == []
    # Nobody waiting on the key and --no-keep: exit 0, and nothing at all changes.
    with unchanged(cli):
        r = run_ok(cli, "emit", "nobody", "--payload", "{}", "--no-keep")
    assert r.stdout.splitlines()[0] == "emitted 'nobody' to 0 runs"


def test_ttl_sets_the_expiry_and_expired_events_are_never_delivered_and_pruned(cli):
    ev = run_json(cli, "emit", "later", "--set", "x=1", "--ttl", "2h")["event"]
    assert parse_timestamp(ev["expires_at"]) - parse_timestamp(ev["emitted_at"]) == timedelta(hours=2)
    default = run_json(cli, "emit", "later", "--set", "x=2")["event"]
    assert (parse_timestamp(default["expires_at"]) - parse_timestamp(default["emitted_at"])
            == timedelta(days=7))

    rid = start(cli, "event", "--no-tick", "--vars", '{"wait": {"wait_key": "soon"}}')["run_id"]
    short = run_json(cli, "emit", "soon", "--set", "x=3", "--ttl", "1s")["event"]
    sleep_past(short["expires_at"])
    assert run_json(cli, "tick", rid)["status"] == "waiting"  # expired: never delivered
    listed = run_ok(cli, "events", "--key", "soon").stdout
    assert short["event_id"] in listed and "(expired)" in listed
    assert run_json(cli, "events", "--prune") == {"pruned": 1}
    assert set(kept(cli)) == {ev["event_id"], default["event_id"]}
    assert run_ok(cli, "events", "--prune").stdout.strip() == "pruned 0 expired events"

    for bad in (["--ttl", "soon"], ["--ttl", "0s"], ["--ttl", "1h", "--no-keep"]):
        with unchanged(cli):
            r = cli.run("emit", "later", "--payload", "{}", *bad)
        assert r.exit_code == 2 and r.stderr.startswith("error: "), r.output


def test_events_lists_by_shell_pattern_with_who_received_them(cli):
    a = start(cli, "event", "--vars", '{"wait": {"wait_key": "ci:web:1"}}')["run_id"]
    run_json(cli, "emit", "ci:web:1", "--set", "status=green")
    run_json(cli, "emit", "ci:api:1", "--set", "status=red")
    run_json(cli, "emit", "deploy:1", "--payload", "{}")
    docs = run_json(cli, "events", "--key", "ci:*")
    assert [d["key"] for d in docs] == ["ci:web:1", "ci:api:1"]
    assert set(docs[0]) >= {"event_id", "key", "payload", "emitted_at", "expires_at", "received_by"}
    assert docs[0]["received_by"] == [a] and docs[1]["received_by"] == []
    table = run_ok(cli, "events", "--key", "ci:web:*").stdout.splitlines()
    assert table[0].split() == ["EVENT", "KEY", "EMITTED", "EXPIRES", "RECEIVED", "BY", "PAYLOAD"]
    assert a[:8] in table[1] and '{"status":"green"}' in table[1]
    assert run_ok(cli, "events", "--key", "nothing:*").stdout.startswith("no matching kept events")


def test_each_event_is_received_once_per_run_also_in_a_loop_on_the_same_key(cli):
    # Waiting when the first event comes: it takes it, loops, and waits on the same key
    # again — the event it already has is not delivered a second time.
    looping = start(cli, "loop", "--set", "times=2")["run_id"]
    first = run_json(cli, "emit", "k", "--set", "i=1")
    (run,) = first["delivered"]
    assert run["status"] == "waiting" and run["vars"]["got"] == [{"i": 1}]
    assert run_json(cli, "tick", looping)["status"] == "waiting"
    second = run_json(cli, "emit", "k", "--set", "i=2")
    assert second["delivered"][0]["output"] == {"got": [{"i": 1}, {"i": 2}]}

    # Created before two events and ticked after both: the oldest first, each once.
    both = start(cli, "loop", "--no-tick", "--set", "times=2")["run_id"]
    greedy = start(cli, "loop", "--no-tick", "--set", "times=3")["run_id"]
    e3 = run_json(cli, "emit", "k", "--set", "i=3")["event"]["event_id"]
    e4 = run_json(cli, "emit", "k", "--set", "i=4")["event"]["event_id"]
    assert run_json(cli, "tick", both)["output"] == {"got": [{"i": 3}, {"i": 4}]}
    g = run_json(cli, "tick", greedy)
    assert g["status"] == "waiting" and g["vars"]["got"] == [{"i": 3}, {"i": 4}]
    assert run_json(cli, "tick", greedy)["vars"]["got"] == [{"i": 3}, {"i": 4}]
    ids = [r["result"]["event_id"] for r in resumes(cli, greedy)]
    assert ids == [e3, e4]
    events = kept(cli)
    assert sorted(events[e3]["received_by"]) == sorted([both, greedy])
    assert events[first["event"]["event_id"]]["received_by"] == [looping]


def test_a_run_busy_at_emit_time_gets_the_event_later(cli):
    rid = start(cli, "event")["run_id"]
    with hold_lock(cli.data_dir, rid):
        r = cli.run("emit", "k", "--set", "late=true", "--json")
    # Not lost, so not a failure: the event is kept for it.
    assert r.exit_code == 0, r.output
    doc = r.json()
    assert doc["busy"] == [rid] and doc["delivered"] == []
    assert f"run {rid} is busy" in r.stderr and f"abstractrt tick {rid}" in r.stderr
    assert run_json(cli, "show", rid)["status"] == "waiting"
    run = run_json(cli, "tick", rid)
    assert run["status"] == "completed" and run["output"]["event"] == {"late": True}
    assert kept(cli)[doc["event"]["event_id"]]["received_by"] == [rid]


def test_emit_refuses_a_payload_a_receiver_schema_refuses_and_keeps_nothing(cli):
    schema = {"type": "object", "required": ["amount"],
              "properties": {"amount": {"type": "number"}}}
    strict = start(cli, "event", "--vars", json.dumps({"wait": {"schema": schema}}))["run_id"]
    loose = start(cli, "event")["run_id"]
    with unchanged(cli):
        r = cli.run("emit", "k", "--set", "amount=lots", "--json")
    assert r.exit_code == 1, r.output
    err = r.json()["error"]
    assert err["code"] == "schema_mismatch" and strict in err["message"] and "$.amount" in err["message"]
    assert r.stderr.count("\n") == 1
    doc = run_json(cli, "emit", "k", "--set", "amount=12")
    assert {d["run_id"] for d in doc["delivered"]} == {strict, loose}
    # A kept event that a later run's schema refuses is not delivered to it.
    later = start(cli, "event", "--no-tick", "--vars", json.dumps({"wait": {"schema": schema}}))["run_id"]
    run_json(cli, "emit", "k", "--set", "note=no amount")  # nobody waits: kept
    assert run_json(cli, "tick", later)["status"] == "waiting"
