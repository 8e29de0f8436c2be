"""The life of a run (PRODUCT §9): retry, snapshots and forks, artifacts, export and
import, prune, doctor, logs, and following a ledger.

Each function is what one command does, over the kernel (``Runtime.retry``,
``Runtime.state_at``, ``Runtime.fork``) and the store's parts (``Stores.snapshots``,
``artifacts``, ``audit``, ``logs``; ``storage.bundle``, ``storage.prune``). As everywhere
in ``ops``, everything that can be checked is checked before anything is written, and
the kernel's errors get a hint for people here.

How a fork gets the state at SEQ: by a deterministic replay (``Runtime.state_at``). The
``start`` record holds the initial vars; the workflow's node code is run again from
there and every effect result, resume payload, retry and limit change is taken from the
ledger instead of being produced, up to record SEQ. Nothing extra is stored per step
(records stay as small as they were); a fork costs one pass over the node code of the
records up to SEQ — node code is pure apart from ``run.vars``, so the pass ends where
the source was. A workflow whose code changed since the source ran may no longer
replay to SEQ: the fork is then refused, naming the record where the history and the
code part ways (``--snapshot`` forks need no replay: the snapshot holds the state).
"""

from __future__ import annotations

import contextlib
import io
import json
import mimetypes
import os
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..core.models import RunState, RunStatus, WaitReason
from ..errors import (
    AbstractRTError,
    ArtifactNotFoundError,
    BundleError,
    DuplicateWorkflowError,
    InputFileError,
    LedgerSeqError,
    RunNotFailedError,
    SnapshotExistsError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    UnknownNodeError,
    UnknownRunError,
    UnknownWorkflowError,
    UsageError,
    WorkflowLoadError,
)
from .session import Outcome, Session, hinted

DEFAULT_ARTIFACT_KEY = "artifact"
FOLLOW_POLL = 0.25  # seconds between looks at a followed run (a wake-up comes sooner)

# doctor's thresholds (PRODUCT §9)
OVERDUE_AFTER = timedelta(minutes=5)
TEMP_FILE_AGE = timedelta(minutes=10)
HEARTBEAT_MIN_STALE = 60.0  # seconds: a heartbeat is stale after 3x its interval, at least this
MAX_LISTED = 5  # runs named in one doctor line


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------- retry


@hinted
def retry(s: Session, ref: str, *, from_node: Optional[str] = None,
          max_steps: int = 100) -> Outcome:
    """Put a failed run back to running (at its failed node, or entering ``from_node`` as
    a new visit) and tick it; the ledger records the retry and who did it."""
    run = s.load_run(ref)
    if run.status != RunStatus.FAILED:
        raise RunNotFailedError(run.run_id, run.status.value).with_hint(
            f"to start again from an earlier point, fork it: `abstractrt fork {run.run_id} "
            "--at SEQ`")
    warnings = s.workflow_warnings(run)  # its workflow must be there (else a clear error)
    if from_node is not None:
        spec = s.workflows.entry(run.workflow_id).spec
        nodes = list(getattr(spec, "nodes", {}) or {})
        if from_node not in nodes:
            raise UnknownNodeError(run.workflow_id, from_node).with_hint(
                "its nodes: " + ", ".join(nodes))
    after = s.runtime().retry(run.run_id, from_node=from_node, actor_id=s.actor(),
                              max_steps=max_steps)
    if after.status == RunStatus.RUNNING:
        warnings.append(f"run {after.run_id} is still running (stopped after --max-steps "
                        f"{max_steps}); continue it with `abstractrt tick {after.run_id}`")
    return Outcome(after, warnings)


# ---------------------------------------------------------------------------- snapshots


@hinted
def snapshot(s: Session, ref: str, *, name: str, tags: Sequence[str] = ()) -> Dict[str, Any]:
    """Keep a named copy of a run's state with the ledger count and head it covers.

    The copy is the run's checkpoint, whose ledger count and head belong to that very
    state (a record a crash left beyond it is not in it: the next command that touches
    the run rolls it forward)."""
    if not name or not name.strip():
        raise UsageError("--name must not be empty")
    bad = [t for t in tags if not t or not t.strip()]
    if bad:
        raise UsageError("--tag must not be empty")
    run = s.load_run(ref)
    snaps = s.stores.need("snapshots")
    if snaps.get_snapshot(run.run_id, name) is not None:
        raise _snapshot_exists(run.run_id, name)
    doc = {"run_id": run.run_id, "name": name, "tags": list(dict.fromkeys(tags)),
           "state": run.to_jsonable(), "ledger_count": run.ledger_count,
           "ledger_head": run.ledger_head, "created_at": _now().isoformat(),
           "actor_id": s.actor()}
    try:
        snaps.put_snapshot(doc)
    except SnapshotExistsError:  # another process kept that name meanwhile
        raise _snapshot_exists(run.run_id, name) from None
    return doc


