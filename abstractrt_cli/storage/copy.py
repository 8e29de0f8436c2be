"""``store copy``: every run, ledger, event, snapshot, artifact, prune record and log from
one store to another, verified.

Works between any two stores (files, PostgreSQL, memory) through the store protocols.

- Nothing at the source changes: it is only read (no locks taken there either, so a
  read-only data dir is a fine source).
- Every source chain is verified against its run's checkpoint before anything is
  written; a run whose ledger does not verify is reported and not copied.
- Everything copied is read back from the destination and compared: same state, same
  records, chain intact; the same snapshot; the same bytes; the same log.
- Idempotent: what is at the destination already, the same, is left alone; something
  of the same identity with other content is a *conflict*, reported and never
  overwritten. A copy stopped half-way through a run (its ledger records written, its
  run not yet) is taken up where it stopped when run again.

The parts, and what "the same" means for each:

- Runs (by run id) with their ledgers; kept events (by event id: receipts are merged).
- Snapshots, with their run (by run id and name: equal documents).
- Logs, with their run (the entries and the dropped-bytes count). A destination that
  cannot take a log whole (``import_log``) gets its entries appended, and loses the
  count of bytes dropped before them: said in ``notes``.
- Artifacts, by ref: identical bytes are the same artifact, whatever their metadata;
  the source's runs and tags are added to the destination's (the merge every put
  does). A destination that can take the metadata as it is (``import_artifact``) keeps
  the source's times too; any other gets the bytes through ``put_artifact``, dated then.
- Prune records (equal documents; one the destination has already is not added again).
- Heartbeats are not copied: they tell who works on *that* store.

A part the source does not keep is skipped with a note; a part the destination does not
keep is skipped too, with a note if the source has nothing of it and an error (the copy
is not ``ok``) if it has. The runs are read through ``iter_run_ids()`` where the source
has it (a page at a time), otherwise from ``list_runs``.

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
import json
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..core.models import RunState
from ..errors import AbstractRTError, CorruptRunError, SnapshotExistsError, StoreIOError
from . import rules
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


PARTS = ("snapshots", "logs", "artifacts", "prune_records")


def copy_stores(src: Stores, dst: Stores, *,
                progress: Optional[Callable[[str, str], None]] = None) -> Dict[str, Any]:
    """Copy everything ``src`` keeps to ``dst``; return what happened.

    The report: ``{"from", "to", "runs", "copied", "unchanged", "records_copied",
    "events", "events_copied", "events_unchanged"``, and for each of ``snapshots``,
    ``logs``, ``artifacts``, ``prune_records``: ``P`` (how many the source has),
    ``P_copied``, ``P_unchanged``; ``"notes": [text]``, ``"conflicts": [{"run_id",
    "why"}]``, ``"errors": [{"run_id", "why"}], "ok"}`` (an entry about an event, a
    snapshot, a log, an artifact or a prune record also names its ``event_id``,
    ``snapshot``, ``log: true``, ``ref`` or ``prune_record``). ``progress(run_id,
    outcome)`` is told each run's outcome (``copied``, ``unchanged``, ``conflict``,
    ``error``) as it happens.
    """
    report: Dict[str, Any] = {"from": src.location, "to": dst.location, "runs": 0,
                              "copied": 0, "unchanged": 0, "records_copied": 0,
                              "notes": [], "conflicts": [], "errors": []}
    for part in PARTS:
        report.update({part: 0, f"{part}_copied": 0, f"{part}_unchanged": 0})
    # What the destination lacks, of what the source has (reported once, at the end).
    lacking: Counter = Counter()
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
        # A run's snapshots and log go with it, whatever became of the run itself: each
        # is its own item, compared and reported on its own.
        _copy_snapshots(src, dst, rid, report, lacking)
        _copy_log(src, dst, rid, report, lacking)
        if progress is not None:
            progress(rid, outcome)
    _copy_events(src, dst, report)
    _copy_artifacts(src, dst, report, lacking)
    _copy_prune_records(src, dst, report, lacking)
    for part, attr in (("snapshots", "snapshots"), ("logs", "logs"),
                       ("artifacts", "artifacts"), ("prune_records", "audit")):
        if getattr(src, attr) is None:
            report["notes"].append(f"the source keeps no {_what(part)}: none copied")
        elif getattr(dst, attr) is None:
            if lacking[part]:
                report["errors"].append({"run_id": None, "why": (
                    f"the destination keeps no {_what(part)}: {lacking[part]} not copied")})
            else:
                report["notes"].append(f"the destination keeps no {_what(part)} "
                                       "(the source has none)")
    report["ok"] = not report["conflicts"] and not report["errors"]
    return report


def _what(part: str) -> str:
    return {"prune_records": "prune records", "logs": "run logs"}.get(part, part)


def _problem(report: Dict[str, Any], kind: str, why: str, **about: Any) -> None:
    """A conflict or an error about one item (not a run)."""
    report["conflicts" if kind == "conflict" else "errors"].append(
        {"run_id": about.pop("run_id", None), **about, "why": why})


def _listed(src_part: Any, dst_part: Any, list_items: Callable[[], List[Any]], part: str,
            report: Dict[str, Any], lacking: Counter, run_id: Optional[str] = None) -> List[Any]:
    """What the source's ``part`` lists (counted in ``report[part]``) to copy — nothing
    when the source keeps no such part, cannot list it (an error), or the destination
    keeps none (counted in ``lacking``: reported once, at the end)."""
    if src_part is None:
        return []
    try:
        items = list_items()
    except AbstractRTError as exc:
        _problem(report, "error", f"source {_what(part)}: {exc.message}", run_id=run_id)
        return []
    report[part] += len(items)
    if dst_part is None:
        lacking[part] += len(items)
        return []
    return items


def _copy_snapshots(src: Stores, dst: Stores, rid: str, report: Dict[str, Any],
                    lacking: Counter) -> None:
    snaps = _listed(src.snapshots, dst.snapshots, lambda: src.snapshots.list_snapshots(run_id=rid),
                    "snapshots", report, lacking, run_id=rid)
    for snap in snaps:
        name = snap.get("name")
        try:
            have = dst.snapshots.get_snapshot(rid, name)
            if have is not None:
                if have == snap:
                    report["snapshots_unchanged"] += 1
                else:
                    _problem(report, "conflict", "the destination has another snapshot of "
                             "this name", run_id=rid, snapshot=name)
                continue
            try:
                dst.snapshots.put_snapshot(snap)
            except SnapshotExistsError:
                _problem(report, "conflict", "a snapshot of this name was made at the "
                         "destination meanwhile", run_id=rid, snapshot=name)
                continue
            if dst.snapshots.get_snapshot(rid, name) != snap:
                _problem(report, "error", "the snapshot read back from the destination "
                         "differs", run_id=rid, snapshot=name)
                continue
            report["snapshots_copied"] += 1
        except AbstractRTError as exc:
            _problem(report, "error", exc.message, run_id=rid, snapshot=name)


def _copy_log(src: Stores, dst: Stores, rid: str, report: Dict[str, Any],
              lacking: Counter) -> None:
    if src.logs is None:
        return
    try:
        entries, dropped = src.logs.read_log(rid)
    except AbstractRTError as exc:
        _problem(report, "error", f"source log: {exc.message}", run_id=rid, log=True)
        return
    if not entries and not dropped:
        return  # no log: nothing to copy (and nothing to compare)
    report["logs"] += 1
    if dst.logs is None:
        lacking["logs"] += 1
        return
    importer = getattr(dst.logs, "import_log", None)
    # Without import_log the destination counts no bytes dropped before what it was given.
    want: Tuple[List[Dict[str, Any]], int] = (entries, dropped if importer is not None else 0)
    try:
        have = dst.logs.read_log(rid)
        if have == want:
            report["logs_unchanged"] += 1
            return
        if have != ([], 0):
            _problem(report, "conflict", "the destination has another log of this run",
                     run_id=rid, log=True)
            return
        if importer is not None:
            importer(rid, entries, dropped)
        else:
            dst.logs.append_log(rid, entries)
            if dropped:
                report["notes"].append(f"run {rid}: the destination cannot keep the count "
                                       f"of log bytes dropped ({dropped}); the entries kept "
                                       "were copied")
        if dst.logs.read_log(rid) != want:
            _problem(report, "error", "the log read back from the destination differs",
                     run_id=rid, log=True)
            return
        report["logs_copied"] += 1
    except AbstractRTError as exc:
        _problem(report, "error", exc.message, run_id=rid, log=True)


def _copy_artifacts(src: Stores, dst: Stores, report: Dict[str, Any], lacking: Counter) -> None:
    """By ref: new bytes are written and read back; known ones given the source's runs
    and tags they lack (identical bytes are the same artifact: never a conflict)."""
    metas = _listed(src.artifacts, dst.artifacts, lambda: src.artifacts.list_artifacts(),
                    "artifacts", report, lacking)
    for meta in metas:
        ref = meta.get("ref")
        try:
            have = dst.artifacts.artifact_meta(ref)
            if have is not None and _covers(have, meta):
                report["artifacts_unchanged"] += 1
                continue
            data = src.artifacts.get_artifact(ref)
            if rules.artifact_ref(data) != ref:
                _problem(report, "error", "the source's bytes are not those of their ref",
                         ref=ref)
                continue
            importer = getattr(dst.artifacts, "import_artifact", None)
            if importer is not None:
                importer(meta, data)
            else:
                run_ids = list(meta.get("run_ids") or [])
                dst.artifacts.put_artifact(
                    data, content_type=meta.get("content_type") or rules.DEFAULT_CONTENT_TYPE,
                    run_id=run_ids[0] if run_ids else None, tags=list(meta.get("tags") or []),
                    name=meta.get("name"))
                for run_id in run_ids[1:]:
                    dst.artifacts.put_artifact(data, run_id=run_id)
            got = dst.artifacts.artifact_meta(ref)
            if got is None or not _covers(got, meta) or dst.artifacts.get_artifact(ref) != data:
                _problem(report, "error", "the artifact read back from the destination differs",
                         ref=ref)
                continue
            report["artifacts_copied"] += 1
        except AbstractRTError as exc:
            _problem(report, "error", exc.message, ref=ref)


def _covers(have: Dict[str, Any], meta: Dict[str, Any]) -> bool:
    """Whether ``have`` is ``meta``'s artifact with every run and tag of it."""
    return (have.get("size") == meta.get("size")
            and set(meta.get("run_ids") or []) <= set(have.get("run_ids") or [])
            and set(meta.get("tags") or []) <= set(have.get("tags") or []))


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)


