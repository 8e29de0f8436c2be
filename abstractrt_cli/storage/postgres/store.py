"""RunStore, RunQueries, RunAdmin, LedgerStore and CommitStore over PostgreSQL (see
``schema.py``); the other parts (events, snapshots, artifacts, audit, logs) are modules of
their own over the same ``PostgresDb``.

Locks. A run's lock is a *session advisory lock* (``pg_try_advisory_lock``) keyed on a
64-bit hash of the schema and run id, held by the connection of the thread that took it
(``connection.py``). Why not a row lock (``SELECT ... FOR UPDATE``) inside the tick's
transaction: a tick holds its run for as long as its effect handlers take (an LLM call,
a tool, minutes) and commits a checkpoint after each effect. A row lock lives only as
long as its transaction, so the tick would have to keep one transaction open across its
checkpoints — they would not be durable until the tick ends — or hold an idle
transaction beside them on a second connection, whose lock would then block the row's
own updates. An advisory lock is independent of transactions: checkpoints commit one by
one while the lock stays held, a run can be locked before its row exists (``start`` with
a given id), and the server frees it the instant the session ends — a ``kill -9``'d
holder, a crashed machine (once TCP notices) or a dropped connection. Busy is
RunBusyError (exit 4) as with files; ``timeout=0`` tries once, otherwise the wait is the
server's (``lock_timeout``), so a released lock is taken at once, without polling.

Commits. ``commit(records, run)`` chains the records from the ledger's head and writes
them and the run's row in ONE statement — one round trip, one transaction, one WAL
flush. The head it chains from is cached by this process and *checked inside the
statement* (the last record's seq and hash): a stale cache writes nothing and is
refreshed, and two writers racing on one run collide on the primary key (run_id, seq)
instead of forking the chain. ``append`` is ``commit(records, None)``; ``save`` one
upsert. ``head`` trusts the cache only while the calling thread holds the run's lock and
has read or written the head during that hold; otherwise it asks the server. A ``load``
under the run's lock brings along the ledger from the checkpoint's last record on — what
the kernel reads next to check the checkpoint and roll forward — in the same round trip.

Round trips, then: a tick or a resume costs the lock, the load, one per checkpoint and the
unlock; ``start`` one (its ``start`` record and the new run's row together).

Wake-ups. A trigger sends ``NOTIFY abstractrt_wake, '<run id>'`` whenever a row becomes
``running`` (start, resume, a retry coming due): the notification goes out when, and only
if, that transaction commits. ``listen(timeout)`` waits for them on a connection of its
own; ``wake(run_id)`` sends one by hand. NOTIFY only wakes: the tables are the truth,
and a worker that missed one finds the run on its next poll.
"""

from __future__ import annotations

import hashlib
import json
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import psycopg

from ...core.models import RunState, RunStatus, StepRecord, WaitReason
from ...core.timeutil import parse_timestamp
from ...errors import (
    CorruptRunError,
    RunBusyError,
    StateNotSavableError,
    StoreIOError,
    StoreUnavailableError,
)
from ..base import OnCorrupt, Stores
from ..chain import chain_record
from ..files.ids import validate_run_id as _validate_file_run_id
from ..rules import EPOCH, RunFilter, as_status, due_at
from .connection import Connector, Session, redact_url
from .schema import SCHEMA_VERSION, check_schema_name, ensure_schema, wake_channel

__all__ = ["PostgresDb", "PostgresRunStore", "PostgresLedgerStore", "open_stores",
           "CAPABILITIES", "RUN_EXISTS"]

