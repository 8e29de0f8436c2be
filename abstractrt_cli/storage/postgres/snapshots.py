"""Snapshots (PRODUCT §9) in ``<schema>.snapshots``: one row per (run, name).

The state is kept as ``json`` (its exact text, like a run's), the rest of the snapshot
document as given in ``doc`` (so a snapshot comes back exactly as it was put, keys this
version does not know included), and beside them the columns queries and ad-hoc SQL
use: tags in an array (GIN index: ``--tag``), ledger count and head, actor, and
``created_at`` parsed, for the order ``rules.snapshot_order`` gives (an unreadable time
sorts as the epoch). By run: the primary key.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ...errors import PayloadError, SnapshotExistsError
from .. import rules
from ..files.ids import validate_run_id
from .store import _dumps

__all__ = ["PostgresSnapshotStore"]


def _int_or_none(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


class PostgresSnapshotStore:
    """SnapshotStore over PostgreSQL; shares the run store's connections (``PostgresDb``)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        s = db.schema
        self._put = (f"INSERT INTO {s}.snapshots (run_id, name, tags, state, ledger_count, "
                     "ledger_head, created_at, actor_id, doc) VALUES "
                     "(%s, %s, %s, %s::json, %s, %s, %s, %s, %s::json) "
                     "ON CONFLICT (run_id, name) DO NOTHING")
        self._select = f"SELECT doc, state FROM {s}.snapshots"
        self._get = self._select + " WHERE run_id = %s AND name = %s"
        self._order = " ORDER BY created_at, run_id, name"
        self._delete = f"DELETE FROM {s}.snapshots WHERE run_id = %s"

    def close(self) -> None:
        self._db.close()

    def put_snapshot(self, snapshot: Dict[str, Any]) -> None:
        """Keep it; SnapshotExistsError if the run has a snapshot of that name."""
        try:
            snap = rules.check_snapshot(snapshot)
        except PayloadError:
            raise
        except (TypeError, ValueError) as exc:  # what JSON cannot hold (NaN...)
            raise PayloadError(f"a snapshot must be JSON: {exc}") from None
        validate_run_id(snap["run_id"])  # the run store's rule: every snapshot can be copied
        doc = {k: v for k, v in snap.items() if k != "state"}
        head = snap.get("ledger_head")
        actor = snap.get("actor_id")
        created = rules.from_micros(rules.timestamp_micros(snap.get("created_at")) or 0)
        try:
            params = (snap["run_id"], snap["name"], snap["tags"], _dumps(snap["state"]),
                      _int_or_none(snap.get("ledger_count")),
                      head if isinstance(head, str) else None, created,
                      actor if isinstance(actor, str) else None, _dumps(doc))
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"snapshot {snap['name']!r} of run {snap['run_id']}: {exc}") from None
        c = self._db.connector
        s = c.session()
        try:
            with c.mapped(s):
                cur = s.conn.execute(self._put, params)
        except UnicodeEncodeError as exc:
            raise PayloadError(f"snapshot {snap['name']!r} of run {snap['run_id']}: text that "
                               f"is not valid Unicode: {exc}") from None
        if cur.rowcount == 0:
            raise SnapshotExistsError(snap["run_id"], snap["name"])

    def get_snapshot(self, run_id: str, name: str) -> Optional[Dict[str, Any]]:
        row = self._db.connector.fetchone(self._get, (run_id, name))
        return self._snapshot(row) if row is not None else None

    def list_snapshots(self, *, run_id: Optional[str] = None,
                       tag: Optional[str] = None) -> List[Dict[str, Any]]:
        """Snapshots, oldest first, of one run (primary key) and/or with one tag (GIN)."""
        where, params = [], []  # type: Tuple[List[str], List[Any]]
        if run_id is not None:
            where.append("run_id = %s")
            params.append(run_id)
        if tag is not None:
            where.append("tags @> ARRAY[%s]::text[]")
            params.append(tag)
        query = self._select
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self._db.connector.fetchall(query + self._order, params)
        return [self._snapshot(r) for r in rows]

    def delete_snapshots(self, run_id: str) -> int:
        c = self._db.connector
        s = c.session()
        with c.mapped(s):
            return s.conn.execute(self._delete, (run_id,)).rowcount

    @staticmethod
    def _snapshot(row: Tuple[Any, ...]) -> Dict[str, Any]:
        doc, state = row
        return dict(doc, state=state)

