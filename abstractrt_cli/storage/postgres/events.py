"""The event mailbox (PRODUCT §8) in ``<schema>.events`` and ``<schema>.event_receipts``.

A kept event is one row (its JSON as written, beside its key and times, indexed by key
then emission time); each run that received it is one receipt row, so receiving is an
idempotent insert that never rewrites the event. ``oldest_unreceived`` is one indexed
query over the events of one key.
"""

from __future__ import annotations

import fnmatch
import json
import re
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...core.models import KeptEvent
from ...core.timeutil import parse_timestamp
from ...errors import PayloadError, StoreIOError

_LITERAL_PREFIX = re.compile(r"[^*?\[]*")


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PostgresEventStore:
    """EventStore over PostgreSQL; shares the run store's connections (``PostgresDb``)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        s = db.schema
        receipts = (f"coalesce((SELECT array_agg(r.run_id ORDER BY r.n) FROM {s}.event_receipts r "
                    "WHERE r.event_id = e.event_id), '{}')")
        self._put = (f"INSERT INTO {s}.events (event_id, key, emitted_at, expires_at, event) "
                     "VALUES (%s, %s, %s, %s, %s::json)")
        self._receive = (f"INSERT INTO {s}.event_receipts (event_id, run_id) VALUES (%s, %s) "
                         "ON CONFLICT DO NOTHING")
        self._oldest = (f"SELECT e.event_id, e.event, {receipts} FROM {s}.events e "
                        "WHERE e.key = %s AND e.emitted_at > %s AND e.expires_at > %s "
                        "AND NOT (e.event_id = ANY(%s)) AND NOT EXISTS ("
                        f"SELECT 1 FROM {s}.event_receipts r WHERE r.event_id = e.event_id "
                        "AND r.run_id = %s) ORDER BY e.emitted_at, e.event_id LIMIT 1")
        self._list = f"SELECT e.event_id, e.event, {receipts} FROM {s}.events e"
        self._prune = f"DELETE FROM {s}.events WHERE expires_at <= %s"

    def close(self) -> None:
        self._db.close()

    def put(self, event: KeptEvent) -> None:
        """Keep an event (and its receipts, if it comes with some: ``store copy``)."""
        data = event.to_jsonable()
        data.pop("received_by", None)  # receipts live in their own rows
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            emitted, expires = parse_timestamp(event.emitted_at), parse_timestamp(event.expires_at)
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"event {event.event_id}: {exc}") from None
        c = self._db.connector
        s = c.session()
        params = (event.event_id, event.key, emitted, expires, text)
        with c.mapped(s):
            if not event.received_by:
                s.conn.execute(self._put, params)
                return
            with s.conn.transaction():
                s.conn.execute(self._put, params)
                for rid in event.received_by:
                    s.conn.execute(self._receive, (event.event_id, rid))

    def oldest_unreceived(self, key: str, *, run_id: str, emitted_after: datetime,
                          now: datetime, exclude: Sequence[str] = ()) -> Optional[KeptEvent]:
        row = self._db.connector.fetchone(
            self._oldest, (key, parse_timestamp(emitted_after), parse_timestamp(now),
                           list(exclude), run_id))
        return self._event(row) if row is not None else None

    def mark_received(self, event_id: str, run_id: str) -> None:
        self._db.connector.execute(self._receive, (event_id, run_id))

    def list_events(self, *, key_pattern: Optional[str] = None) -> List[KeptEvent]:
        """Kept events, oldest first; a pattern's literal prefix narrows the query."""
        query, params = self._list, []  # type: Tuple[str, List[Any]]
        if key_pattern is not None:
            prefix = _LITERAL_PREFIX.match(key_pattern).group(0)  # type: ignore[union-attr]
            if prefix:
                query += " WHERE e.key LIKE %s"
                params.append(_like_prefix(prefix))
        query += " ORDER BY e.emitted_at, e.event_id"
        events = [self._event(r) for r in self._db.connector.fetchall(query, params)]
        if key_pattern is not None:
            events = [e for e in events if fnmatch.fnmatchcase(e.key, key_pattern)]
        return events

    def prune(self, *, now: datetime) -> int:
        c = self._db.connector
        s = c.session()
        with c.mapped(s):
            cur = s.conn.execute(self._prune, (parse_timestamp(now),))
            return cur.rowcount

    def _event(self, row: Tuple[Any, ...]) -> KeptEvent:
        event_id, data, received = row
        try:
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            full: Dict[str, Any] = dict(data, received_by=list(received))
            return KeptEvent.from_dict(full)
        except ValueError as exc:
            raise StoreIOError(self._db.location, f"kept event {event_id} cannot be read: {exc}",
                               code="corrupt_event") from None
