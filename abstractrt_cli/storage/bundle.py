"""Export and import of runs as one JSON document (PRODUCT §9), through the store protocols.

A bundle::

    {"format": 1, "exported_at": ISO,
     "runs": [{"run": RunState JSON, "ledger": [records as stored],
               "snapshots": [snapshot, ...],
               "artifacts": [metadata + {"data": base64 of the bytes}, ...]}, ...]}

A run's artifacts are those it stored (the metadata names it) and those whose ref
appears in its vars, its ledger or its snapshots (``rules.refs_in``). An artifact that
several runs of the bundle have carries its bytes once, with the first of them; the
others list its metadata without ``data``.

``import_bundle`` checks everything before it writes anything: the bundle's shape, every
run (its state, its chain against its checkpoint — ``verify_ledger_chain`` with the
run's ``ledger_count``/``ledger_head`` — and ``core.integrity.verify_run``: the state
digest, nothing appended after its end), every snapshot, every artifact's bytes against
its ref; and every run already in the store must be identical (state and ledger; its
snapshots too), else BundleError and nothing is written. Then it writes the artifacts,
the runs (``import_run``: the ledger records as given, then the run) and the snapshots.
Importing the same bundle again writes nothing and reports every run unchanged.

Not atomic across a crash (or a disk filling up) in the middle of the writes: a run is
written whole or not at all (``import_run``), and importing the bundle again finishes
the job, since what is there already is identical.
"""

from __future__ import annotations

import base64
import binascii
import copy as _copy
import hashlib
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from ..core.models import RunState
from ..errors import (
    AbstractRTError,
    BundleError,
    InvalidRunIdError,
    StoreIOError,
    UnknownRunError,
)
from . import rules
from .base import Stores
from .chain import verify_ledger_chain

BUNDLE_FORMAT = 1
IMPORT_LOCK_TIMEOUT = 10.0

__all__ = ["export_bundle", "import_bundle", "BUNDLE_FORMAT"]


# ---------------------------------------------------------------------- export

def export_bundle(stores: Stores, run_ids: Iterable[str], *, children: bool = False,
                  now: Optional[datetime] = None) -> Dict[str, Any]:
    """The bundle of these runs (and, with ``children``, of every run below them).

    UnknownRunError for a run that does not exist. Runs come in the order given, each
    run's children after it."""
    order = _with_children(stores, list(run_ids), children)
    snaps_store, arts = stores.snapshots, stores.artifacts
    runs: List[Dict[str, Any]] = []
    carried: Set[str] = set()
    for rid in order:
        run = stores.runs.load(rid)
        if run is None:
            raise UnknownRunError(rid)
        ledger = stores.ledger.list(rid)
        snaps = snaps_store.list_snapshots(run_id=rid) if snaps_store is not None else []
        entries = []
        if arts is not None:
            refs = {m["ref"] for m in arts.list_artifacts(run_id=rid)}
            refs |= rules.refs_in(run.vars) | rules.refs_in(ledger) | rules.refs_in(snaps)
            for ref in sorted(refs):
                meta = arts.artifact_meta(ref)
                if meta is None:
                    continue  # a ref to something not kept (pruned, or never stored here)
                entry = dict(meta)
                if ref not in carried:
                    entry["data"] = base64.b64encode(arts.get_artifact(ref)).decode("ascii")
                    carried.add(ref)
                entries.append(entry)
        runs.append({"run": run.to_jsonable(), "ledger": ledger, "snapshots": snaps,
                     "artifacts": entries})
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"format": BUNDLE_FORMAT, "exported_at": when.isoformat(), "runs": runs}


def _with_children(stores: Stores, roots: List[str], children: bool) -> List[str]:
    order: List[str] = []
    seen: Set[str] = set()

    def visit(rid: str) -> None:
        if rid in seen:
            return
        seen.add(rid)
        order.append(rid)
        if children:
            for kid in stores.runs.list_children(parent_run_id=rid):
                visit(kid.run_id)

    for rid in roots:
        visit(rid)
    return order


# ---------------------------------------------------------------------- import

class _Run:
    __slots__ = ("run", "records", "snapshots", "artifacts", "present")

    def __init__(self, run: RunState, records: List[Dict[str, Any]],
                 snapshots: List[Dict[str, Any]], artifacts: List[Dict[str, Any]]) -> None:
        self.run = run
        self.records = records
        self.snapshots = snapshots
        self.artifacts = artifacts
        self.present = False


