"""Prune records and worker heartbeats in ``<schema>.prune_records`` / ``<schema>.heartbeats``.

A prune record is kept as written (``record``), numbered in the order it was put (the
order ``list_prune_records`` gives, as every store does), with its run and time beside
it for ad-hoc SQL. A heartbeat replaces its worker's previous one (one row per
``worker_id``, an upsert).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ...errors import PayloadError
from .. import rules
from .store import _dumps

__all__ = ["PostgresAuditStore"]


def _when(value: Any) -> Optional[Any]:
    us = rules.timestamp_micros(value)
    return rules.from_micros(us) if us is not None else None


class PostgresAuditStore:
    """AuditStore over PostgreSQL; shares the run store's connections (``PostgresDb``)."""

    def __init__(self, db: Any) -> None:
        self._db = db
        s = db.schema
        self._put = (f"INSERT INTO {s}.prune_records (run_id, pruned_at, record) "
                     "VALUES (%s, %s, %s::json)")
        self._list = f"SELECT record FROM {s}.prune_records ORDER BY n"
        self._beat = (f"INSERT INTO {s}.heartbeats (worker_id, beat_at, heartbeat) "
                      "VALUES (%s, %s, %s::json) ON CONFLICT (worker_id) DO UPDATE SET "
                      "beat_at = EXCLUDED.beat_at, heartbeat = EXCLUDED.heartbeat")
        self._beats = f"SELECT heartbeat FROM {s}.heartbeats ORDER BY worker_id"

    def close(self) -> None:
        self._db.close()

    def put_prune_record(self, record: Dict[str, Any]) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
            raise PayloadError("a prune record is an object with a run_id")
        text = self._text(record, f"the prune record of run {record['run_id']}")
        self._db.connector.execute(self._put, (record["run_id"], _when(record.get("pruned_at")),
                                               text))

    def list_prune_records(self) -> List[Dict[str, Any]]:
        return [r[0] for r in self._db.connector.fetchall(self._list)]

    def beat(self, heartbeat: Dict[str, Any]) -> None:
        if not isinstance(heartbeat, dict) or not isinstance(heartbeat.get("worker_id"), str) \
                or not heartbeat["worker_id"]:
            raise PayloadError("a heartbeat is an object with a worker_id")
        text = self._text(heartbeat, f"the heartbeat of worker {heartbeat['worker_id']}")
        self._db.connector.execute(self._beat, (heartbeat["worker_id"],
                                                _when(heartbeat.get("beat_at")), text))

    def heartbeats(self) -> List[Dict[str, Any]]:
        return [r[0] for r in self._db.connector.fetchall(self._beats)]

    @staticmethod
    def _text(doc: Dict[str, Any], what: str) -> str:
        try:
            text = _dumps(doc)
            text.encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise PayloadError(f"{what}: {exc}") from None
        return text