def _copy_prune_records(src: Stores, dst: Stores, report: Dict[str, Any],
                        lacking: Counter) -> None:
    """Records the destination lacks are added, in the source's order (a record it has
    already — an equal document — is not added twice; the same one made twice at the
    source arrives twice)."""
    records = _listed(src.audit, dst.audit, lambda: src.audit.list_prune_records(),
                      "prune_records", report, lacking)
    if not records:
        return
    try:
        there = Counter(_canonical(r) for r in dst.audit.list_prune_records())
        want = Counter(_canonical(r) for r in records)
        for rec in records:
            key = _canonical(rec)
            if there[key] > 0:
                there[key] -= 1
                report["prune_records_unchanged"] += 1
                continue
            dst.audit.put_prune_record(rec)
            report["prune_records_copied"] += 1
        arrived = Counter(_canonical(r) for r in dst.audit.list_prune_records())
        if any(arrived[k] < n for k, n in want.items()):
            _problem(report, "error", "the prune records read back from the destination "
                     "differ", prune_record=True)
    except AbstractRTError as exc:
        _problem(report, "error", exc.message, prune_record=True)


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
        report["notes"].append("the source keeps no events: none copied")
        return
    events = src.events.list_events()
    report["events"] = len(events)
    if not events:
        if dst.events is None:
            report["notes"].append("the destination keeps no events (the source has none)")
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
