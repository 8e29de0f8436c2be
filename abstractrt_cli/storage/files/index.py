"""The query index of the file run store: one SQLite table beside the run files.

The run files are the truth; the index only says *which* run files a query needs to read,
so that ``tick --all``, ``waiting`` and ``runs`` cost what the matching runs cost, not
what every run ever stored costs. (SQLite is in the standard library: no dependency.)

One row per run holds the fields that change slowly, if at all::

    run_id, status, workflow_id, wait_reason, wait_key, until_us, parent_run_id,
    created_us, dirty

``wait_reason``/``wait_key``/``until_us`` are set only while the run is waiting
(``until_us``: microseconds since the epoch of when it becomes due, ``rules.due_at``: a
timer's ``until`` or the ``deadline`` of a person's or an event's wait), so a filter on
them also means "waiting". Partial indexes cover each query over the *clean* rows.

The event mailbox (``events.py``) keeps two more tables here, with the same rule (the
files are the truth, the tables say which files to read): ``events`` (``event_id, key,
emitted_us, expires_us``: one row per kept event file, indexed by key then emission
time) and ``event_receipts`` (``event_id, run_id``: one row per receipt, a subset of the
event's receipts file, completed by the readers when one is missing).

The invariant that keeps it honest under crashes: **a row is either dirty, or its fields
equal those of the run file**. A save that changes indexed fields (made under the run's
lock) first writes the row with the new fields and ``dirty = 1`` — durably — then
replaces the run file, then clears ``dirty``. A crash in between leaves a dirty row;
every query reads all dirty rows (normally none) besides the clean rows that match, checks
them against their run files, and repairs them under the run's lock. A new run needs no
dirty phase: before its file exists no query can be missing it. A row that is dirty
already needs none either: the file is replaced, then the row rewritten clean (not
durably). That relies on every write of ``dirty = 1`` being a durable commit.

Why SQLite rather than directories of marker files or an append-only log: a transition
touches several categories (status, reason, key, due time) and SQLite makes all of them
durable with one commit (one WAL fsync, ~0.1 ms here), where marker files need a
directory fsync per category touched; its B-trees also give the orderings the queries
want (newest first, earliest due first) with a ``LIMIT``, and its locking makes writers
in several processes safe. Measured: finding 100 due runs among 200,000 takes ~4 ms.

The caller (``FileRunStore``) owns the locking, the repair and the rebuild; this module
is only the table, so it never reads a run file.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import threading
import urllib.parse
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ...errors import StoreIOError, SymlinkRefusedError
from .atomic import FILE_MODE, O_CLOEXEC, O_NOFOLLOW
from .oserrors import cannot_write, store_error

SCHEMA_VERSION = "1"


class IndexKey(NamedTuple):
    """The indexed fields of a run (see the module docstring)."""

    status: Optional[str]
    workflow_id: Optional[str]
    wait_reason: Optional[str]
    wait_key: Optional[str]
    until_us: Optional[int]
    parent_run_id: Optional[str]
    created_us: int

_COLUMNS = ("run_id, status, workflow_id, wait_reason, wait_key, until_us, parent_run_id, "
            "created_us, dirty")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY NOT NULL,
        status TEXT, workflow_id TEXT, wait_reason TEXT, wait_key TEXT, until_us INTEGER,
        parent_run_id TEXT, created_us INTEGER NOT NULL DEFAULT 0,
        dirty INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS runs_created ON runs(created_us, run_id) WHERE dirty = 0",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs(status, created_us, run_id) WHERE dirty = 0",
    "CREATE INDEX IF NOT EXISTS runs_workflow ON runs(workflow_id, created_us, run_id) "
    "WHERE dirty = 0",
    "CREATE INDEX IF NOT EXISTS runs_reason ON runs(wait_reason, created_us, run_id) "
    "WHERE dirty = 0 AND wait_reason IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_wait_key ON runs(wait_key) "
    "WHERE dirty = 0 AND wait_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_until ON runs(until_us, run_id) "
    "WHERE dirty = 0 AND until_us IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_parent_created ON runs(parent_run_id, created_us, run_id) "
    "WHERE dirty = 0 AND parent_run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_dirty ON runs(run_id) WHERE dirty = 1",
    """CREATE TABLE IF NOT EXISTS events (
        event_id TEXT PRIMARY KEY NOT NULL, key TEXT NOT NULL,
        emitted_us INTEGER NOT NULL, expires_us INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS events_key ON events(key, emitted_us, event_id)",
    """CREATE TABLE IF NOT EXISTS event_receipts (
        event_id TEXT NOT NULL, run_id TEXT NOT NULL, PRIMARY KEY (event_id, run_id)
    ) WITHOUT ROWID""",
    # Last: its presence says the whole schema above was made (see _ensure_schema).
    "CREATE INDEX IF NOT EXISTS events_expiry ON events(expires_us, event_id)",
]

