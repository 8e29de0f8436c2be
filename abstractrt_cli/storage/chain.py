"""The SHA-256 hash chain over a run's ledger records, and its verification."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from ..core.sha import sha256

GENESIS = None  # prev_hash of a run's first record


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_record_hash(record: Dict[str, Any], prev_hash: Optional[str]) -> str:
    """Hash of a record with ``prev_hash`` in it and ``record_hash``/``signature`` out."""
    clean = {k: v for k, v in record.items() if k not in ("record_hash", "signature")}
    clean["prev_hash"] = prev_hash
    return sha256(canonical_json(clean).encode("utf-8")).hexdigest()


def chain_record(record: Dict[str, Any], *, seq: int, prev_hash: Optional[str]) -> Dict[str, Any]:
    """Fill in ``seq``, ``prev_hash`` and ``record_hash`` (in place; returns the record)."""
    record["seq"] = seq
    record["prev_hash"] = prev_hash
    record["record_hash"] = compute_record_hash(record, prev_hash)
    return record


def verify_ledger_chain(
    records: List[Dict[str, Any]],
    *,
    expected_count: Optional[int] = None,
    expected_head: Optional[str] = None,
) -> Dict[str, Any]:
    """Check a run's records; report the first bad one.

    ``expected_count``/``expected_head`` come from the run's checkpoint: the ledger must
    hold at least that many records and the one at that position must have that hash, so
    deleting or truncating even the last records is caught. (Records *after* the
    checkpoint are legitimate: a crash between an append and the checkpoint leaves them.)

    Returns ``{"ok", "count", "first_bad_index", "first_bad_step_id", "errors",
    "head_hash", "message"}``.
    """
    errors: List[Dict[str, Any]] = []
    prev: Optional[str] = GENESIS
    for i, rec in enumerate(records):
        problem = None
        if not isinstance(rec, dict):
            problem = {"type": "not_a_record"}
        elif rec.get("seq", i) != i:
            problem = {"type": "seq_mismatch", "expected": i, "actual": rec.get("seq")}
        elif rec.get("prev_hash") != prev:
            problem = {"type": "prev_hash_mismatch", "expected": prev, "actual": rec.get("prev_hash")}
        elif not rec.get("record_hash"):
            problem = {"type": "missing_record_hash"}
        elif compute_record_hash(rec, prev) != rec["record_hash"]:
            problem = {"type": "record_hash_mismatch", "stored": rec["record_hash"],
                       "computed": compute_record_hash(rec, prev)}
        if problem:
            problem["index"] = i
            problem["step_id"] = rec.get("step_id") if isinstance(rec, dict) else None
            errors.append(problem)
            break  # everything after the first bad record is unanchored
        prev = rec["record_hash"]

    if not errors and expected_count is not None:
        if len(records) < expected_count:
            errors.append({"type": "truncated", "index": len(records), "step_id": None,
                           "expected_count": expected_count, "actual_count": len(records)})
        elif expected_count > 0 and records[expected_count - 1].get("record_hash") != expected_head:
            errors.append({"type": "checkpoint_head_mismatch", "index": expected_count - 1,
                           "step_id": records[expected_count - 1].get("step_id")})

    first = errors[0] if errors else None
    if first is None:
        message = f"{len(records)} records, chain intact"
    elif first["type"] == "truncated":
        message = (f"ledger has {first['actual_count']} records but the run's checkpoint "
                   f"recorded {first['expected_count']} (records deleted or truncated)")
    else:
        message = (f"record {first['index']} (step {first.get('step_id')}) is bad: "
                   f"{first['type'].replace('_', ' ')}")
    return {
        "ok": not errors,
        "count": len(records),
        "first_bad_index": first["index"] if first else None,
        "first_bad_step_id": first.get("step_id") if first else None,
        "errors": errors,
        "head_hash": records[-1].get("record_hash") if records and isinstance(records[-1], dict) else None,
        "message": message,
    }