def import_bundle(stores: Stores, bundle: Any) -> Dict[str, Any]:
    """Import a bundle: all checked first, then written; idempotent (module docstring).

    Returns ``{"runs", "imported": [ids], "unchanged": [ids], "records", "snapshots",
    "artifacts"}`` (counts of what was written). BundleError, with nothing written, for
    a malformed or tampered bundle, or one that conflicts with what is stored."""
    runs, blobs = _parse(bundle, stores)
    snaps_to_write: List[Dict[str, Any]] = []
    for r in runs:
        snaps_to_write += _check_against_store(stores, r)
    report: Dict[str, Any] = {"runs": len(runs), "imported": [], "unchanged": [], "records": 0,
                              "snapshots": 0, "artifacts": 0}
    # Artifacts first: a run written is never without what it refers to.
    for data, metas in blobs.values():
        if _store_artifact(stores, data, metas):
            report["artifacts"] += 1
    for r in runs:
        if r.present:
            report["unchanged"].append(r.run.run_id)
            continue
        _write_run(stores, r)
        report["imported"].append(r.run.run_id)
        report["records"] += len(r.records)
    for snap in snaps_to_write:
        stores.snapshots.put_snapshot(snap)
        report["snapshots"] += 1
    return report


def _parse(bundle: Any, stores: Stores
           ) -> Tuple[List[_Run], Dict[str, Tuple[bytes, List[Dict[str, Any]]]]]:
    """Every run and artifact of the bundle, checked (BundleError naming what is wrong)."""
    if not isinstance(bundle, dict):
        raise BundleError("not a bundle: expected a JSON object")
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"not a bundle this abstractrt can read: format {bundle.get('format')!r}"
                          f" (known: {BUNDLE_FORMAT})")
    entries = bundle.get("runs")
    if not isinstance(entries, list):
        raise BundleError("not a bundle: 'runs' must be a list")
    runs: List[_Run] = []
    seen: Set[str] = set()
    data_of: Dict[str, bytes] = {}
    metas_of: Dict[str, List[Dict[str, Any]]] = {}
    wanted: Dict[str, str] = {}  # ref -> the first run whose entry names it
    for i, entry in enumerate(entries):
        where = f"run {i + 1} of the bundle"
        if not isinstance(entry, dict):
            raise BundleError(f"{where} is not an object")
        try:
            run = RunState.from_dict(entry.get("run"))
            rid = stores.runs.validate_run_id(run.run_id)
        except (ValueError, TypeError, InvalidRunIdError) as exc:
            raise BundleError(f"{where}: not a valid run: {exc}") from None
        where = f"run {rid}"
        if rid in seen:
            raise BundleError(f"{where} is in the bundle twice")
        seen.add(rid)
        records = entry.get("ledger")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BundleError(f"{where}: its ledger must be a list of records")
        if any(r.get("run_id") != rid for r in records):
            raise BundleError(f"{where}: its ledger holds a record of another run")
        _verify(run, records, where)
        snaps = entry.get("snapshots", [])
        if not isinstance(snaps, list):
            raise BundleError(f"{where}: its snapshots must be a list")
        names: Set[str] = set()
        checked = []
        for snap in snaps:
            try:
                s = rules.check_snapshot(snap)
                RunState.from_dict(s["state"])
            except (AbstractRTError, ValueError, TypeError) as exc:
                raise BundleError(f"{where}: a snapshot is not valid: {exc}") from None
            if s["run_id"] != rid or s["name"] in names:
                raise BundleError(f"{where}: snapshot {s['name']!r} is of another run or twice")
            names.add(s["name"])
            checked.append(s)
        arts = entry.get("artifacts", [])
        if not isinstance(arts, list) or not all(isinstance(a, dict) for a in arts):
            raise BundleError(f"{where}: its artifacts must be a list of objects")
        for meta in arts:
            ref = meta.get("ref")
            if not rules.is_artifact_ref(ref):
                raise BundleError(f"{where}: an artifact has no valid ref ({ref!r})")
            wanted.setdefault(ref, rid)
            try:
                rules.check_artifact_args(meta.get("content_type") or rules.DEFAULT_CONTENT_TYPE,
                                          None, list(meta.get("tags") or []), meta.get("name"))
                for holder in meta.get("run_ids") or []:
                    stores.runs.validate_run_id(holder)
            except (AbstractRTError, TypeError) as exc:
                raise BundleError(f"{where}: artifact {ref} has metadata this store cannot "
                                  f"keep: {exc}") from None
            if "data" in meta:
                data_of[ref] = _decode(meta["data"], ref, where)  # (checked against ref)
            metas_of.setdefault(ref, []).append({k: v for k, v in meta.items() if k != "data"})
        runs.append(_Run(run, records, checked, arts))
    for ref, rid in wanted.items():
        if ref not in data_of:
            raise BundleError(f"run {rid}: artifact {ref} comes without its bytes")
    return runs, {ref: (data_of[ref], metas_of[ref]) for ref in wanted}


