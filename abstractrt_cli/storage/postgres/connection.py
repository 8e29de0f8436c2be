"""Connections to PostgreSQL: one per thread, errors mapped, passwords kept out of messages.

Every thread that uses a store gets its own connection (its *session*), opened on first
use. The session is also where the thread's run locks live (session advisory locks, see
``store.py``), so all of a thread's reads and writes go through the session that holds
its locks: if that connection dies, the locks die with it *and* every later write through
it fails — a thread can never go on writing a run whose lock it has silently lost. A dead
session is replaced only once the thread holds no more locks through it.

Errors: a server that cannot be reached, refuses the password or has no such database
is a StoreUnavailableError of one line, at most ``connect_timeout`` seconds later; a
connection lost mid-way is one too; anything else the server refuses is a StoreIOError.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Type
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg

from ...errors import StoreIOError, StoreUnavailableError

_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_SCHEMES = ("postgresql://", "postgres://")


_KEEPALIVES = ("SELECT set_config('tcp_keepalives_idle', '10', false), "
               "set_config('tcp_keepalives_interval', '5', false), "
               "set_config('tcp_keepalives_count', '3', false)")


def is_postgres_url(text: str) -> bool:
    return text.startswith(_SCHEMES)


def redact_url(url: str) -> str:
    """The URL (or libpq ``key=value`` string) without its password."""
    if not is_postgres_url(url):
        return _KV_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hosts}" if user else hosts
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if k.lower() != "password"], safe="/:,")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> Optional[str]:
    """The password written in the URL, if any (so it can be scrubbed from messages)."""
    if is_postgres_url(url):
        parts = urlsplit(url)
        if "@" in parts.netloc:
            userinfo = parts.netloc.rsplit("@", 1)[0]
            if ":" in userinfo:
                return unquote(userinfo.split(":", 1)[1]) or None
        for k, v in parse_qsl(parts.query):
            if k.lower() == "password":
                return v or None
        return None
    m = _KV_PASSWORD.search(url)
    return m.group(2).strip("'") if m else None


def _one_line(text: str) -> str:
    """libpq's message in one line, without the parts that repeat what we say anyway."""
    text = re.sub(r"^connection failed:\s*", "", text.strip())
    text = re.sub(r"\b(FATAL|ERROR):\s+", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _quote_for_url(password: str) -> str:
    return quote(password, safe="")


class Session:
    """A thread's connection and the run locks it holds (run id -> lock key)."""

    __slots__ = ("conn", "pid", "held", "dead")

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()
        self.held: Dict[str, int] = {}
        self.dead = False


class Connector:
    """Opens sessions for a store and maps driver errors to abstractrt's."""

    def __init__(self, url: str, *, connect_timeout: float, application_name: str) -> None:
        self.url = url
        self.location = redact_url(url)
        self._password = url_password(url) or os.environ.get("PGPASSWORD") or None
        # libpq counts whole seconds and waits at least 2 (fe-connect.c): say so, don't hide it.
        self.connect_timeout = max(2, int(round(connect_timeout)))
        self._application_name = application_name
        self._local = threading.local()
        # Strong references: a thread's session must not be collected (and its connection
        # left to a finalizer) when the thread ends; close() closes them all.
        self._all: Set[Session] = set()
        self._guard = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ sessions

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection:
        """A new connection; StoreUnavailableError, one line, if there is none to be had."""
        try:
            return psycopg.connect(self.url, connect_timeout=self.connect_timeout,
                                   autocommit=autocommit,
                                   application_name=self._application_name)
        except psycopg.errors.ConnectionTimeout:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self.location}: no answer within "
                f"{self.connect_timeout} s") from None
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {self.location}: {self.scrub(str(exc))}"
            ) from None

    def session(self) -> Session:
        """The calling thread's session (opened on first use, reopened after a loss)."""
        s: Optional[Session] = getattr(self._local, "session", None)
        if s is not None and s.pid == os.getpid():
            if not s.dead:
                return s
            if s.held:
                raise StoreUnavailableError(
                    f"lost the connection to PostgreSQL at {self.location} that held the lock "
                    f"of run {next(iter(s.held))}")
            _close_quietly(s.conn)
            with self._guard:
                self._all.discard(s)
        # A forked child never touches its parent's sockets: it opens its own.
        s = Session(self.connect())
        with self.mapped(s):
            # The server frees a session's locks when it sees the session gone. A killed
            # process closes its socket at once; a machine that dies or drops off the
            # network says nothing, so the server probes: gone within ~25 s, not hours.
            s.conn.execute(_KEEPALIVES)
        self._local.session = s
        with self._guard:
            self._all.add(s)
        return s

    def close(self) -> None:
        """Close every session of every thread (their locks are released with them)."""
        with self._guard:
            sessions = list(self._all)
            self._all = set()
        for s in sessions:
            if s.pid == os.getpid():
                _close_quietly(s.conn)
                s.dead = True
        self._local = threading.local()

    # ------------------------------------------------------------------ errors

    def scrub(self, text: str) -> str:
        text = _one_line(text)
        if self._password:
            text = text.replace(self._password, "***").replace(
                _quote_for_url(self._password), "***")
        return text

    @contextmanager
    def mapped(self, s: Session, *, passthrough: Tuple[Type[BaseException], ...] = ()
               ) -> Iterator[None]:
        """Run driver calls on session ``s``; turn driver errors into abstractrt's."""
        try:
            yield
        except passthrough:
            raise
        except psycopg.Error as exc:
            conn = s.conn
            if conn.closed or conn.broken:
                s.dead = True
                raise StoreUnavailableError(
                    f"lost the connection to PostgreSQL at {self.location}: "
                    f"{self.scrub(str(exc)) or type(exc).__name__}") from None
            raise StoreIOError(self.location, f"PostgreSQL refused: {self.scrub(str(exc))}"
                               ) from exc

    # ------------------------------------------------------------------ queries

    def fetchall(self, query: str, params: Optional[Any] = None) -> List[Tuple[Any, ...]]:
        s = self.session()
        with self.mapped(s):
            return s.conn.execute(query, params).fetchall()

    def fetchone(self, query: str, params: Optional[Any] = None) -> Optional[Tuple[Any, ...]]:
        s = self.session()
        with self.mapped(s):
            return s.conn.execute(query, params).fetchone()

    def execute(self, query: str, params: Optional[Any] = None) -> None:
        s = self.session()
        with self.mapped(s):
            s.conn.execute(query, params)


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a dead connection: nothing more to lose
        pass