def _snapshot_exists(run_id: str, name: str) -> SnapshotExistsError:
    return SnapshotExistsError(run_id, name).with_hint(  # type: ignore[return-value]
        f"names are unique per run: pick another, see `abstractrt snapshots --run {run_id}`")


@hinted
def snapshots(s: Session, *, run: Optional[str] = None,
              tag: Optional[str] = None) -> List[Dict[str, Any]]:
    """Snapshots, oldest first, of one run and/or with one tag."""
    run_id = s.load_run(run).run_id if run is not None else None
    return s.stores.need("snapshots").list_snapshots(run_id=run_id, tag=tag)


# ---------------------------------------------------------------------------- fork


@hinted
def fork(s: Session, ref: str, *, at: Optional[int] = None,
         snapshot_name: Optional[str] = None) -> Outcome:
    """A new run, not ticked, whose state is the source's right after ledger record ``at``
    (or the snapshot's); its ledger starts with a ``fork`` record anchored to the source's
    record hash. The source never changes."""
    if (at is None) == (snapshot_name is None):
        raise UsageError("give one of --at SEQ or --snapshot NAME")
    if at is not None and at < 0:
        raise UsageError(f"--at must be a record number (0 or more), not {at}")
    source = s.load_run(ref)
    rid = source.run_id
    rt = s.runtime()
    warnings: List[str] = []
    if at is not None:
        count = s.ledger_store.head(rid)[0]
        if at >= count:
            raise LedgerSeqError(rid, at, count).with_hint(f"see `abstractrt ledger {rid}`")
        warnings += s.workflow_warnings(source)  # the replay needs the workflow
        # The replay runs the source's node code again: what it prints was printed (and
        # kept in the source's log) the first time, so it is not echoed twice.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            new = rt.fork(rid, at_seq=at, actor_id=s.actor())
    else:
        assert snapshot_name is not None
        snap = s.stores.need("snapshots").get_snapshot(rid, snapshot_name)
        if snap is None:
            raise SnapshotNotFoundError(rid, snapshot_name).with_hint(
                f"see `abstractrt snapshots --run {rid}`")
        count = snap.get("ledger_count")
        if not isinstance(count, int) or count < 1:
            raise SnapshotMismatchError(rid, snapshot_name, 0)
        # Ledgers only grow: the record the snapshot covered last is still there, unchanged.
        at_record = s.ledger_store.records_since(rid, count - 1)
        if not at_record or at_record[0].get("record_hash") != snap.get("ledger_head"):
            raise SnapshotMismatchError(rid, snapshot_name, count - 1)
        try:
            state = RunState.from_dict(snap["state"])
        except (TypeError, ValueError, KeyError) as exc:
            raise SnapshotMismatchError(rid, snapshot_name, count - 1).with_hint(
                f"its state is not a run's: {exc}") from None
        try:
            warnings += s.workflow_warnings(source)
        except WorkflowLoadError as exc:  # the fork is made; ticking it needs the workflow
            warnings.append(f"warning: {exc.message}")
        new = rt.fork(rid, state=state, snapshot=snapshot_name, source_seq=count - 1,
                      actor_id=s.actor())
    if new.status == RunStatus.RUNNING:
        warnings.append(f"run {new.run_id} is running, not ticked; continue it with "
                        f"`abstractrt tick {new.run_id}`")
    return Outcome(new, warnings)


# ---------------------------------------------------------------------------- artifacts


def _is_ref(ref: Any) -> bool:
    from ..storage import rules

    return rules.is_artifact_ref(ref)