# An index only the newest schema has: a database without it gets the whole (idempotent)
# schema, so an older index gains the new tables and indexes on first use. (An index of
# a data dir older than format 3 gains empty event tables: such a data dir has no event
# files, so they are complete.)
_NEWEST_INDEX = "events_expiry"

_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class IndexCorruptError(Exception):
    """The index database is unreadable; the store rebuilds it from the run files."""


def _ensure_schema(conn: sqlite3.Connection) -> None:
    existing = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    if _NEWEST_INDEX not in existing:
        for stmt in _SCHEMA:
            conn.execute(stmt)


def _sqlite_cannot_write(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return cannot_write(exc)
    if not isinstance(exc, sqlite3.Error):
        return False
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc).lower()
    return code in (3, 8) or "readonly" in text or "read-only" in text  # PERM, READONLY


def is_corruption(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in _CORRUPT_CODES


class RunIndex:
    """The SQLite table of indexed run fields (one connection, shared by threads).

    Opened read-write normally. Where this process cannot write (a read-only file system,
    no permission) it opens the database read-only, and if even that is impossible (WAL
    mode needs its ``-shm`` file, which nobody may create here) or the database is
    missing, it holds the index in memory, built by the store from the run files: queries
    work on a read-only data dir, at the price of one scan. Symlinks at the database or
    its ``-wal``/``-shm`` files are refused before SQLite (which follows them) sees them.
    """

    def __init__(self, path: str, *, fsync: bool = True,
                 dir_ready: Optional[Callable[[bool], bool]] = None) -> None:
        self.path = path
        self._fsync = fsync
        # dir_ready(create) -> does the index dir exist (after creating it if asked)?
        self._dir_ready = dir_ready or (lambda create: os.path.isdir(os.path.dirname(path)))
        self._mutex = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self._ino: Optional[int] = None
        self._sync_mode: Optional[str] = None
        self.generation = 0  # bumped on every (re)connection
        self._pid = os.getpid()
        self.read_only = False  # opened read-only, or in memory, because we cannot write
        self.in_memory = False

    # ------------------------------------------------------------------ connection

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def _file_ino(self) -> Optional[int]:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise SymlinkRefusedError(self.path)
        return st.st_ino

    def _refuse_symlinks(self) -> None:
        for p in (os.path.dirname(self.path), self.path, self.path + "-wal",
                  self.path + "-shm", self.path + "-journal"):
            if os.path.islink(p):
                raise SymlinkRefusedError(p)

    def connect(self) -> sqlite3.Connection:
        """Open (creating if needed) the database; reconnects if the file was replaced."""
        with self._mutex:
            if self._conn is not None and self._pid != os.getpid():
                # A forked child must not use its parent's SQLite connection (SQLite's
                # rule); abandon it — closing it here could disturb the parent's.
                self._conn, self._ino = None, None
            if self._conn is not None:
                if self.in_memory or self._file_ino() == self._ino:
                    return self._conn
                self.close()  # deleted or replaced behind our back (a reindex, a user)
            self._refuse_symlinks()
            conn = None
            if not self.read_only:
                conn = self._connect_rw()
            if conn is None:
                conn = self._connect_ro()
            self._conn = conn
            self._pid = os.getpid()
            self._ino = None if self.in_memory else self._file_ino()
            self._sync_mode = None
            self.generation += 1
            return conn

    def _connect_rw(self) -> Optional[sqlite3.Connection]:
        """A read-write connection, or None (and ``read_only``) if we may not write."""
        try:
            if not self._dir_ready(True):
                raise FileNotFoundError(errno.ENOENT, "no index directory", self.path)
            # Created by us so it is 0600; SQLite gives the -wal/-shm files its mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                             FILE_MODE))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SymlinkRefusedError(self.path) from None
            if not cannot_write(exc):
                raise store_error(exc, self.path) from exc
            self.read_only = True
            return None
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            _ensure_schema(conn)
        except BaseException as exc:
            conn.close()
            if is_corruption(exc):
                raise IndexCorruptError(str(exc)) from exc
            if _sqlite_cannot_write(exc):
                self.read_only = True
                return None
            raise self._mapped(exc) from exc
        return conn

    def _connect_ro(self) -> sqlite3.Connection:
        """Read-only: the file as it is if SQLite can read it so, else an empty index in
        memory (``in_memory``: the store fills it from the run files)."""
        self.read_only = True
        if self._dir_ready(False) and os.path.lexists(self.path):
            uri = "file:" + urllib.parse.quote(self.path)
            attempts = ["?mode=ro"]
            if not os.path.lexists(self.path + "-wal"):
                # Nothing is in a WAL: the file holds every commit, and nobody can change
                # it while it is read-only here.
                attempts.append("?immutable=1")
            for params in attempts:
                try:
                    conn = sqlite3.connect(uri + params, uri=True, timeout=60.0,
                                           isolation_level=None, check_same_thread=False)
                except sqlite3.Error:
                    continue
                try:
                    conn.execute("PRAGMA busy_timeout = 60000")
                    names = {r[0] for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
                    if _NEWEST_INDEX in names:
                        self.in_memory = False
                        return conn
                except sqlite3.Error as exc:
                    if is_corruption(exc):
                        conn.close()
                        break  # unreadable: an index in memory will do
                conn.close()
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        _ensure_schema(conn)
        self.in_memory = True
        return conn

    def switch_to_memory(self) -> None:
        """Hold the index in memory from now on (a read-only index that is incomplete or
        corrupt cannot be rebuilt where it is)."""
        with self._mutex:
            self.close()
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            _ensure_schema(conn)
            self._conn, self._ino, self._pid = conn, None, os.getpid()
            self.read_only = self.in_memory = True
            self._sync_mode = None
            self.generation += 1

    def _mapped(self, exc: BaseException) -> BaseException:
        """A SQLite error the environment caused, as a StoreIOError naming the index."""
        if isinstance(exc, sqlite3.Error):
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            text = str(exc).lower()
            if code == 13 or "full" in text:  # SQLITE_FULL
                return store_error(OSError(errno.ENOSPC, "disk full"), self.path)
            if _sqlite_cannot_write(exc):
                return store_error(OSError(errno.EROFS, "read-only"), self.path)
            if code in (10, 14) or "disk i/o" in text or "unable to open" in text:
                return StoreIOError(self.path, f"the index cannot be used: {exc}")
        return exc

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._pid != os.getpid():
                self._conn, self._ino = None, None  # the parent's (see connect)
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
                    self._ino = None

    def _sync(self, conn: sqlite3.Connection, durable: bool) -> None:
        if self.read_only:
            return
        mode = "FULL" if (durable and self._fsync) else ("NORMAL" if self._fsync else "OFF")
        if mode != self._sync_mode:
            conn.execute(f"PRAGMA synchronous = {mode}")
            self._sync_mode = mode

    def _run(self, sql: str, params: Sequence[Any] = (), *, durable: bool = False) -> None:
        with self._mutex:
            conn = self.connect()
            try:
                self._sync(conn, durable)
                conn.execute(sql, params)
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise IndexCorruptError(str(exc)) from exc
                raise self._mapped(exc) from exc

    def _many(self, sql: str, rows: Iterable[Sequence[Any]], *, durable: bool = False) -> None:
        with self._mutex:
            conn = self.connect()
            try:
                self._sync(conn, durable)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, rows)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise IndexCorruptError(str(exc)) from exc
                raise self._mapped(exc) from exc

    def _exec(self, sql: str, params: Sequence[Any] = (), *, durable: bool = False) -> int:
        """``_run`` that says how many rows the statement changed."""
        with self._mutex:
            conn = self.connect()
            try:
                self._sync(conn, durable)
                return conn.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise IndexCorruptError(str(exc)) from exc
                raise self._mapped(exc) from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
        with self._mutex:
            conn = self.connect()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise IndexCorruptError(str(exc)) from exc
                raise self._mapped(exc) from exc

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> Optional[str]:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str, *, durable: bool = True) -> None:
        self._run("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value),
                  durable=durable)

    def is_complete(self) -> bool:
        return self.get_meta("complete") == SCHEMA_VERSION

    # ------------------------------------------------------------------ rows

    def put(self, run_id: str, key: IndexKey, *, dirty: bool, durable: bool) -> None:
        """Write a run's row (``durable``: on disk before this returns, when fsync is on)."""
        self._run(f"INSERT OR REPLACE INTO runs({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                  (run_id, *key, 1 if dirty else 0), durable=durable)

    def put_many(self, rows: Iterable[Tuple[str, IndexKey, bool]], *, durable: bool) -> None:
        self._many(f"INSERT OR REPLACE INTO runs({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                   ((rid, *key, 1 if dirty else 0) for rid, key, dirty in rows), durable=durable)

    def clear_dirty(self, run_id: str, key: IndexKey) -> None:
        """Mark the row clean if it still holds ``key`` (the fields of the file just written).

        Not durable: losing it (power loss) leaves a dirty row, which is merely re-checked.
        """
        self._run("UPDATE runs SET dirty = 0 WHERE run_id = ? AND dirty = 1 AND status IS ? "
                  "AND workflow_id IS ? AND wait_reason IS ? AND wait_key IS ? AND until_us IS ? "
                  "AND parent_run_id IS ? AND created_us IS ?", (run_id, *key))

    def mark_dirty(self, run_id: str) -> None:
        """Make every query re-check this run (its fields are kept, or unknown if new)."""
        self._run("INSERT INTO runs(run_id, created_us, dirty) VALUES (?, 0, 1) "
                  "ON CONFLICT(run_id) DO UPDATE SET dirty = 1", (run_id,), durable=True)

    def delete(self, run_id: str) -> None:
        self._run("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def delete_many(self, run_ids: Iterable[str]) -> None:
        self._many("DELETE FROM runs WHERE run_id = ?", ((r,) for r in run_ids), durable=False)

    def get(self, run_id: str) -> Optional[Tuple[IndexKey, bool]]:
        rows = self._query(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        r = rows[0]
        return IndexKey(*r[1:8]), bool(r[8])

    def all_ids(self) -> List[str]:
        return [r[0] for r in self._query("SELECT run_id FROM runs")]

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM runs")[0][0])

    def counts_by_status(self) -> Tuple[dict, int]:
        """({status: clean rows}, dirty rows): what ``store info`` reports."""
        clean = {r[0]: int(r[1]) for r in self._query(
            "SELECT status, count(*) FROM runs WHERE dirty = 0 GROUP BY status")}
        dirty = int(self._query("SELECT count(*) FROM runs WHERE dirty = 1")[0][0])
        return clean, dirty

    # ------------------------------------------------------------------ queries

    def dirty_ids(self) -> List[str]:
        return [r[0] for r in self._query("SELECT run_id FROM runs WHERE dirty = 1")]

    def page_runs(
        self,
        *,
        status: Optional[str],
        workflow_id: Optional[str],
        wait_reason: Optional[str],
        wait_key: Optional[str],
        parent_run_id: Optional[str] = None,
        created_since_us: Optional[int] = None,
        before: Optional[Tuple[int, str]],
        limit: int,
    ) -> List[Tuple[str, int]]:
        """Clean rows matching the filters, newest first, strictly before ``before``."""
        where = ["dirty = 0"]
        params: List[Any] = []
        for col, val in (("status", status), ("workflow_id", workflow_id),
                         ("wait_reason", wait_reason), ("wait_key", wait_key),
                         ("parent_run_id", parent_run_id)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if created_since_us is not None:
            where.append("created_us >= ?")
            params.append(created_since_us)
        if before is not None:
            where.append("(created_us, run_id) < (?, ?)")
            params.extend(before)
        sql = (f"SELECT run_id, created_us FROM runs WHERE {' AND '.join(where)} "
               "ORDER BY created_us DESC, run_id DESC LIMIT ?")
        return [(r[0], r[1]) for r in self._query(sql, (*params, limit))]

    def page_due(self, *, now_us: int, after: Optional[Tuple[int, str]], limit: int
                 ) -> List[Tuple[str, int]]:
        """Clean rows waiting ``until`` a time at or before ``now_us``, earliest first."""
        sql = ("SELECT run_id, until_us FROM runs "
               "WHERE dirty = 0 AND until_us IS NOT NULL AND until_us <= ?")
        params: List[Any] = [now_us]
        if after is not None:
            sql += " AND (until_us, run_id) > (?, ?)"
            params.extend(after)
        sql += " ORDER BY until_us, run_id LIMIT ?"
        return [(r[0], r[1]) for r in self._query(sql, (*params, limit))]

    def earliest_until(self) -> Optional[int]:
        """The smallest ``until_us`` of the clean rows (dirty ones are the caller's)."""
        rows = self._query("SELECT min(until_us) FROM runs WHERE dirty = 0 AND until_us IS NOT NULL")
        return rows[0][0] if rows and rows[0][0] is not None else None

    def children(self, parent_run_id: str) -> List[str]:
        return [r[0] for r in self._query(
            "SELECT run_id FROM runs WHERE parent_run_id = ?", (parent_run_id,))]

    def page_prefix(self, prefix: str, *, after: Optional[str], limit: int) -> List[str]:
        # Run ids use [A-Za-z0-9._-], all below '~': [prefix, prefix + '~') is the range.
        lo = prefix if after is None else after
        op = ">=" if after is None else ">"
        return [r[0] for r in self._query(
            f"SELECT run_id FROM runs WHERE run_id {op} ? AND run_id < ? ORDER BY run_id LIMIT ?",
            (lo, prefix + "~", limit))]

    def mark_dirty_waiting(self, reasons: Sequence[str]) -> int:
        """Make every query re-check the runs waiting for one of ``reasons`` (a format
        upgrade that changed what their rows hold); how many rows."""
        marks = ",".join("?" * len(reasons))
        return self._exec(f"UPDATE runs SET dirty = 1 WHERE dirty = 0 AND wait_reason IN "
                          f"({marks})", tuple(reasons), durable=True)

    # ------------------------------------------------------------------ events

    def put_event(self, event_id: str, key: str, emitted_us: int, expires_us: int) -> None:
        """An event's row, durably: losing it would hide a kept event (its file is there)."""
        self._run("INSERT OR REPLACE INTO events(event_id, key, emitted_us, expires_us) "
                  "VALUES (?, ?, ?, ?)", (event_id, key, emitted_us, expires_us), durable=True)

    def put_events(self, rows: Iterable[Tuple[str, str, int, int]]) -> None:
        self._many("INSERT OR REPLACE INTO events(event_id, key, emitted_us, expires_us) "
                   "VALUES (?, ?, ?, ?)", rows)

    def event_page(self, key: str, *, run_id: str, emitted_after_us: int, now_us: int,
                   after: Optional[Tuple[int, str]], limit: int) -> List[Tuple[str, int]]:
        """Events of ``key`` emitted after ``emitted_after_us``, not expired at ``now_us``,
        without a receipt row for ``run_id``: (event_id, emitted_us), oldest first. One
        range of the ``events_key`` index, and a primary-key probe per row."""
        sql = ("SELECT e.event_id, e.emitted_us FROM events e "
               "WHERE e.key = ? AND e.emitted_us > ? AND e.expires_us > ? AND NOT EXISTS ("
               "SELECT 1 FROM event_receipts r WHERE r.event_id = e.event_id AND r.run_id = ?)")
        params: List[Any] = [key, emitted_after_us, now_us, run_id]
        if after is not None:
            sql += " AND (e.emitted_us, e.event_id) > (?, ?)"
            params.extend(after)
        sql += " ORDER BY e.emitted_us, e.event_id LIMIT ?"
        return [(r[0], r[1]) for r in self._query(sql, (*params, limit))]

    def event_rows(self, *, key_prefix: Optional[str] = None) -> List[Tuple[str, str]]:
        """(event_id, key) of every event (whose key starts with ``key_prefix``), oldest first."""
        if key_prefix:
            # ``GLOB`` with the prefix's metacharacters escaped as classes: an index range.
            escaped = "".join(f"[{c}]" if c in "*?[" else c for c in key_prefix)
            rows = self._query("SELECT event_id, key FROM events WHERE key GLOB ? "
                               "ORDER BY emitted_us, event_id", (escaped + "*",))
        else:
            rows = self._query("SELECT event_id, key FROM events ORDER BY emitted_us, event_id")
        return [(r[0], r[1]) for r in rows]

    def expired_events(self, now_us: int) -> List[str]:
        return [r[0] for r in self._query(
            "SELECT event_id FROM events WHERE expires_us <= ? ORDER BY expires_us, event_id",
            (now_us,))]

    def delete_event(self, event_id: str) -> None:
        self._run("DELETE FROM event_receipts WHERE event_id = ?", (event_id,))
        self._run("DELETE FROM events WHERE event_id = ?", (event_id,))

    def has_receipt(self, event_id: str, run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM event_receipts WHERE event_id = ? AND run_id = ?",
                                (event_id, run_id)))

    def add_receipts(self, rows: Iterable[Tuple[str, str]]) -> None:
        """Receipt rows (not durable: the receipts file is the truth, readers fill gaps)."""
        self._many("INSERT OR IGNORE INTO event_receipts(event_id, run_id) VALUES (?, ?)", rows)

    def event_ids(self) -> List[str]:
        return [r[0] for r in self._query("SELECT event_id FROM events")]

    def delete_events(self, event_ids: Iterable[str]) -> None:
        ids = list(event_ids)
        self._many("DELETE FROM event_receipts WHERE event_id = ?", ((e,) for e in ids))
        self._many("DELETE FROM events WHERE event_id = ?", ((e,) for e in ids))

    def query_plan(self, sql: str, params: Sequence[Any] = ()) -> List[str]:
        """SQLite's plan for a statement (tests check that lookups use an index)."""
        return [str(r[-1]) for r in self._query("EXPLAIN QUERY PLAN " + sql, params)]

    def integrity_ok(self) -> bool:
        """SQLite's own consistency check (only after an error that smelled of corruption)."""
        try:
            rows = self._query("PRAGMA quick_check")
        except IndexCorruptError:
            return False
        return bool(rows) and rows[0][0] == "ok"
