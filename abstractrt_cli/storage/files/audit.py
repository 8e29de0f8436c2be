"""What stays when runs go, and who is working (the file store's AuditStore).

Layout::

    audit/pruned.jsonl              one prune record a line, appended, never rewritten
    audit/heartbeats/<w>.json       the last heartbeat of worker ``<w>``, replaced atomically

A prune record is appended (and synced) *before* its run is deleted, so a crash between
the two leaves a record of a run that still exists — never a run gone without a trace;
a prune that runs again appends a second record for it (the list keeps every record:
it is an audit trail). A heartbeat file is named by its worker id when that is a safe
file name, else by the id's SHA-256 (the id itself is inside).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from ...errors import PayloadError, StoreIOError
from .atomic import atomic_write, lstat_at, read_file, refuse_symlink
from .ids import is_valid_run_id
from .layout import Layout
from .lines import append_lines, encode_line, read_lines
from .oserrors import mapped
from ...core.sha import sha256

PRUNED = "pruned.jsonl"


def heartbeat_file(worker_id: str) -> str:
    if is_valid_run_id(worker_id):
        return worker_id + ".json"
    return "h." + sha256(worker_id.encode("utf-8")).hexdigest() + ".json"


class FileAuditStore:
    """AuditStore over files (see the module docstring)."""

    def __init__(self, layout: Layout, *, fsync: bool = True) -> None:
        self._layout = layout
        self._fsync = fsync

    def close(self) -> None:
        pass

    @property
    def pruned_path(self) -> str:
        return os.path.join(self._layout.root, "audit", PRUNED)

    def put_prune_record(self, record: Dict[str, Any]) -> None:
        """Append ``{run_id, workflow_id, status, ledger_count, ledger_head, pruned_at,
        actor_id}`` durably."""
        if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
            raise PayloadError("a prune record is an object with a run_id")
        try:
            line = encode_line(record)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"prune record of {record['run_id']}: {exc}") from None
        with mapped(self.pruned_path):
            self._layout.in_dir("audit", lambda fd: append_lines(
                fd, PRUNED, [line], fsync=self._fsync), create=True)

    def list_prune_records(self) -> List[Dict[str, Any]]:
        """Every prune record, oldest first."""
        with mapped(self.pruned_path):
            got = self._layout.in_dir("audit", lambda fd: read_lines(fd, PRUNED), create=False)
        if got is None:
            return []
        records, _torn = got  # (a torn line: a record whose append never returned)
        return records

    def beat(self, heartbeat: Dict[str, Any]) -> None:
        """Replace the worker's previous heartbeat."""
        if not isinstance(heartbeat, dict) or not isinstance(heartbeat.get("worker_id"), str) \
                or not heartbeat["worker_id"]:
            raise PayloadError("a heartbeat is an object with a worker_id")
        name = heartbeat_file(heartbeat["worker_id"])
        try:
            data = encode_line(heartbeat)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"heartbeat of {heartbeat['worker_id']}: {exc}") from None

        def write(fd: int) -> None:
            refuse_symlink(lstat_at(fd, name))
            atomic_write(fd, name, data, fsync=self._fsync)

        with mapped(os.path.join(self._layout.root, "audit", "heartbeats", name)):
            self._layout.in_dir("audit/heartbeats", write, create=True)

    def heartbeats(self) -> List[Dict[str, Any]]:
        """The last heartbeat of every worker, by worker id; an unreadable heartbeat
        file is an error naming it."""
        base = os.path.join(self._layout.root, "audit", "heartbeats")

        def read_all(fd: int) -> List[Dict[str, Any]]:
            with os.scandir(fd) as it:
                names = sorted(e.name for e in it if e.name.endswith(".json")
                               and not e.name.startswith("."))
            out = []
            for name in names:
                got = read_file(fd, name)
                if got is None:
                    continue
                try:
                    beat = json.loads(got[0])
                    if not isinstance(beat, dict) or not isinstance(beat.get("worker_id"), str):
                        raise ValueError("no worker_id")
                except ValueError as exc:
                    raise StoreIOError(os.path.join(base, name), f"not a heartbeat: {exc}",
                                       code="corrupt_heartbeat") from None
                out.append(beat)
            return out

        with mapped(base):
            beats = self._layout.in_dir("audit/heartbeats", read_all, create=False) or []
        return sorted(beats, key=lambda b: b["worker_id"])