@hinted
def artifacts(s: Session, *, run: Optional[str] = None,
              tag: Optional[str] = None) -> List[Dict[str, Any]]:
    """Artifacts' metadata, oldest first, of one run and/or with one tag."""
    run_id = s.load_run(run).run_id if run is not None else None
    return s.stores.need("artifacts").list_artifacts(run_id=run_id, tag=tag)


@hinted
def artifact_cat(s: Session, ref: str) -> Tuple[Dict[str, Any], bytes]:
    """An artifact's metadata and its exact bytes (checked against the ref)."""
    ref = ref.strip()
    if not _is_ref(ref):
        raise ArtifactNotFoundError(ref).with_hint(
            "a ref is sha256: and 64 lowercase hex digits; list them with `abstractrt artifacts`")
    arts = s.stores.need("artifacts")
    meta = arts.artifact_meta(ref)
    if meta is None:
        raise ArtifactNotFoundError(ref).with_hint("list them with `abstractrt artifacts`")
    return meta, arts.get_artifact(ref)


def _read_bytes(path: str, *, limit: int) -> Tuple[bytes, str]:
    """A file's bytes (``-``: standard input), at most ``limit``; and its name."""
    import sys

    if path == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise InputFileError("standard input", "not a byte stream")
        try:
            data = stream.read(limit + 1)
        except OSError as exc:
            raise InputFileError("standard input", exc.strerror or str(exc)) from None
        if len(data) > limit:
            from ..payloads import too_big

            raise too_big("artifact on standard input", None, limit)
        return data, "stdin"
    from ..payloads import read_file_bytes

    return read_file_bytes(path, what="artifact", limit=limit), os.path.basename(path)


@hinted
def attach_artifact(s: Session, ref: str, payload: Dict[str, Any], path: str, *,
                    key: str = DEFAULT_ARTIFACT_KEY,
                    wait_key: Optional[str] = None) -> Dict[str, Any]:
    """``resume --artifact PATH [--key K]``: the payload with ``{K: {"$artifact": ref,
    "name", "size", "content_type"}}`` merged in, the file stored as an artifact of the run.

    The resume is checked first (the run waits, the key, the schema, who may answer), so
    a refused one stores nothing; the payload, the ledger and the run hold the ref only.
    The file may be as large as the payload limit (``ABSTRACTRT_MAX_PAYLOAD``, 16 MB)."""
    from ..payloads import max_payload_bytes
    from ..storage import rules

    if not key:
        raise UsageError("--key must not be empty")
    if key in payload:
        raise UsageError(f"--key {key!r}: the payload has that key already (pick another --key)")
    run = s.load_run(ref)
    arts = s.stores.need("artifacts")
    data, name = _read_bytes(path, limit=max_payload_bytes())
    content_type = (mimetypes.guess_type(name)[0] if name != "stdin" else None) \
        or rules.DEFAULT_CONTENT_TYPE
    body = dict(payload)
    body[key] = {"$artifact": rules.artifact_ref(data), "name": name, "size": len(data),
                 "content_type": content_type}
    s.runtime().check_resume(run, wait_key=wait_key, payload=body, actor_id=s.actor())
    s.workflow_warnings(run)  # a run whose workflow is gone is refused before anything is kept
    arts.put_artifact(data, content_type=content_type, run_id=run.run_id, name=name)
    return body


# ---------------------------------------------------------------------------- export, import


@hinted
def export(s: Session, refs: Sequence[str], *, children: bool = False) -> Dict[str, Any]:
    """The bundle of these runs (and, with ``children``, of every run below them)."""
    from ..storage.bundle import export_bundle

    ids = list(dict.fromkeys(s.load_run(r).run_id for r in refs))
    return export_bundle(s.stores, ids, children=children)


def read_bundle(path: str) -> Any:
    """A bundle file (``-``: standard input) parsed as JSON; BundleError if it is not JSON."""
    import sys

    source = "standard input" if path == "-" else path
    if path == "-":
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        try:
            data = stream.read()
        except OSError as exc:
            raise InputFileError(source, exc.strerror or str(exc)) from None
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise InputFileError(path, "no such file") from None
        except IsADirectoryError:
            raise InputFileError(path, "is a directory") from None
        except OSError as exc:
            raise InputFileError(path, exc.strerror or str(exc)) from None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise BundleError(f"{source} is not a bundle: not JSON{where}") from None


