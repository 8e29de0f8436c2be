"""Run logs (PRODUCT §9) in ``<schema>.log_heads`` and ``<schema>.logs``.

Per run, ``log_heads`` holds how many bytes of text are kept, how many were dropped and
the next entry's number; ``logs`` one row per entry (its JSON as given, and the UTF-8
size of its text). What is kept is what ``rules.cap_log`` keeps — the newest entries
within the cap, an entry over the cap on its own cut to its last bytes — computed
without reading the run's log: the new entries are capped on their own, and then the
oldest kept ones are dropped until the total fits (one indexed statement that stops at
the first entry it may keep).

An append is one transaction of two statements: the first locks the run's head row
(created if needed), so concurrent appends to one run queue up; the second, which
therefore sees everything committed before it, drops, inserts and updates the head.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence, Tuple

from ...errors import PayloadError, StoreIOError
from .. import rules
from ..files.ids import validate_run_id
from ..base import LOG_CAP
from .store import _dumps

__all__ = ["PostgresLogStore", "LOG_EXISTS"]

LOG_EXISTS = "log_exists"  # StoreIOError.code of ``import_log`` finding a log there


def _valid_text(entry: Dict[str, Any]) -> Dict[str, Any]:
    """Output decoded with ``surrogateescape`` can hold lone surrogates, which no UTF-8
    text (nor PostgreSQL) can: they become U+FFFD rather than losing the entry."""
    text = entry["text"]
    try:
        text.encode("utf-8")
        return entry
    except UnicodeEncodeError:
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return dict(entry, text=fixed)


def _size(entry: Dict[str, Any]) -> int:
    return len(entry["text"].encode("utf-8"))


class PostgresLogStore:
    """LogStore over PostgreSQL; shares the run store's connections (``PostgresDb``).

    ``cap``: the bytes of text kept per run (``LOG_CAP``; smaller in tests)."""

    def __init__(self, db: Any, cap: int = LOG_CAP) -> None:
        self._db = db
        self.cap = cap
        s = db.schema
        # Creates the head row if there is none; either way the row is locked until commit.
        self._head = (f"INSERT INTO {s}.log_heads (run_id, kept, dropped, next_n) "
                      "VALUES (%(rid)s, 0, 0, 0) ON CONFLICT (run_id) DO UPDATE "
                      "SET next_n = log_heads.next_n RETURNING kept, dropped, next_n")
        write = f"""
            ins AS (INSERT INTO {s}.logs (run_id, n, bytes, entry)
                    SELECT %(rid)s, %(n0)s::bigint + r.i - 1, r.b::bigint, r.e
                    FROM ROWS FROM (json_array_elements(%(ents)s::json),
                                    json_array_elements_text(%(sizes)s::json))
                         WITH ORDINALITY AS r(e, b, i))
            UPDATE {s}.log_heads SET
                kept = kept + %(total)s::bigint - coalesce((SELECT sum(bytes) FROM del), 0),
                dropped = dropped + %(cut)s::bigint + coalesce((SELECT sum(bytes) FROM del), 0),
                next_n = %(n0)s::bigint + %(k)s::bigint
            WHERE run_id = %(rid)s"""
        # Drop nothing / everything kept so far / the oldest entries, up to and including
        # the first at which they add up to ``excess`` bytes (entries after it fit).
        self._keep_all = f"WITH del AS (SELECT 0::bigint AS bytes WHERE false), {write}"
        self._drop_all = (f"WITH del AS (DELETE FROM {s}.logs WHERE run_id = %(rid)s "
                          f"RETURNING bytes), {write}")
        self._drop_oldest = f"""WITH del AS (
                DELETE FROM {s}.logs WHERE run_id = %(rid)s AND n <= (
                    SELECT x.n FROM (SELECT n, sum(bytes) OVER (ORDER BY n) AS upto
                                     FROM {s}.logs WHERE run_id = %(rid)s) x
                    WHERE x.upto >= %(excess)s ORDER BY x.n LIMIT 1)
                RETURNING bytes), {write}"""
        self._read = (f"SELECT coalesce((SELECT dropped FROM {s}.log_heads WHERE run_id = %s), 0), "
                      f"coalesce((SELECT json_agg(entry ORDER BY n) FROM {s}.logs "
                      "WHERE run_id = %s), '[]'::json)")
        self._delete = (f"WITH d AS (DELETE FROM {s}.logs WHERE run_id = %(rid)s) "
                        f"DELETE FROM {s}.log_heads WHERE run_id = %(rid)s")

    def close(self) -> None:
        self._db.close()

    def append_log(self, run_id: str, entries: Sequence[Dict[str, Any]]) -> None:
        """``[{at, node_id, effect_seq, stream, text}]``, appended in order."""
        validate_run_id(run_id)
        ents = [_valid_text(e) for e in rules.check_log_entries(entries)]
        if not ents:
            return
        batch, cut = rules.cap_log(ents, 0, self.cap)
        self._write(run_id, batch, cut, dropped_before=None)

    def import_log(self, run_id: str, entries: Sequence[Dict[str, Any]], dropped: int) -> None:
        """A run's whole log as another store kept it (``store copy``): its entries and its
        dropped-bytes count. StoreIOError ``log_exists`` if this run has a log here."""
        if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
            raise PayloadError("a log's dropped count is a number of bytes")
        validate_run_id(run_id)
        ents = [_valid_text(e) for e in rules.check_log_entries(entries)]
        batch, cut = rules.cap_log(ents, dropped, self.cap)
        self._write(run_id, batch, cut, dropped_before=0)

    def _write(self, run_id: str, batch: List[Dict[str, Any]], cut: int,
               dropped_before: Any) -> None:
        sizes = [_size(e) for e in batch]
        total = sum(sizes)
        try:
            ents = "[" + ",".join(_dumps(e) for e in batch) + "]"
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"log of run {run_id}: {exc}") from None
        c = self._db.connector
        s = c.session()
        with c.mapped(s):
            with s.conn.transaction():
                conn = s.conn
                kept, dropped, n0 = conn.execute(self._head, {"rid": run_id}).fetchone()
                if dropped_before is not None and (n0 or dropped):
                    raise StoreIOError(self._db.location, f"run {run_id} has a log already",
                                       code=LOG_EXISTS)
                params = {"rid": run_id, "n0": n0, "ents": ents, "sizes": json.dumps(sizes),
                          "total": total, "cut": cut, "k": len(batch)}
                excess = kept + total - self.cap
                if cut and dropped_before is None:
                    # The new entries alone were over the cap: nothing older stays.
                    query = self._drop_all
                elif excess > 0:
                    query = self._drop_oldest
                    params["excess"] = excess
                else:
                    query = self._keep_all
                conn.execute(query, params)

    def read_log(self, run_id: str) -> Tuple[List[Dict[str, Any]], int]:
        """(the entries kept, oldest first; how many bytes were dropped before them)."""
        row = self._db.connector.fetchone(self._read, (run_id, run_id))
        dropped, entries = row if row is not None else (0, [])
        return list(entries), int(dropped)

    def delete_log(self, run_id: str) -> None:
        self._db.connector.execute(self._delete, {"rid": run_id})