def _verify(run: RunState, records: List[Dict[str, Any]], where: str) -> None:
    from ..core.integrity import verify_run

    chain = verify_ledger_chain(records, expected_count=run.ledger_count,
                                expected_head=run.ledger_head)
    if not chain["ok"]:
        raise BundleError(f"{where}: its ledger does not verify: {chain['message']}")
    try:
        report = verify_run(run, records)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: its state cannot be checked: {exc}") from None
    if not report["ok"]:
        raise BundleError(f"{where}: {report['message']}")


def _decode(text: Any, ref: str, where: str) -> bytes:
    if not isinstance(text, str):
        raise BundleError(f"{where}: the bytes of artifact {ref} are not base64 text")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BundleError(f"{where}: the bytes of artifact {ref} are not valid base64") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != ref:
        raise BundleError(f"{where}: the bytes of artifact {ref} do not match its ref "
                          "(the bundle was changed)")
    return data


def _check_against_store(stores: Stores, r: _Run) -> List[Dict[str, Any]]:
    """A run already here must be this very run, with this very ledger (and snapshots).
    Returns the run's snapshots that are not here yet."""
    rid = r.run.run_id
    try:
        there = stores.runs.load(rid)
    except AbstractRTError as exc:
        raise BundleError(f"run {rid}: the one stored here cannot be read: {exc.message}") from None
    have = stores.ledger.list(rid)
    if there is None:
        if have:
            raise BundleError(f"run {rid}: this store has ledger records of it but no run "
                              "(a run being created?): not imported")
    elif there.to_jsonable() != r.run.to_jsonable() or have != r.records:
        raise BundleError(f"run {rid} exists here and differs from the bundle's")
    else:
        r.present = True
    missing = []
    if r.snapshots:
        snaps = stores.need("snapshots")
        for s in r.snapshots:
            got = snaps.get_snapshot(rid, s["name"])
            if got is None:
                missing.append(s)
            elif got != s:
                raise BundleError(f"run {rid}: snapshot {s['name']!r} exists here and differs")
    if r.artifacts:
        stores.need("artifacts")
    return missing


def _store_artifact(stores: Stores, data: bytes, metas: List[Dict[str, Any]]) -> bool:
    """Put the bytes with every run and tag the bundle names; True if anything changed."""
    arts = stores.artifacts
    ref = rules.artifact_ref(data)
    before = arts.artifact_meta(ref)
    first = metas[0]
    content_type = first.get("content_type") or rules.DEFAULT_CONTENT_TYPE
    name = first.get("name") if isinstance(first.get("name"), str) else None
    run_ids: List[Optional[str]] = []
    tags: List[str] = []
    for m in metas:
        run_ids += [x for x in (m.get("run_ids") or []) if isinstance(x, str)]
        tags += [t for t in (m.get("tags") or []) if isinstance(t, str)]
    importer = getattr(arts, "import_artifact", None)
    if importer is not None:  # keeps the artifact's times too
        given = dict(first, ref=ref, content_type=content_type, name=name,
                     run_ids=list(dict.fromkeys(run_ids)), tags=list(dict.fromkeys(tags)))
        try:
            importer(given, data)
        except AbstractRTError as exc:
            raise BundleError(f"artifact {ref}: {exc.message}") from None
        return arts.artifact_meta(ref) != before
    run_ids = list(dict.fromkeys(run_ids)) or [None]
    for i, rid in enumerate(run_ids):
        arts.put_artifact(data, content_type=content_type if isinstance(content_type, str)
                          else rules.DEFAULT_CONTENT_TYPE, run_id=rid,
                          tags=tags if i == 0 else (), name=name)
    return arts.artifact_meta(ref) != before


def _write_run(stores: Stores, r: _Run) -> None:
    run, records = r.run, r.records
    importer = getattr(stores.runs, "import_run", None)
    try:
        if importer is not None:
            importer(_copy.deepcopy(run), _copy.deepcopy(records))
            return
        # A store without import_run: the records one by one (re-chained from the same
        # head, so they must come out identical), then the run.
        from .copy import _Verbatim

        with stores.runs.lock(run.run_id, timeout=IMPORT_LOCK_TIMEOUT):
            if stores.runs.load(run.run_id) is not None or stores.ledger.head(run.run_id)[0]:
                raise StoreIOError(run.run_id, "this run exists already", code="run_exists")
            for rec in records:
                if stores.ledger.append(_Verbatim(rec)) != rec:
                    raise BundleError(f"run {run.run_id}: record {rec.get('seq')} chained "
                                      "differently here")
            stores.runs.save(run)
    except StoreIOError as exc:
        if exc.code == "run_exists":
            raise BundleError(f"run {run.run_id} was created here while importing: "
                              "not imported") from None
        raise