@hinted
def import_(s: Session, path: str) -> Dict[str, Any]:
    """Import a bundle: every chain, state and artifact checked before anything is written;
    a run already here is accepted only if identical (``storage.bundle``)."""
    from ..storage.bundle import import_bundle

    bundle = read_bundle(path)
    if s.store_missing():
        # No data dir yet: import into a scratch store in memory first (every check
        # import_bundle makes, none of them against anything here), so that a refused
        # bundle does not even create the data dir.
        from ..storage import memory_stores

        import_bundle(memory_stores(), bundle)
        s.close()
        s.__dict__.pop("stores", None)
    s.creates_runs = True
    report = import_bundle(s.stores, bundle)
    report["verified"] = True  # (import_bundle refuses anything that does not verify)
    return report


# ---------------------------------------------------------------------------- prune


@hinted
def prune(s: Session, *, older_than: str, statuses: Sequence[str] = (),
          dry_run: bool = False) -> Dict[str, Any]:
    """Delete ended runs that ended at least ``older_than`` ago (``storage.prune``),
    keeping a prune record of each; ``dry_run``: only say what would go."""
    from ..core.timeutil import parse_duration
    from ..storage.prune import prune as prune_stores

    try:
        delta = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    return prune_stores(s.stores, older_than=delta, statuses=list(statuses) or None,
                        dry_run=dry_run, actor_id=s.actor())


@hinted
def pruned(s: Session) -> List[Dict[str, Any]]:
    """Every prune record, oldest first."""
    return s.stores.need("audit").list_prune_records()


# ---------------------------------------------------------------------------- logs, follow


@hinted
def logs(s: Session, ref: str) -> Dict[str, Any]:
    """What a run's node code printed or logged, with the step it came from."""
    run = s.load_run(ref)
    entries, dropped = s.stores.need("logs").read_log(run.run_id)
    return {"run_id": run.run_id, "workflow_id": run.workflow_id, "entries": entries,
            "dropped_bytes": dropped}


@hinted
def follow_ledger(s: Session, ref: str, on_record: Callable[[Dict[str, Any]], None], *,
                  poll: float = FOLLOW_POLL) -> RunState:
    """Pass every ledger record of a run to ``on_record`` as it arrives, until the run has
    ended; its final state. A wake-up from the store (``resume``, ``emit``) ends a wait
    early; between wake-ups it looks every ``poll`` seconds (a cheap head read)."""
    run = s.load_run(ref)
    rid = run.run_id
    ledger = s.ledger_store
    seen = 0

    def drain() -> None:
        nonlocal seen
        for rec in ledger.records_since(rid, seen):
            on_record(rec)
            seen = max(seen, int(rec.get("seq", seen)) + 1)

    while True:
        drain()
        now = s.run_store.load(rid)
        if now is None:
            raise UnknownRunError(rid).with_hint("it was pruned while followed")
        if now.status.is_terminal:
            drain()  # what was recorded before the final checkpoint
            return now
        s.stores.listen(poll)


# ---------------------------------------------------------------------------- doctor


class Problem:
    """One thing doctor found: its severity, what, and the fix."""

    def __init__(self, severity: str, kind: str, message: str, fix: str, *,
                 run_ids: Sequence[str] = (), paths: Sequence[str] = (),
                 fixable: bool = False) -> None:
        self.severity = severity  # "error" (needs a person: exit 1) or "warning"
        self.kind = kind
        self.message = message
        self.fix = fix
        self.run_ids = list(run_ids)
        self.paths = list(paths)
        self.fixable = fixable  # doctor --fix repairs it

    def to_jsonable(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"severity": self.severity, "kind": self.kind,
                               "message": self.message, "fix": self.fix,
                               "fixable": self.fixable}
        if self.run_ids:
            doc["run_ids"] = self.run_ids
        if self.paths:
            doc["paths"] = self.paths
        return doc