# What this store offers beyond the protocols (``Stores.capabilities``).
CAPABILITIES: FrozenSet[str] = frozenset({
    "commit",  # commit(records, run): records and checkpoint in one transaction
    "shared",  # several processes and machines at once; locks held by the server
    "notify",  # wake(run_id) / listen(timeout): LISTEN/NOTIFY wake-ups
    "wake",  # (the name the other stores give wake/listen)
    "import",  # import_run(run, records): a run and its chained ledger, verbatim
    "deadlines",  # the due queries count the deadlines of waits (rules.due_at)
    # The parts of PRODUCT §7-§9 (Stores.events ... Stores.logs) and RunAdmin.
    "events", "snapshots", "artifacts", "audit", "logs", "admin",
})

_COMMIT_TRIES = 4


# No error classes of our own: every AbstractRTError subclass must have a code of its own
# and a line in the README, so the PostgreSQL store raises the kernel's.
RUN_EXISTS = "run_exists"  # StoreIOError.code of ``import_run`` finding the run there


def corrupt_row(location: str, run_id: str, why: str) -> CorruptRunError:
    """A run row whose state cannot be read back as a run (edited by hand)."""
    err = CorruptRunError(f"{location} run {run_id}", why)
    err.run_id = run_id  # type: ignore[attr-defined]
    return err


def run_exists(location: str, run_id: str) -> StoreIOError:
    err = StoreIOError(location, f"run {run_id} (or ledger records of it) already exists",
                       code=RUN_EXISTS)
    err.run_id = run_id  # type: ignore[attr-defined]
    return err


def _dumps(data: Any) -> str:
    # Compact, exact, and refusing what JSON cannot hold (NaN, Infinity).
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _value(member: Any) -> Optional[str]:
    return member.value if member is not None else None


def _ts(value: Any) -> Optional[datetime]:
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return None


def _utc(dt: Optional[datetime]) -> Optional[datetime]:
    return dt.astimezone(timezone.utc) if dt is not None else None


