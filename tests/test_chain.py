"""The ledger hash chain: appends chain records; any edit, deletion or truncation shows."""

from __future__ import annotations

import copy

import pytest

from abstractrt_cli import InMemoryLedgerStore, StepRecord, StepStatus, verify_ledger_chain
from abstractrt_cli.storage.chain import canonical_json, chain_record, compute_record_hash


def _ledger(n: int = 5, run_id: str = "r1"):
    store = InMemoryLedgerStore()
    for i in range(n):
        store.append(StepRecord(run_id=run_id, step_id=f"s{i}", node_id=f"n{i}",
                                status=StepStatus.COMPLETED, result={"i": i}))
    count, head = store.head(run_id)
    return store, store.list(run_id), count, head


def test_append_chains_records():
    store, recs, count, head = _ledger(4)
    assert count == 4 and head == recs[-1]["record_hash"]
    assert [r["seq"] for r in recs] == [0, 1, 2, 3]
    assert recs[0]["prev_hash"] is None
    for prev, rec in zip(recs, recs[1:]):
        assert rec["prev_hash"] == prev["record_hash"]
        assert rec["record_hash"] == compute_record_hash(rec, rec["prev_hash"])


def test_append_returns_and_fills_the_chained_record():
    store = InMemoryLedgerStore()
    rec = StepRecord(run_id="r", step_id="s", node_id="n", status=StepStatus.COMPLETED)
    stored = store.append(rec)
    assert stored["record_hash"] == rec.record_hash and rec.seq == 0
    stored["result"] = "mutated"  # a returned copy does not alter the ledger
    assert store.list("r")[0]["result"] is None


def test_ledgers_are_per_run():
    store, _, _, _ = _ledger(3, "a")
    store.append(StepRecord(run_id="b", step_id="x", node_id="n", status=StepStatus.FAILED))
    assert store.head("b")[0] == 1 and store.list("b")[0]["prev_hash"] is None
    assert store.head("nope") == (0, None) and store.list("nope") == []


def test_records_since():
    store, recs, _, _ = _ledger(5)
    assert [r["seq"] for r in store.records_since("r1", 3)] == [3, 4]
    assert store.records_since("r1", 5) == []
    assert store.records_since("nope", 0) == []


def test_intact_chain_verifies():
    _, recs, count, head = _ledger(5)
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert report["ok"], report
    assert report["count"] == 5 and report["head_hash"] == head
    assert report["first_bad_index"] is None
    assert verify_ledger_chain([])["ok"]
    assert verify_ledger_chain([], expected_count=0)["ok"]


def test_record_hash_ignores_record_hash_and_signature_only():
    rec = {"a": 1, "record_hash": "x", "signature": "y"}
    assert compute_record_hash(rec, "p") == compute_record_hash({"a": 1}, "p")
    assert compute_record_hash(rec, "p") != compute_record_hash(rec, "q")
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


@pytest.mark.parametrize("field,value", [
    ("result", {"i": 99}), ("status", "failed"), ("actor_id", "mallory"), ("attempt", 2),
    ("node_id", "other"), ("kind", "resume"),
])
def test_edited_record_is_detected(field, value):
    _, recs, count, head = _ledger(5)
    recs[2][field] = value
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"]
    assert report["first_bad_index"] == 2 and report["first_bad_step_id"] == "s2"
    assert "record 2" in report["message"]


def test_edit_with_recomputed_hash_breaks_the_next_link():
    _, recs, count, head = _ledger(5)
    recs[1]["result"] = {"i": "forged"}
    recs[1]["record_hash"] = compute_record_hash(recs[1], recs[1]["prev_hash"])
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 2
    assert report["errors"][0]["type"] == "prev_hash_mismatch"


def test_rewriting_the_last_record_is_caught_by_the_checkpoint_head():
    _, recs, count, head = _ledger(4)
    last = recs[-1]
    last["result"] = {"i": "forged"}
    chain_record(last, seq=last["seq"], prev_hash=last["prev_hash"])  # a perfect forgery
    assert verify_ledger_chain(recs)["ok"]  # the chain alone cannot tell …
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 3  # … the checkpoint can


def test_deleted_middle_record_is_detected():
    _, recs, count, head = _ledger(5)
    del recs[2]
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 2
    assert report["first_bad_step_id"] == "s3"  # the record now at index 2


def test_deleted_first_record_is_detected():
    _, recs, count, head = _ledger(3)
    report = verify_ledger_chain(recs[1:], expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 0


def test_truncated_last_record_is_detected():
    _, recs, count, head = _ledger(5)
    report = verify_ledger_chain(recs[:-1], expected_count=count, expected_head=head)
    assert not report["ok"]
    assert report["first_bad_index"] == 4
    assert report["errors"][0]["type"] == "truncated"
    assert "4 records" in report["message"] and "5" in report["message"]


def test_truncated_to_empty_is_detected():
    _, _, count, head = _ledger(2)
    report = verify_ledger_chain([], expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 0


def test_swapped_records_are_detected():
    _, recs, count, head = _ledger(4)
    recs[1], recs[2] = recs[2], recs[1]
    report = verify_ledger_chain(recs, expected_count=count, expected_head=head)
    assert not report["ok"] and report["first_bad_index"] == 1


def test_records_after_the_checkpoint_are_legitimate():
    # A crash between an append and the checkpoint leaves records the run has not counted.
    store, recs, count, head = _ledger(3)
    store.append(StepRecord(run_id="r1", step_id="late", node_id="n",
                            status=StepStatus.COMPLETED))
    assert verify_ledger_chain(store.list("r1"), expected_count=count, expected_head=head)["ok"]


def test_missing_hash_and_non_record_are_detected():
    _, recs, _, _ = _ledger(3)
    bad = copy.deepcopy(recs)
    bad[1]["record_hash"] = None
    assert verify_ledger_chain(bad)["first_bad_index"] == 1
    bad = copy.deepcopy(recs)
    bad[2] = "garbage"
    report = verify_ledger_chain(bad)
    assert report["first_bad_index"] == 2 and report["errors"][0]["type"] == "not_a_record"