def _some(ids: Sequence[str]) -> str:
    shown = ", ".join(i[:8] for i in ids[:MAX_LISTED])
    return shown + (f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


class _Doctor:
    def __init__(self, s: Session, now: datetime) -> None:
        self.s = s
        self.st = s.stores
        self.now = now
        self.problems: List[Problem] = []
        self.runs: Dict[str, RunState] = {}
        self.temp_files: List[str] = []

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.problems.append(Problem(*args, **kwargs))

    def run_all(self) -> None:
        # Temp files first: listing every run file may clean up the oldest ones itself.
        self.store_temp_files()
        self.read_everything()
        self.workflows()
        self.parents_on_ended_children()
        self.overdue()
        self.heartbeats()
        self.index_drift()

    # -- unreadable files (every run and ledger, and the listing of every other part)

    def read_everything(self) -> None:
        rs = self.st.runs
        ids = getattr(rs, "iter_run_ids", None)
        if ids is None:
            self.add("warning", "not_checked", f"the {self.st.kind} store cannot list every "
                     "run: unreadable runs were not looked for", "nothing to do")
            return
        for rid in ids():
            try:
                run = rs.load(rid)
            except AbstractRTError as exc:
                self.add("error", "unreadable", f"run {rid}: {exc.message}",
                         "restore the file from a backup (or move it out of the data dir), "
                         "then `abstractrt reindex`", run_ids=[rid],
                         paths=[getattr(exc, "path", None) or rid])
                continue
            if run is None:
                continue  # removed this instant
            self.runs[rid] = run
            try:
                self.st.ledger.list(rid)
            except AbstractRTError as exc:
                self.add("error", "unreadable", f"ledger of run {rid}: {exc.message}",
                         f"restore it from a backup; `abstractrt ledger {rid} --verify` "
                         "names the first bad record", run_ids=[rid])
        parts: List[Tuple[str, Callable[[], Any]]] = []
        if self.st.snapshots is not None:
            parts.append(("snapshots", self.st.snapshots.list_snapshots))
        if self.st.artifacts is not None:
            parts.append(("artifacts", self.st.artifacts.list_artifacts))
        if self.st.events is not None and hasattr(self.st.events, "list_events"):
            parts.append(("events", self.st.events.list_events))
        if self.st.audit is not None:
            parts.append(("prune records", self.st.audit.list_prune_records))
            parts.append(("worker heartbeats", self.st.audit.heartbeats))
        for what, fn in parts:
            try:
                fn()
            except AbstractRTError as exc:
                self.add("error", "unreadable", f"{what}: {exc.message}",
                         "restore the file from a backup, or move it out of the data dir")

    # -- workflows: missing or broken (errors), changed (warnings)

    def workflows(self) -> None:
        loaded = self.s.workflows
        by_workflow: Dict[str, List[RunState]] = {}
        for run in self.runs.values():
            if not run.status.is_terminal:
                by_workflow.setdefault(run.workflow_id, []).append(run)
        where = self.s.settings.workflows_dir
        for wid, runs in sorted(by_workflow.items()):
            ids = sorted(r.run_id for r in runs)
            what = f"{len(ids)} unfinished run{'s' if len(ids) != 1 else ''} ({_some(ids)})"
            try:
                entry = loaded.entry(wid)
            except UnknownWorkflowError:
                sources = sorted({r.workflow_source for r in runs if r.workflow_source})
                self.add("error", "workflow_missing",
                         f"workflow {wid!r} of {what} is not in {where}"
                         + (f" (it came from {', '.join(sources)})" if sources else ""),
                         "put the workflow file back, or point --workflows (ABSTRACTRT_WORKFLOWS) "
                         "at its directory; or cancel the runs", run_ids=ids)
                continue
            except (WorkflowLoadError, DuplicateWorkflowError) as exc:
                self.add("error", "workflow_broken", f"workflow {wid!r} of {what}: {exc.message}",
                         "fix the workflow file (`abstractrt workflows` shows its error)",
                         run_ids=ids)
                continue
            from ..loader import check_spec

            graph = check_spec(entry.spec)
            if graph:
                self.add("error", "workflow_broken",
                         f"workflow {wid!r} of {what}: " + "; ".join(graph),
                         f"fix {entry.source}", run_ids=ids)
            changed = sorted(r.run_id for r in runs if r.workflow_fingerprint
                             and entry.fingerprint and r.workflow_fingerprint != entry.fingerprint)
            if changed:
                self.add("warning", "workflow_changed",
                         f"workflow {wid!r} changed since {len(changed)} of its unfinished runs "
                         f"started ({_some(changed)}; {entry.source})",
                         "nothing, if the change is compatible; else finish or cancel those "
                         "runs with the code they started with", run_ids=changed)
        for b in loaded.broken:
            self.add("warning", "workflow_file_broken", f"workflow file {b.path} fails to import: "
                     f"{b.error}", "fix the file (`abstractrt workflows` lists it)",
                     paths=[b.path])

    # -- parents waiting on children that ended (or are gone)

    def parents_on_ended_children(self) -> None:
        for run in sorted(self.runs.values(), key=lambda r: r.run_id):
            w = run.waiting
            if run.status != RunStatus.WAITING or w is None or w.reason != WaitReason.SUBWORKFLOW:
                continue
            child_id = (w.details or {}).get("sub_run_id")
            child = self.runs.get(child_id) if child_id else None
            if child is None and child_id:
                try:
                    child = self.st.runs.load(child_id)
                except AbstractRTError:
                    continue  # reported as unreadable
            if child is None:
                self.add("error", "child_missing",
                         f"run {run.run_id} waits on child run {child_id}, which does not exist",
                         f"cancel it (`abstractrt cancel {run.run_id}`), or import the child "
                         "from a backup", run_ids=[run.run_id])
            elif child.status.is_terminal:
                self.add("error", "parent_waits_on_ended_child",
                         f"run {run.run_id} waits on child run {child.run_id}, which "
                         f"{child.status.value}: is cron or a worker running?",
                         f"`abstractrt tick {run.run_id}` (or let `abstractrt tick --all` from "
                         "cron, or `abstractrt worker`, do it)", run_ids=[run.run_id])

    # -- timers and deadlines overdue

    def overdue(self) -> None:
        from ..storage import rules

        late = self.st.runs.list_due_wait_until(now=self.now - OVERDUE_AFTER,
                                                on_corrupt=lambda exc: None)
        for run in late:
            due = rules.due_at(run)
            kind = "deadline" if (run.waiting is not None
                                  and run.waiting.reason in rules.DEADLINE_REASONS) else "timer"
            if run.waiting is not None and (run.waiting.details or {}).get("retry"):
                kind = "retry"
            mins = int((self.now - due).total_seconds() // 60) if due else None
            self.add("error", "overdue",
                     f"run {run.run_id}: its {kind} was due at "
                     f"{due.isoformat() if due else '?'}"
                     + (f", {mins} min ago" if mins is not None else "")
                     + ": is cron or a worker running?",
                     "run `abstractrt tick --all` from cron (* * * * *), or `abstractrt worker`",
                     run_ids=[run.run_id])

    # -- workers

    def heartbeats(self) -> None:
        from ..core.timeutil import parse_timestamp

        audit = self.st.audit
        if audit is None:
            return
        try:
            beats = audit.heartbeats()
        except AbstractRTError:
            return  # reported as unreadable
        for hb in beats:
            if hb.get("stopped_at"):
                continue  # a worker that stopped cleanly: its last beat is not a problem
            try:
                at = parse_timestamp(hb.get("beat_at"))
                interval = float(hb.get("interval") or 0)
            except (TypeError, ValueError):
                self.add("warning", "heartbeat_unreadable",
                         f"worker {hb.get('worker_id')!r} left a heartbeat doctor cannot read",
                         "restart the worker")
                continue
            stale = max(3 * interval, HEARTBEAT_MIN_STALE)
            age = (self.now - at).total_seconds()
            if age > stale:
                who = f"worker {hb.get('worker_id')}"
                if hb.get("host") or hb.get("pid"):
                    who += f" ({hb.get('host') or '?'}, pid {hb.get('pid') or '?'})"
                self.add("error", "stale_heartbeat",
                         f"{who} last beat {int(age)} s ago (at {at.isoformat()}), more than "
                         f"{int(stale)} s for its interval of {interval:g} s: is it still running?",
                         "restart `abstractrt worker` (or run `abstractrt tick --all` from cron)")

    # -- the query index (stores that keep one apart from the runs)

    def index_drift(self) -> None:
        rs = self.st.runs
        if getattr(rs, "rebuild_index", None) is None or not self.runs:
            return  # no separate index (PostgreSQL, memory): nothing can drift
        listed = {r.run_id for r in rs.list_runs(on_corrupt=lambda exc: None)}
        by_status: Dict[RunStatus, set] = {}
        for st in RunStatus:
            by_status[st] = {r.run_id for r in rs.list_runs(status=st, on_corrupt=lambda exc: None)}
        drift = sorted(rid for rid, run in self.runs.items()
                       if rid not in listed or rid not in by_status[run.status])
        if drift:
            self.add("warning", "index_drift",
                     f"the query index does not show {len(drift)} run"
                     f"{'s' if len(drift) != 1 else ''} as their files say ({_some(drift)}): "
                     "queries (runs, waiting, tick --all) may miss them",
                     "`abstractrt reindex` (doctor --fix does it)", run_ids=drift, fixable=True)

    # -- temp files a crash left in the file store

    def store_temp_files(self) -> None:
        if self.st.kind != "files" or self.s.store_missing():
            return
        # The file store writes ``.<name>.<pid>.<n>.tmp`` beside its target and renames
        # it: one older than TEMP_FILE_AGE belongs to a write that never finished.
        root = self.st.location
        cutoff = time.time() - TEMP_FILE_AGE.total_seconds()
        found = []
        for dirpath, _dirnames, filenames in os.walk(root):
            for fn in filenames:
                if not (fn.startswith(".") and fn.endswith(".tmp")):
                    continue
                path = os.path.join(dirpath, fn)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                    found.append(path)
        self.temp_files = sorted(found)
        if found:
            rel = [os.path.relpath(p, root) for p in self.temp_files]
            self.add("warning", "temp_files",
                     f"{len(found)} temp file{'s' if len(found) != 1 else ''} older than "
                     f"{int(TEMP_FILE_AGE.total_seconds() // 60)} minutes in {root} (left by "
                     f"writes that never finished): {', '.join(rel[:MAX_LISTED])}"
                     + (" …" if len(rel) > MAX_LISTED else ""),
                     "delete them (doctor --fix does it)", paths=self.temp_files, fixable=True)

    # -- repairs

    def fix(self) -> List[str]:
        done: List[str] = []
        kinds = {p.kind for p in self.problems}
        if "temp_files" in kinds:
            removed = []
            root = self.st.location
            for path in self.temp_files:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass  # gone already (the store cleans up the oldest ones itself)
                except OSError as exc:  # left for a person (it is reported again below)
                    done.append(f"could not remove {os.path.relpath(path, root)}: "
                                f"{exc.strerror or exc}")
                    continue
                removed.append(path)
            if removed:
                done.append(f"removed {len(removed)} temp file{'s' if len(removed) != 1 else ''}: "
                            + ", ".join(os.path.relpath(p, root) for p in removed))
        if "index_drift" in kinds:
            counts = self.st.reindex()
            done.append(f"rebuilt the query index: {counts.get('runs', 0)} runs indexed, "
                        f"{counts.get('removed', 0)} stale entries removed")
        return done


def _settings(s: Session) -> Dict[str, Any]:
    from .admin import config_report

    report = config_report(s)
    rows = report["settings"]
    rows.append({"setting": "store_kind", "value": s.stores.kind, "from": "store"})
    where = s.settings.workflows_dir
    return {"version": report["version"], "settings": rows,
            "data_dir_exists": not s.store_missing(),
            "workflows_dir_exists": Path(where).is_dir()}


@hinted
def doctor(s: Session, *, fix: bool = False, now: Optional[datetime] = None) -> Dict[str, Any]:
    """What needs attention in the store and the workflows (PRODUCT §9), each with its fix;
    ``fix``: repair what is safe (temp files, the index), then look again.

    ``ok`` is False when an error (something a person must see to) remains."""
    when = now or _now()
    settings = _settings(s)
    d = _Doctor(s, when)
    d.run_all()
    fixed: List[str] = []
    if fix and any(p.fixable for p in d.problems):
        fixed = d.fix()
        d = _Doctor(s, when)
        d.run_all()
    if not settings["workflows_dir_exists"]:
        d.add("warning", "workflows_dir_missing",
              f"the workflows directory {s.settings.workflows_dir} does not exist",
              "use --workflows DIR, ABSTRACTRT_WORKFLOWS, or workflows_dir in config.yaml")
    problems = [p.to_jsonable() for p in d.problems]
    errors = sum(1 for p in d.problems if p.severity == "error")
    return {**settings, "runs_checked": len(d.runs), "problems": problems, "fixed": fixed,
            "errors": errors, "warnings": len(problems) - errors, "ok": errors == 0}
