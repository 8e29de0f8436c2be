"""``store copy``: every run, ledger and kept event from one store to another, verified.

Works between any two stores (files, PostgreSQL, memory) through the store protocols.

- Nothing at the source changes: it is only read (no locks taken there either, so a
  read-only data dir is a fine source).
- Every source chain is verified against its run's checkpoint before anything is
  written; a run whose ledger does not verify is reported and not copied.
- Every copied run is read back from the destination and verified there: same state,
  same records, chain intact.
- Idempotent: a run already at the destination with the same state and ledger is left
  alone; one with other content is a *conflict*, reported and never overwritten. A copy
  stopped half-way through a run (its ledger records written, its run not yet) is taken
  up where it stopped when run again.

Records travel verbatim, hashes and all: a store that can import a run whole
(``import_run``, PostgreSQL: one transaction) does so; any other gets the records one by
one through its ``append`` — which re-chains each from the same head and so must arrive
at the very same hashes, checked — and the run last, so a run at the destination
always has its whole ledger.

A run being moved at the source while it is copied is copied as it was read: its run,
then its ledger, which may then hold records beyond the run's checkpoint — a state the
kernel rolls forward. Copy a store nobody is using for an exact snapshot.
"""

from __future__ import annotations

import copy as _copy
from typing import Any, Callable, Dict, Iterable, List, Optional

from ..core.models import RunState
from ..errors import AbstractRTError, CorruptRunError, StoreIOError
from .base import Stores
from .chain import verify_ledger_chain

__all__ = ["copy_stores"]

DST_LOCK_TIMEOUT = 10.0


class _Verbatim:
    """A ledger record as ``append`` takes it (``run_id``, ``to_jsonable()``), carrying a
    stored record as it is; ``append`` re-chains it and writes back seq and hashes."""

    __slots__ = ("run_id", "_data", "seq", "prev_hash", "record_hash")

    def __init__(self, data: Dict[str, Any]) -> None:
        self.run_id = data["run_id"]
        self._data = data
        self.seq = data.get("seq")
        self.prev_hash = data.get("prev_hash")
        self.record_hash = data.get("record_hash")

    def to_jsonable(self) -> Dict[str, Any]:
        return _copy.deepcopy(self._data)


def _run_ids(src: Stores, errors: List[Dict[str, Any]]) -> Iterable[str]:
    ids = getattr(src.runs, "iter_run_ids", None)
    if ids is not None:
        return ids()

    def corrupt(exc: CorruptRunError) -> None:
        errors.append({"run_id": getattr(exc, "run_id", None), "why": f"source: {exc.message}"})

    return [r.run_id for r in src.runs.list_runs(limit=None, on_corrupt=corrupt)]


def copy_stores(src: Stores, dst: Stores, *,
                progress: Optional[Callable[[str, str], None]] = None) -> Dict[str, Any]:
    """Copy every run of ``src`` (with its ledger) to ``dst``; return what happened.

    The report: ``{"from", "to", "runs", "copied", "unchanged", "records_copied",
    "events", "events_copied", "events_unchanged", "conflicts": [{"run_id", "why"}],
    "errors": [{"run_id", "why"}], "ok"}`` (an event's entries name its ``event_id``).
    ``progress(run_id, outcome)`` is told each run's outcome (``copied``,
    ``unchanged``, ``conflict``, ``error``) as it happens.
    """
    report: Dict[str, Any] = {"from": src.location, "to": dst.location, "runs": 0,
                              "copied": 0, "unchanged": 0, "records_copied": 0,
                              "conflicts": [], "errors": []}
    for rid in _run_ids(src, report["errors"]):
        report["runs"] += 1
        try:
            outcome, detail = _copy_run(src, dst, rid, report)
        except AbstractRTError as exc:
            outcome, detail = "error", exc.message
        if outcome == "conflict":
            report["conflicts"].append({"run_id": rid, "why": detail})
        elif outcome == "error":
            report["errors"].append({"run_id": rid, "why": detail})
        else:
            report[outcome] += 1
        if progress is not None:
            progress(rid, outcome)
    _copy_events(src, dst, report)
    report["ok"] = not report["conflicts"] and not report["errors"]
    return report


def _event_body(event: Any) -> Dict[str, Any]:
    data = event.to_jsonable()
    data.pop("received_by", None)
    return data