def _lock_key(schema: str, run_id: str) -> int:
    digest = hashlib.blake2b(f"abstractrt-run\0{schema}\0{run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class _Sql:
    """The statements, with the schema name filled in once (a checked identifier)."""

    def __init__(self, s: str) -> None:
        cols = ("run_id, status, workflow_id, wait_reason, wait_key, due_at, parent_run_id, "
                "created_at, updated_at, state")
        vals = ("%(rid)s, %(status)s, %(workflow_id)s, %(wait_reason)s, %(wait_key)s, "
                "%(due_at)s, %(parent)s, %(created)s, %(updated)s, %(state)s::json")
        update = ("status = EXCLUDED.status, workflow_id = EXCLUDED.workflow_id, "
                  "wait_reason = EXCLUDED.wait_reason, wait_key = EXCLUDED.wait_key, "
                  "due_at = EXCLUDED.due_at, parent_run_id = EXCLUDED.parent_run_id, "
                  "created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, "
                  "state = EXCLUDED.state")
        self.save = (f"INSERT INTO {s}.runs ({cols}) VALUES ({vals}) "
                     f"ON CONFLICT (run_id) DO UPDATE SET {update}")
        self.load = f"SELECT state FROM {s}.runs WHERE run_id = %s"
        # Under the run's lock, a load also brings the ledger from the checkpoint's last
        # record on: what the kernel reads next (``records_since(count - 1)``), in the same
        # round trip and the same snapshot. A ``ledger_count`` that is not a number (a
        # hand-edited row) must not fail the query: the state's own check reports it.
        self.load_with_tail = f"""SELECT r.state, (
                SELECT coalesce(json_agg(l.record ORDER BY l.seq), '[]'::json)
                FROM {s}.ledger l
                WHERE l.run_id = r.run_id AND l.seq >= (
                    CASE WHEN json_typeof(r.state->'ledger_count') = 'number'
                         THEN greatest(floor((r.state->>'ledger_count')::numeric) - 1, 0)
                         ELSE 0 END))
            FROM {s}.runs r WHERE r.run_id = %s"""
        head_check = f"""
            h AS (SELECT seq, record_hash FROM {s}.ledger WHERE run_id = %(rid)s
                  ORDER BY seq DESC LIMIT 1),
            ok AS (SELECT 1 WHERE coalesce((SELECT seq + 1 FROM h), 0) = %(n0)s::int
                   AND (SELECT record_hash FROM h) IS NOT DISTINCT FROM %(h0)s::text),
            ins AS (INSERT INTO {s}.ledger (run_id, seq, record, record_hash)
                    SELECT %(rid)s, %(n0)s::int + r.i::int - 1, r.rec, r.hash
                    FROM ROWS FROM (json_array_elements(%(recs)s::json),
                                    json_array_elements_text(%(hashes)s::json))
                         WITH ORDINALITY AS r(rec, hash, i)
                    WHERE EXISTS (SELECT 1 FROM ok)
                    RETURNING 1)"""
        # The real head comes back too: a stale guess is corrected without another query.
        result = ("SELECT EXISTS (SELECT 1 FROM ok), (SELECT seq FROM h), "
                  "(SELECT record_hash FROM h)")
        self.append = f"WITH {head_check} {result}"
        self.commit = f"""WITH {head_check},
            up AS (INSERT INTO {s}.runs ({cols}) SELECT {vals} WHERE EXISTS (SELECT 1 FROM ok)
                   ON CONFLICT (run_id) DO UPDATE SET {update}
                   RETURNING 1)
            {result}"""
        self.import_run = f"""WITH
            ins AS (INSERT INTO {s}.ledger (run_id, seq, record, record_hash)
                    SELECT %(rid)s, r.i::int - 1, r.rec, r.hash
                    FROM ROWS FROM (json_array_elements(%(recs)s::json),
                                    json_array_elements_text(%(hashes)s::json))
                         WITH ORDINALITY AS r(rec, hash, i)
                    RETURNING 1)
            INSERT INTO {s}.runs ({cols}) VALUES ({vals})"""
        self.head = (f"SELECT seq, record_hash FROM {s}.ledger WHERE run_id = %s "
                     "ORDER BY seq DESC LIMIT 1")
        self.records_since = (f"SELECT record FROM {s}.ledger WHERE run_id = %s AND seq >= %s "
                              "ORDER BY seq")
        self.due = (f"SELECT run_id, state FROM {s}.runs WHERE due_at <= %s "
                    "ORDER BY due_at, run_id LIMIT %s")
        self.earliest_due = f"SELECT min(due_at) FROM {s}.runs WHERE due_at IS NOT NULL"
        self.prefix = (f"SELECT run_id FROM {s}.runs WHERE run_id LIKE %s "
                       "ORDER BY run_id LIMIT %s")
        self.ids_after = (f"SELECT run_id FROM {s}.runs WHERE run_id > %s "
                          "ORDER BY run_id LIMIT %s")
        self.counts = f"SELECT status, count(*) FROM {s}.runs GROUP BY status"
        # A run and its ledger go together: one statement, one transaction.
        self.delete_run = (f"WITH l AS (DELETE FROM {s}.ledger WHERE run_id = %(rid)s) "
                           f"DELETE FROM {s}.runs WHERE run_id = %(rid)s")
        self.runs_table = f"{s}.runs"


class PostgresDb:
    """What the run store and the ledger store of one database share."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0, schema: str = "abstractrt",
                 application_name: str = "abstractrt") -> None:
        self.schema = check_schema_name(schema)
        self.connector = Connector(url, connect_timeout=connect_timeout,
                                   application_name=application_name)
        self.location = self.connector.location
        self.sql = _Sql(self.schema)
        self.channel = wake_channel(self.schema)
        # run_id -> (record count, hash of the last record), as last read or written here.
        self._heads: Dict[str, Tuple[int, Optional[str]]] = {}
        # run_id -> (first seq, records from it to the end), read by a load under the
        # run's lock for the ``records_since`` that follows it; used once, while locked.
        self._tails: Dict[str, Tuple[int, List[Dict[str, Any]]]] = {}
        self._listen_conn: Optional[psycopg.Connection] = None
        self._listen_guard = threading.Lock()
        try:
            self.version = ensure_schema(self.connector, self.schema)
        except BaseException:
            self.connector.close()
            raise

    def close(self) -> None:
        with self._listen_guard:
            if self._listen_conn is not None:
                try:
                    self._listen_conn.close()
                except Exception:  # closing a dead connection: nothing to lose
                    pass
                self._listen_conn = None
        self.connector.close()

    # ------------------------------------------------------------------ heads

    def remember_head(self, rid: str, head: Tuple[int, Optional[str]]) -> None:
        if len(self._heads) > 8192:
            self._heads.clear()  # only a cache: every use of it is checked by the server
        self._heads[rid] = head

    def forget_head(self, rid: str) -> None:
        self._heads.pop(rid, None)
        self._tails.pop(rid, None)

    def remember_tail(self, rid: str, records: List[Dict[str, Any]]) -> None:
        if records and isinstance(records[0], dict) and isinstance(records[0].get("seq"), int):
            self._tails[rid] = (records[0]["seq"], records)
            last = records[-1]
            if isinstance(last, dict) and isinstance(last.get("seq"), int):
                self.remember_head(rid, (last["seq"] + 1, last.get("record_hash")))

    def take_tail(self, rid: str, count: int) -> Optional[List[Dict[str, Any]]]:
        """The prefetched records from ``count`` on, if a load under the lock has them."""
        tail = self._tails.pop(rid, None)
        if tail is None or count < tail[0] or not self.holds(rid):
            return None
        return [r for r in tail[1] if r.get("seq", -1) >= count]

    def cached_head(self, rid: str) -> Optional[Tuple[int, Optional[str]]]:
        return self._heads.get(rid)

    def read_head(self, rid: str) -> Tuple[int, Optional[str]]:
        row = self.connector.fetchone(self.sql.head, (rid,))
        head = (row[0] + 1, row[1]) if row else (0, None)
        self.remember_head(rid, head)
        return head

    def holds(self, rid: str) -> bool:
        """Whether the calling thread holds the run's lock (through its live session)."""
        s = self.connector.session()
        return rid in s.held

    # ------------------------------------------------------------------ writes

    def commit(self, rid: str, records: Sequence[StepRecord],
               run: Optional[RunState]) -> List[Dict[str, Any]]:
        """Chain ``records`` from the head and write them (and ``run``) in one statement."""
        saved = (run.ledger_count, run.ledger_head) if run is not None else None
        # Unknown head: guess an empty ledger (right for every new run); the statement
        # checks the guess and, if wrong, says what the head is.
        head = self.cached_head(rid) or (0, None)
        for _ in range(_COMMIT_TRIES):
            count, prev = head
            stored: List[Dict[str, Any]] = []
            texts: List[str] = []
            try:
                for rec in records:
                    data = chain_record(rec.to_jsonable(), seq=count + len(stored), prev_hash=prev)
                    text = _dumps(data)
                    texts.append(text)
                    stored.append(json.loads(text))
                    prev = data["record_hash"]
                # JSON arrays, not text[]: json_array_elements keeps each element's text
                # exactly, and one string needs no array quoting (psycopg's is slow). The
                # hashes come apart: ``->>`` would fail on a record holding "\u0000".
                params: Dict[str, Any] = {
                    "rid": rid, "n0": count, "h0": head[1], "recs": "[" + ",".join(texts) + "]",
                    "hashes": json.dumps([d["record_hash"] for d in stored]),
                }
                if run is not None:
                    run.ledger_count, run.ledger_head = count + len(stored), prev
                    params.update(_row_params(run))
            except (TypeError, ValueError) as exc:
                self._restore(run, saved)
                raise StateNotSavableError(rid, str(exc)) from None
            s = self.connector.session()
            try:
                with self.connector.mapped(s, passthrough=(psycopg.errors.UniqueViolation,)):
                    row = s.conn.execute(self.sql.commit if run is not None else self.sql.append,
                                         params).fetchone()
            except psycopg.errors.UniqueViolation:
                # Someone appended to this run meanwhile (without its lock): chain after them.
                self.forget_head(rid)
                head = self.read_head(rid)
                continue
            except UnicodeEncodeError as exc:
                self._restore(run, saved)
                raise StateNotSavableError(rid, f"text that is not valid Unicode: {exc}") from None
            except BaseException:
                self.forget_head(rid)  # it may or may not have been written
                self._restore(run, saved)
                raise
            assert row is not None
            if not row[0]:
                head = (row[1] + 1, row[2]) if row[1] is not None else (0, None)
                continue  # our idea of the head was stale: chain from the real one
            self.remember_head(rid, (count + len(stored), prev))
            self._tails.pop(rid, None)
            for rec, data in zip(records, stored, strict=True):
                rec.seq, rec.prev_hash, rec.record_hash = (data["seq"], data["prev_hash"],
                                                           data["record_hash"])
            return stored
        self._restore(run, saved)
        raise RunBusyError(rid)

    @staticmethod
    def _restore(run: Optional[RunState], saved: Optional[Tuple[int, Optional[str]]]) -> None:
        if run is not None and saved is not None:
            run.ledger_count, run.ledger_head = saved

    def save(self, run: RunState) -> None:
        try:
            params = _row_params(run)
        except (TypeError, ValueError) as exc:
            raise StateNotSavableError(run.run_id, str(exc)) from None
        s = self.connector.session()
        try:
            with self.connector.mapped(s):
                s.conn.execute(self.sql.save, params)
        except UnicodeEncodeError as exc:
            raise StateNotSavableError(run.run_id, f"text that is not valid Unicode: {exc}"
                                       ) from None

    def import_run(self, run: RunState, records: Sequence[Dict[str, Any]]) -> None:
        """Write a run and its (already chained) ledger records verbatim, in one statement.

        StoreIOError with code ``run_exists`` if the run or a ledger record of it exists.
        """
        rid = run.run_id
        params = _row_params(run)
        params["recs"] = "[" + ",".join(_dumps(r) for r in records) + "]"
        params["hashes"] = json.dumps([r["record_hash"] for r in records])
        s = self.connector.session()
        try:
            with self.connector.mapped(s, passthrough=(psycopg.errors.UniqueViolation,)):
                s.conn.execute(self.sql.import_run, params)
        except psycopg.errors.UniqueViolation:
            raise run_exists(self.location, rid) from None
        self.forget_head(rid)

    # ------------------------------------------------------------------ reads

    def parse_state(self, rid: str, data: Any) -> RunState:
        try:
            run = RunState.from_dict(data)
        except ValueError as exc:
            raise corrupt_row(self.location, rid, str(exc)) from None
        if run.run_id != rid:
            raise corrupt_row(self.location, rid, f"it holds run {run.run_id!r}")
        return run

    def runs_from_rows(self, rows: Sequence[Tuple[Any, ...]], on_corrupt: OnCorrupt
                       ) -> List[RunState]:
        out = []
        for rid, data in rows:
            try:
                out.append(self.parse_state(rid, data))
            except CorruptRunError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
        return out


def _row_params(run: RunState) -> Dict[str, Any]:
    """The indexed columns of a run, and its state as JSON text."""
    w = run.waiting if run.status == RunStatus.WAITING else None
    return {
        "rid": run.run_id,
        "status": run.status.value,
        "workflow_id": run.workflow_id,
        "wait_reason": w.reason.value if w is not None else None,
        "wait_key": w.wait_key if w is not None else None,
        "due_at": due_at(run) if w is not None else None,
        "parent": run.parent_run_id,
        "created": _ts(run.created_at) or EPOCH,
        "updated": _ts(run.updated_at),
        "state": _dumps(run.to_jsonable()),
    }


class PostgresRunStore:
    """Runs in ``<schema>.runs``; locks, queries, one-transaction commits, wake-ups."""

    def __init__(self, db: PostgresDb) -> None:
        self._db = db

    @property
    def db(self) -> PostgresDb:
        return self._db

    @property
    def location(self) -> str:
        return self._db.location

    def close(self) -> None:
        self._db.close()

    def validate_run_id(self, run_id: Any) -> str:
        """The same rule as the files, so that every run can be copied to a data dir."""
        return _validate_file_run_id(run_id)

    # ------------------------------------------------------------------ save / load / commit

    def save(self, run: RunState) -> None:
        """Insert or replace the run's row (columns and state in one statement)."""
        self.validate_run_id(run.run_id)
        self._db.save(run)

    def load(self, run_id: str) -> Optional[RunState]:
        rid = self.validate_run_id(run_id)
        db = self._db
        if not db.holds(rid):
            row = db.connector.fetchone(db.sql.load, (rid,))
            return db.parse_state(rid, row[0]) if row is not None else None
        row = db.connector.fetchone(db.sql.load_with_tail, (rid,))
        if row is None:
            return None
        run = db.parse_state(rid, row[0])
        if isinstance(row[1], list):
            db.remember_tail(rid, row[1])
        return run

    def commit(self, records: Sequence[StepRecord], run: Optional[RunState]) -> List[Dict[str, Any]]:
        """Chain and append ``records`` and, if ``run`` is given, checkpoint it covering
        them: one statement, all or nothing."""
        rids = {r.run_id for r in records} | ({run.run_id} if run is not None else set())
        if len(rids) > 1:
            raise ValueError(f"commit() takes the records of one run, got {sorted(rids)}")
        if not rids:
            return []
        rid = self.validate_run_id(rids.pop())
        return self._db.commit(rid, records, run)

    def import_run(self, run: RunState, records: Sequence[Dict[str, Any]]) -> None:
        """A new run with its ledger, verbatim (``store copy``); ``run_exists`` if present."""
        self.validate_run_id(run.run_id)
        for rec in records:
            if rec.get("run_id") != run.run_id:
                raise ValueError(f"record of run {rec.get('run_id')!r} given for run {run.run_id}")
        self._db.import_run(run, records)

    # ------------------------------------------------------------------ locks

    @contextmanager
    def lock(self, run_id: str, *, timeout: float) -> Iterator[None]:
        """Hold the run exclusively (across processes and machines); ``timeout=0`` tries once."""
        rid = self.validate_run_id(run_id)
        db = self._db
        s = db.connector.session()
        if rid in s.held:
            # The server would grant a session lock to its holder again: refuse it here.
            raise RunBusyError(rid)
        key = _lock_key(db.schema, rid)
        if not self._acquire(s, key, timeout):
            raise RunBusyError(rid)
        s.held[rid] = key
        db.forget_head(rid)
        try:
            yield
        finally:
            del s.held[rid]
            db.forget_head(rid)
            self._release(s, key)

    def _acquire(self, s: Session, key: int, timeout: float) -> bool:
        conn, mapped = s.conn, self._db.connector.mapped
        with mapped(s):
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is not None and row[0]:
                return True
        if timeout <= 0:
            return False
        ms = max(1, int(timeout * 1000))
        with mapped(s, passthrough=(psycopg.errors.LockNotAvailable,)):
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{ms}ms",))
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                return True
            except psycopg.errors.LockNotAvailable:
                return False
            finally:
                conn.execute("SELECT set_config('lock_timeout', '0', false)")

    def _release(self, s: Session, key: int) -> None:
        if s.dead:
            return  # the server freed it when the connection died
        try:
            with self._db.connector.mapped(s):
                s.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except StoreUnavailableError:
            pass  # the connection died just now: the server freed the lock with it

    # ------------------------------------------------------------------ queries

    def list_runs(
        self,
        *,
        status: Optional[RunStatus] = None,
        workflow_id: Optional[str] = None,
        wait_reason: Optional[WaitReason] = None,
        wait_key: Optional[str] = None,
        parent_run_id: Optional[str] = None,
        created_since: Optional[datetime] = None,
        limit: Optional[int] = None,
        on_corrupt: OnCorrupt = None,
    ) -> List[RunState]:
        """Matching runs, newest (``created_at``) first; one indexed query."""
        if limit is not None and limit <= 0:
            return []
        where: List[str] = []
        params: List[Any] = []
        f = RunFilter.of(status=status, workflow_id=workflow_id, wait_reason=wait_reason,
                         wait_key=wait_key, parent_run_id=parent_run_id,
                         created_since=created_since)
        # The wait columns are only set while a run waits: ``wait_key = k`` means waiting.
        for column, value in (("status", _value(f.status)), ("workflow_id", f.workflow_id),
                              ("wait_reason", _value(f.wait_reason)), ("wait_key", f.wait_key),
                              ("parent_run_id", f.parent_run_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if f.created_since is not None:
            where.append("created_at >= %s")
            params.append(f.created_since)
        query = f"SELECT run_id, state FROM {self._db.sql.runs_table}"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, run_id DESC"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        rows = self._db.connector.fetchall(query, params)
        return self._db.runs_from_rows(rows, on_corrupt)

    def list_due_wait_until(
        self, *, now: datetime, limit: Optional[int] = None, on_corrupt: OnCorrupt = None
    ) -> List[RunState]:
        """Runs waiting with reason ``until`` whose time is at or before ``now``, earliest first."""
        if limit is not None and limit <= 0:
            return []
        rows = self._db.connector.fetchall(self._db.sql.due, (parse_timestamp(now), limit))
        return self._db.runs_from_rows(rows, on_corrupt)

    def earliest_due(self) -> Optional[datetime]:
        row = self._db.connector.fetchone(self._db.sql.earliest_due)
        return _utc(row[0]) if row else None

    def list_children(
        self, *, parent_run_id: str, status: Optional[RunStatus] = None
    ) -> List[RunState]:
        """Runs whose ``parent_run_id`` is the given run, oldest first."""
        query = f"SELECT run_id, state FROM {self._db.sql.runs_table} WHERE parent_run_id = %s"
        params: List[Any] = [parent_run_id]
        if status is not None:
            query += " AND status = %s"
            params.append(_value(as_status(status)))
        query += " ORDER BY created_at, run_id"
        return self._db.runs_from_rows(self._db.connector.fetchall(query, params), None)

    def match_prefix(self, prefix: str, *, limit: int = 20) -> List[str]:
        if limit <= 0 or not isinstance(prefix, str):
            return []
        rows = self._db.connector.fetchall(self._db.sql.prefix, (_like_prefix(prefix), limit))
        return [r[0] for r in rows]

    def iter_run_ids(self, *, batch: int = 1000) -> Iterator[str]:
        """Every run id, in order, a page at a time (``store copy``)."""
        after = ""
        while True:
            rows = self._db.connector.fetchall(self._db.sql.ids_after, (after, batch))
            for (rid,) in rows:
                yield rid
            if len(rows) < batch:
                return
            after = rows[-1][0]

    def delete_run(self, run_id: str) -> None:
        """Remove the run's row and its ledger in one transaction (prune; the caller holds
        the run's lock). A run that is not there: nothing to do."""
        rid = self.validate_run_id(run_id)
        self._db.connector.execute(self._db.sql.delete_run, {"rid": rid})
        self._db.forget_head(rid)

    def info(self) -> Dict[str, Any]:
        """Schema, its version, and runs by status (for ``store info``; keys as the files')."""
        rows = self._db.connector.fetchall(self._db.sql.counts)
        counts = {status: n for status, n in rows}
        return {"format": self._db.version, "format_known": SCHEMA_VERSION,
                "schema": self._db.schema, "runs": {k: counts[k] for k in sorted(counts)},
                "total": sum(counts.values())}

    # ------------------------------------------------------------------ wake-ups

    def wake(self, run_id: str) -> None:
        """Send a wake-up for a run to every listening worker (when this commits: now)."""
        self._db.connector.execute("SELECT pg_notify(%s, %s)", (self._db.channel, run_id))

    def listen(self, timeout: float) -> List[str]:
        """Run ids woken since the last call, waiting up to ``timeout`` seconds for one.

        The first call starts listening (and returns what arrives within ``timeout``): a
        worker calls ``listen(0)`` once before its first round, so nothing sent while that
        round runs is missed.
        """
        db = self._db
        with db._listen_guard:
            conn = db._listen_conn
            if conn is None or conn.closed or conn.broken:
                conn = db.connector.connect()
                try:
                    conn.execute(f"LISTEN {db.channel}")
                except psycopg.Error as exc:
                    conn.close()
                    raise StoreIOError(db.location, db.connector.scrub(str(exc))) from None
                db._listen_conn = conn
            out: List[str] = []
            try:
                for note in conn.notifies(timeout=max(0.0, timeout), stop_after=1):
                    out.append(note.payload)
                for note in conn.notifies(timeout=0):
                    out.append(note.payload)
            except psycopg.Error as exc:
                db._listen_conn = None
                raise StoreIOError(db.location, f"lost the listening connection: "
                                                f"{db.connector.scrub(str(exc))}") from None
        return list(dict.fromkeys(out))


class PostgresLedgerStore:
    """Ledger records in ``<schema>.ledger``, hash-chained exactly like the files."""

    def __init__(self, db: PostgresDb) -> None:
        self._db = db

    def close(self) -> None:
        self._db.close()

    def append(self, record: StepRecord) -> Dict[str, Any]:
        rid = _validate_file_run_id(record.run_id)
        return self._db.commit(rid, [record], None)[0]

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self.records_since(run_id, 0)

    def head(self, run_id: str) -> Tuple[int, Optional[str]]:
        rid = _validate_file_run_id(run_id)
        db = self._db
        if db.holds(rid):
            cached = db.cached_head(rid)
            if cached is not None:
                return cached
        return db.read_head(rid)

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        rid = _validate_file_run_id(run_id)
        prefetched = self._db.take_tail(rid, max(0, count))
        if prefetched is not None:
            return prefetched
        rows = self._db.connector.fetchall(self._db.sql.records_since, (rid, max(0, count)))
        records = [r[0] for r in rows]
        if records:  # the last one is the head: the next commit needs no query for it
            last = records[-1]
            if isinstance(last, dict) and isinstance(last.get("seq"), int):
                self._db.remember_head(rid, (last["seq"] + 1, last.get("record_hash")))
        return records


def open_stores(url: str, *, connect_timeout: float = 5.0, schema: str = "abstractrt",
                **options: Any) -> Stores:
    from .artifacts import PostgresArtifactStore
    from .audit import PostgresAuditStore
    from .events import PostgresEventStore
    from .logs import PostgresLogStore
    from .snapshots import PostgresSnapshotStore

    db = PostgresDb(url, connect_timeout=connect_timeout, schema=schema, **options)
    return Stores(runs=PostgresRunStore(db), ledger=PostgresLedgerStore(db), kind="postgresql",
                  location=redact_url(url), capabilities=CAPABILITIES,
                  events=PostgresEventStore(db), snapshots=PostgresSnapshotStore(db),
                  artifacts=PostgresArtifactStore(db), audit=PostgresAuditStore(db),
                  logs=PostgresLogStore(db))

