"""The PostgreSQL server of the tests: its URL, a fresh schema per test, stores over it.

The server is the one ``scripts/pg.sh run -- ...`` starts (CI always does): its URL is in
``ABSTRACTRT_TEST_PG_URL``. Without it the PostgreSQL tests are skipped, saying why.
Each test gets a schema of its own (``open_postgres_stores(url, schema=...)``), dropped
afterwards, so tests never see each other's runs, locks or wake-ups.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List

import pytest

PG_URL = os.environ.get("ABSTRACTRT_TEST_PG_URL", "")
PG_ASSETS = Path(__file__).parent / "assets" / "postgres"

requires_pg = pytest.mark.skipif(
    not PG_URL,
    reason="ABSTRACTRT_TEST_PG_URL is not set: run the tests through "
           "`bash scripts/pg.sh run -- bash scripts/test.sh` (what CI does)")


def new_schema_name() -> str:
    return f"t_{os.getpid()}_{secrets.token_hex(4)}"


def admin_connection() -> Any:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """The URL of a database of its own on the test server (for commands that use the
    store's default schema), dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with admin_connection() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drop_schema(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def sql(query: str, params: Any = None) -> List[tuple]:
    """Run one statement on a connection of its own; the rows it returns, if any."""
    with admin_connection() as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def open_stores(schema: str, **kw: Any) -> Any:
    from abstractrt_cli.storage.postgres import open_postgres_stores

    return open_postgres_stores(PG_URL, schema=schema, **kw)


# Test modules import these as ``pg_schema_fixture``/``pg_stores_fixture`` and ask for
# ``pg_schema``/``pg_stores``: a fixture is known by its ``name``, and the parameter then
# shadows no import.
@pytest.fixture(name="pg_schema")
def pg_schema_fixture() -> Iterator[str]:
    """A schema of this test's own, dropped afterwards."""
    name = new_schema_name()
    try:
        yield name
    finally:
        drop_schema(name)


@pytest.fixture(name="pg_stores")
def pg_stores_fixture(pg_schema: str) -> Iterator[Any]:
    """A ``Stores`` bundle over a fresh schema, closed afterwards."""
    stores = open_stores(pg_schema)
    try:
        yield stores
    finally:
        stores.close()


def asset_cmd(script: str, *args: str) -> List[str]:
    return [sys.executable, str(PG_ASSETS / script), *args]
