"""The PostgreSQL store: runs and ledgers in the schema ``abstractrt`` of one database.

What it is for: several processes, on one machine or many, working on the same runs.
The lock of a run is a PostgreSQL session advisory lock, so it holds across machines and
is gone the moment its holder's connection dies (``kill -9`` included). A checkpoint and
the ledger records it covers commit in one statement (``commit(records, run)``).

psycopg 3 is imported here only, and only when a store is opened: without the extra
``abstractrt-cli[postgres]`` installed, opening one is a clear StoreUnavailableError.

Layout of the package: ``connection`` (URLs, connections per thread, error mapping),
``schema`` (tables, indexes, migrations, the NOTIFY trigger), ``store`` (the protocols).
"""

from __future__ import annotations

from typing import Any

from ...errors import StoreUnavailableError
from ..base import Stores

__all__ = ["open_postgres_stores", "redact_url", "DEFAULT_SCHEMA", "EXTRA"]

DEFAULT_SCHEMA = "abstractrt"
EXTRA = "abstractrt-cli[postgres]"


def redact_url(url: str) -> str:
    """The URL without its password (for messages, ``store info`` and ``location``)."""
    from .connection import redact_url as _redact

    return _redact(url)


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StoreUnavailableError(
            "the PostgreSQL store needs psycopg 3, which is not installed; "
            f"install the extra {EXTRA}") from None


def open_postgres_stores(url: str, *, connect_timeout: float = 5.0,
                         schema: str = DEFAULT_SCHEMA, **options: Any) -> Stores:
    """Connect, create or migrate the schema if needed, and return the store bundle.

    ``schema`` is for tests and for keeping several independent stores in one database;
    everything else uses the default. ``options`` go to ``PostgresDb`` (see there).
    Raises StoreUnavailableError (server unreachable, bad credentials, no such database,
    no psycopg) within ``connect_timeout`` seconds, and DataDirVersionError for a schema
    written by a newer abstractrt.
    """
    _require_psycopg()
    from .store import open_stores

    return open_stores(url, connect_timeout=connect_timeout, schema=schema, **options)