def _copy_events(src: Stores, dst: Stores, report: Dict[str, Any]) -> None:
    """Kept events (the mailbox): new ones put, known ones given the receipts they lack.

    Receipts only ever grow (a run received an event), so adding the source's to an
    event the destination has already is a merge, never a conflict; an event with the
    same id and other content is one.
    """
    report.update(events=0, events_copied=0, events_unchanged=0)
    if src.events is None:
        return
    events = src.events.list_events()
    report["events"] = len(events)
    if not events:
        return
    if dst.events is None:
        report["errors"].append({"run_id": None, "why": f"the destination keeps no events: "
                                                        f"{len(events)} kept events not copied"})
        return
    there = {e.event_id: e for e in dst.events.list_events()}
    for ev in events:
        have = there.get(ev.event_id)
        if have is None:
            dst.events.put(ev)
            report["events_copied"] += 1
        elif _event_body(have) != _event_body(ev):
            report["conflicts"].append({"run_id": None, "event_id": ev.event_id,
                                        "why": "the destination has another event with this id"})
            continue
        else:
            missing = [r for r in ev.received_by if r not in have.received_by]
            for rid in missing:
                dst.events.mark_received(ev.event_id, rid)
            report["events_copied" if missing else "events_unchanged"] += 1
    arrived = {e.event_id: e for e in dst.events.list_events()}
    for ev in events:
        got = arrived.get(ev.event_id)
        if got is None or _event_body(got) != _event_body(ev) or not set(ev.received_by) <= set(
                got.received_by):
            if not any(c.get("event_id") == ev.event_id for c in report["conflicts"]):
                report["errors"].append({"run_id": None, "event_id": ev.event_id,
                                         "why": "the event read back from the destination differs"})


def _copy_run(src: Stores, dst: Stores, rid: str, report: Dict[str, Any]) -> "tuple[str, str]":
    run = src.runs.load(rid)
    if run is None:
        return "error", "the run disappeared from the source while copying"
    records = src.ledger.list(rid)
    check = verify_ledger_chain(records, expected_count=run.ledger_count,
                                expected_head=run.ledger_head)
    if not check["ok"]:
        return "error", f"the source ledger does not verify: {check['message']}"
    dst.runs.validate_run_id(rid)

    try:
        there = dst.runs.load(rid)
    except CorruptRunError as exc:
        return "conflict", f"the destination holds an unreadable run: {exc.message}"
    have = dst.ledger.list(rid)
    if there is not None:
        return _compare(run, records, there, have)
    if have != records[:len(have)]:
        return "conflict", (f"the destination has {len(have)} ledger records of this run "
                            "that the source does not have")

    importer = getattr(dst.runs, "import_run", None)
    if importer is not None and not have:
        try:
            importer(run, records)
        except StoreIOError as exc:
            if exc.code == "run_exists":  # created there since we looked
                return "conflict", exc.message
            raise
    else:
        with dst.runs.lock(rid, timeout=DST_LOCK_TIMEOUT):
            for rec in records[len(have):]:
                stored = dst.ledger.append(_Verbatim(rec))
                if stored != rec:
                    return "error", (f"record {rec.get('seq')} arrived chained differently "
                                     "(the destination ledger changed while copying)")
            dst.runs.save(run)
    report["records_copied"] += len(records) - len(have)

    arrived_run = dst.runs.load(rid)
    arrived = dst.ledger.list(rid)
    if arrived_run is None or arrived_run.to_jsonable() != run.to_jsonable() or arrived != records:
        return "error", "the copy read back from the destination differs from the source"
    check = verify_ledger_chain(arrived, expected_count=arrived_run.ledger_count,
                                expected_head=arrived_run.ledger_head)
    if not check["ok"]:
        return "error", f"the copied ledger does not verify: {check['message']}"
    return "copied", ""


def _compare(run: RunState, records: List[Dict[str, Any]], there: RunState,
             have: List[Dict[str, Any]]) -> "tuple[str, str]":
    if there.to_jsonable() == run.to_jsonable() and have == records:
        return "unchanged", ""
    if have != records:
        if have == records[:len(have)]:
            why = f"the destination's ledger has {len(have)} of the source's {len(records)} records"
        else:
            why = "the destination's ledger differs from the source's"
    else:
        why = "the destination's run state differs from the source's"
    return "conflict", why
