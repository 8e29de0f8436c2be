"""Tables, indexes and migrations of the PostgreSQL store.

Schema ``abstractrt`` (by default) holds:

``runs``
    One row per run: the RunState as ``json`` (``state``) and, beside it, the fields that
    queries filter and sort on, each indexed: ``status``, ``workflow_id``, and only while
    the run waits ``wait_reason``, ``wait_key`` and ``due_at`` — when the run becomes due
    (``storage.rules.due_at``: a timer's ``until``, or the ``deadline`` of a person's or an
    event's wait); ``parent_run_id``, ``created_at``, ``updated_at``. The columns are
    written in the same statement as the state, so they never disagree with it.
``ledger``
    One row per ledger record: primary key (``run_id``, ``seq``), the record as ``json``
    and its ``record_hash`` — the same hash chain as the files (``storage/chain.py``).
``events``, ``event_receipts``
    The event mailbox: one row per kept event (its JSON, and the key and times queries
    use), one row per run that received it.
``snapshots``
    Named copies of a run's state (primary key run and name; tags in an array with a GIN
    index): the state as ``json``, the ledger count and head, when and by whom, and the
    snapshot document itself without its state (``doc``, exactly as given).
``artifacts``, ``artifact_runs``, ``artifact_tags``
    Blobs by ref (``sha256:<hex>``): the bytes as ``bytea`` and their metadata; the runs
    and tags of each in side tables indexed both ways, in the order they were added.
``prune_records``, ``heartbeats``
    What stays when a run is pruned (one row per pruned run, the record as written); the
    last heartbeat of each worker (keyed by ``worker_id``).
``log_heads``, ``logs``
    Per run: how many bytes of log text are kept and how many were dropped (the row that
    serialises appends); one row per entry, numbered, oldest dropped first beyond
    ``storage.base.LOG_CAP`` bytes.
``schema_version``
    One row per migration applied; the highest is the schema's version.

Why ``json`` and not ``jsonb``: ``json`` keeps the exact text written. ``jsonb``
re-encodes numbers (``1e16`` comes back as an integer, ``-0.0`` as ``0``) and refuses the
character U+0000, so a record read back could hash differently from the one written and
the chain — or a checkpoint's state digest — would no longer verify. The store only
filters on its own columns; ``json`` still has the ``->``/``->>`` operators for ad-hoc SQL.

Run ids and the other text keys use the "C" collation: byte order is what ``sorted()``
gives, and it lets the primary key's btree answer ``LIKE 'prefix%'``.

Migrations: ``MIGRATIONS[v]`` brings a schema from version ``v - 1`` to ``v``: SQL
statements, and Python steps (``step(conn, schema)``) where rows must be rewritten by
the store's own rules. The first use of a database runs them inside one transaction
holding a transaction-level advisory lock, so processes racing to create or migrate the
schema queue up and each finds it done, and a migration that fails leaves the schema as
it was; a schema newer than ``SCHEMA_VERSION`` is refused (DataDirVersionError).

Version 2 renames ``runs.until`` to ``runs.due_at`` and sets it for the waits with a
deadline too (older rows rewritten in the migration, through ``rules.due_at``), and adds
the tables from ``snapshots`` on. The rename is deliberate: a process of the version-1
code still running when the schema moves on fails its next write loudly (no column
``until``) instead of writing rows whose due times version-2 queries would misread.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable, Dict, List, Union

import psycopg

from ...errors import DataDirVersionError, StoreIOError, StoreUnavailableError
from .connection import Connector

SCHEMA_VERSION = 2
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def check_schema_name(name: str) -> str:
    """Schema names are plain lower-case identifiers: safe to put into SQL unquoted."""
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name) or name.startswith("pg_"):
        raise ValueError(f"invalid schema name {name!r}: use 1-48 lower-case letters, "
                         "digits and '_', starting with a letter or '_'")
    return name


def wake_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's wake-ups (``abstractrt_wake`` by default)."""
    return f"{schema}_wake"


def _v1(s: str) -> List[str]:
    channel = wake_channel(s)
    return [
        f"""CREATE TABLE {s}.runs (
            run_id text COLLATE "C" PRIMARY KEY,
            status text NOT NULL,
            workflow_id text COLLATE "C" NOT NULL,
            wait_reason text,
            wait_key text COLLATE "C",
            until timestamptz,
            parent_run_id text COLLATE "C",
            created_at timestamptz NOT NULL,
            updated_at timestamptz,
            state json NOT NULL
        )""",
        # Newest first, optionally by status or workflow: `runs`, `waiting`, tick --all.
        f"CREATE INDEX runs_created ON {s}.runs (created_at DESC, run_id DESC)",
        f"CREATE INDEX runs_status ON {s}.runs (status, created_at DESC, run_id DESC)",
        f"CREATE INDEX runs_workflow ON {s}.runs (workflow_id, created_at DESC, run_id DESC)",
        # The wait columns are NULL unless the run waits: partial indexes stay small.
        f"""CREATE INDEX runs_wait_key ON {s}.runs (wait_key, created_at DESC, run_id DESC)
            WHERE wait_key IS NOT NULL""",
        f"""CREATE INDEX runs_wait_reason ON {s}.runs (wait_reason, created_at DESC, run_id DESC)
            WHERE wait_reason IS NOT NULL""",
        f"CREATE INDEX runs_due ON {s}.runs (until, run_id) WHERE until IS NOT NULL",
        f"""CREATE INDEX runs_parent ON {s}.runs (parent_run_id, created_at, run_id)
            WHERE parent_run_id IS NOT NULL""",
        f"""CREATE TABLE {s}.ledger (
            run_id text COLLATE "C" NOT NULL,
            seq integer NOT NULL CHECK (seq >= 0),
            record json NOT NULL,
            record_hash text NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        # The event mailbox (PRODUCT §8): kept events by key, oldest first; who got each.
        f"""CREATE TABLE {s}.events (
            event_id text COLLATE "C" PRIMARY KEY,
            key text COLLATE "C" NOT NULL,
            emitted_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            event json NOT NULL
        )""",
        f"CREATE INDEX events_key ON {s}.events (key, emitted_at, event_id)",
        f"CREATE INDEX events_expiry ON {s}.events (expires_at)",
        f"""CREATE TABLE {s}.event_receipts (
            event_id text COLLATE "C" NOT NULL REFERENCES {s}.events ON DELETE CASCADE,
            run_id text COLLATE "C" NOT NULL,
            n bigserial,
            PRIMARY KEY (event_id, run_id)
        )""",
        # Wake a LISTENing worker when a run becomes runnable (started, resumed, retried):
        # the notification is sent when, and only if, the transaction commits.
        f"""CREATE FUNCTION {s}.wake() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{channel}', NEW.run_id);
                RETURN NULL;
            END $$""",
        f"""CREATE TRIGGER runs_wake_insert AFTER INSERT ON {s}.runs FOR EACH ROW
            WHEN (NEW.status = 'running') EXECUTE FUNCTION {s}.wake()""",
        f"""CREATE TRIGGER runs_wake_update AFTER UPDATE OF status ON {s}.runs FOR EACH ROW
            WHEN (NEW.status = 'running' AND OLD.status IS DISTINCT FROM 'running')
            EXECUTE FUNCTION {s}.wake()""",
    ]


def _deadlines_due(conn: psycopg.Connection, s: str) -> None:
    """Version-1 rows of runs waiting with a deadline have no due time: give them the one
    ``rules.due_at`` gives (only such runs are read: the wait-reason index finds them)."""
    from ...core.models import RunState
    from ..rules import due_at

    rows = conn.execute(f"""SELECT run_id, state FROM {s}.runs
                            WHERE wait_reason IN ('user', 'event') AND status = 'waiting'
                            AND due_at IS NULL""").fetchall()
    updates = []
    for rid, data in rows:
        try:
            run = RunState.from_dict(data)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # an unreadable row is reported when it is read, not by a migration
        due = due_at(run)
        if due is not None:
            updates.append((due, rid))
    if updates:
        with conn.cursor() as cur:
            cur.executemany(f"UPDATE {s}.runs SET due_at = %s WHERE run_id = %s", updates)


def _v2(s: str) -> List[Step]:
    return [
        # One due time for timers and deadlines (the index runs_due follows the column).
        f"ALTER TABLE {s}.runs RENAME COLUMN until TO due_at",
        _deadlines_due,
        f"""CREATE TABLE {s}.snapshots (
            run_id text COLLATE "C" NOT NULL,
            name text COLLATE "C" NOT NULL,
            tags text[] NOT NULL,
            state json NOT NULL,
            ledger_count bigint,
            ledger_head text,
            created_at timestamptz NOT NULL,
            actor_id text,
            doc json NOT NULL,
            PRIMARY KEY (run_id, name)
        )""",
        f"CREATE INDEX snapshots_tags ON {s}.snapshots USING gin (tags)",
        f"""CREATE TABLE {s}.artifacts (
            ref text COLLATE "C" PRIMARY KEY,
            data bytea NOT NULL,
            size bigint NOT NULL,
            content_type text NOT NULL,
            name text,
            created_at text NOT NULL,
            created timestamptz NOT NULL
        )""",
        f"""CREATE TABLE {s}.artifact_runs (
            ref text COLLATE "C" NOT NULL REFERENCES {s}.artifacts ON DELETE CASCADE,
            run_id text COLLATE "C" NOT NULL,
            n bigserial,
            PRIMARY KEY (ref, run_id)
        )""",
        f"CREATE INDEX artifact_runs_run ON {s}.artifact_runs (run_id, ref)",
        f"""CREATE TABLE {s}.artifact_tags (
            ref text COLLATE "C" NOT NULL REFERENCES {s}.artifacts ON DELETE CASCADE,
            tag text COLLATE "C" NOT NULL,
            n bigserial,
            PRIMARY KEY (ref, tag)
        )""",
        f"CREATE INDEX artifact_tags_tag ON {s}.artifact_tags (tag, ref)",
        f"""CREATE TABLE {s}.prune_records (
            n bigserial PRIMARY KEY,
            run_id text COLLATE "C" NOT NULL,
            pruned_at timestamptz NOT NULL,
            record json NOT NULL
        )""",
        f"CREATE INDEX prune_records_run ON {s}.prune_records (run_id)",
        f"""CREATE TABLE {s}.heartbeats (
            worker_id text COLLATE "C" PRIMARY KEY,
            beat_at timestamptz,
            heartbeat json NOT NULL
        )""",
        f"""CREATE TABLE {s}.log_heads (
            run_id text COLLATE "C" PRIMARY KEY,
            kept bigint NOT NULL,
            dropped bigint NOT NULL,
            next_n bigint NOT NULL
        )""",
        f"""CREATE TABLE {s}.logs (
            run_id text COLLATE "C" NOT NULL,
            n bigint NOT NULL,
            bytes bigint NOT NULL,
            entry json NOT NULL,
            PRIMARY KEY (run_id, n)
        )""",
    ]


# A migration step: an SQL statement, or a function run with the migrating connection.
Step = Union[str, Callable[[psycopg.Connection, str], None]]
MIGRATIONS: Dict[int, Callable[[str], List[Any]]] = {1: _v1, 2: _v2}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def _migration_lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"abstractrt-migrate\0{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def ensure_schema(db: Connector, schema: str, *, target: int = SCHEMA_VERSION) -> int:
    """Create or migrate the schema if it is not current; return its version.

    The common case (the schema exists and is current) is one query. ``target`` is for
    the tests of migrations: a schema left at an older version, as older code made it.
    """
    where = f"{db.location} (schema {schema})"
    s = db.session()
    try:
        with db.mapped(s, passthrough=(psycopg.errors.UndefinedTable,)):
            row = s.conn.execute(f"SELECT max(version) FROM {schema}.schema_version").fetchone()
        found = row[0] if row and row[0] is not None else 0
    except psycopg.errors.UndefinedTable:
        found = 0
    if found == target:
        return found
    if found > SCHEMA_VERSION:
        raise DataDirVersionError(where, found, SCHEMA_VERSION)
    return _migrate(db, schema, where, target)


def _migrate(db: Connector, schema: str, where: str, target: int) -> int:
    s = db.session()
    try:
        with db.mapped(s, passthrough=(psycopg.errors.InsufficientPrivilege,)):
            with s.conn.transaction():
                conn = s.conn
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_migration_lock_key(schema),))
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                conn.execute(f"""CREATE TABLE IF NOT EXISTS {schema}.schema_version (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now())""")
                row = conn.execute(f"SELECT max(version) FROM {schema}.schema_version").fetchone()
                found = row[0] if row and row[0] is not None else 0
                if found > SCHEMA_VERSION:
                    raise DataDirVersionError(where, found, SCHEMA_VERSION)
                for version in range(found + 1, target + 1):
                    for step in MIGRATIONS[version](schema):
                        if callable(step):
                            step(conn, schema)
                        else:
                            conn.execute(step)
                    conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (%s)",
                                 (version,))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreUnavailableError(
            f"cannot create the schema {schema} in {db.location}: {db.scrub(str(exc))}"
        ) from None
    except StoreIOError as exc:
        raise StoreUnavailableError(f"cannot create the schema {schema} in {db.location}: "
                                    f"{exc.message}") from None
    return max(found, target)
