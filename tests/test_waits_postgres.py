"""Who may answer on PostgreSQL (PRODUCT §8): the acting actor is the database role the
server authenticated (``current_user``), not ``ABSTRACTRT_ACTOR``; ``--as NAME`` sets
the role (``SET ROLE``), which the server allows only to a member of that role.

Real ``abstractrt`` processes on a database of this module's own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any, Iterator, List
from urllib.parse import urlsplit, urlunsplit

import pytest
from pg_helpers import PG_URL, admin_connection, requires_pg
from test_waits_helpers import WAITS_WORKFLOWS

pytestmark = requires_pg

TAG = secrets.token_hex(3)
ALICE, CAROL = f"alice_{TAG}", f"carol_{TAG}"  # roles: alice answers; carol logs in


def with_user(url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", "/" + database, parts.query,
                       parts.fragment))


@pytest.fixture(scope="module")
def db() -> Iterator[dict]:
    name = f"waits_{os.getpid()}_{TAG}"
    password = secrets.token_hex(8)
    login = urlsplit(PG_URL).username
    with admin_connection() as conn:
        conn.execute(f"CREATE DATABASE {name}")
        conn.execute(f"CREATE ROLE {ALICE} NOLOGIN")
        conn.execute(f"GRANT {ALICE} TO {login}")
        conn.execute(f"CREATE ROLE {CAROL} LOGIN PASSWORD '{password}'")  # a member of nothing
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield {"url": url, "carol_url": with_user(PG_URL, CAROL, password, name), "login": login,
               "name": name}
    finally:
        with admin_connection() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {ALICE}")
            conn.execute(f"DROP ROLE IF EXISTS {CAROL}")


@pytest.fixture
def world(db, tmp_path) -> dict:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "waits.py").write_text(WAITS_WORKFLOWS, encoding="utf-8")
    return {**db, "tmp": tmp_path, "workflows": workflows}


def cli(w: dict, *args: str, actor: str = "tester", url: str = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABSTRACTRT_")}
    env.update(ABSTRACTRT_STORE=url or w["url"], ABSTRACTRT_WORKFLOWS=str(w["workflows"]),
               ABSTRACTRT_DATA_DIR=str(w["tmp"] / "unused-data-dir"), ABSTRACTRT_ACTOR=actor,
               ABSTRACTRT_CONFIG=str(w["tmp"] / "config.yaml"), COLUMNS="200", NO_COLOR="1")
    (w["tmp"] / "config.yaml").touch()
    return subprocess.run([sys.executable, "-m", "abstractrt_cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def ok(w: dict, *args: str, **kw: Any) -> Any:
    out = cli(w, *args, "--json", **kw)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return json.loads(out.stdout)


def grant_alice(w: dict) -> None:
    """What an operator does once: the role may use abstractrt's tables."""
    import psycopg

    with psycopg.connect(w["url"], autocommit=True) as conn:
        conn.execute(f"GRANT USAGE ON SCHEMA abstractrt TO {ALICE}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA abstractrt TO {ALICE}")
        conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA abstractrt TO {ALICE}")


def resumes(w: dict, rid: str) -> List[dict]:
    return [r for r in ok(w, "ledger", rid) if r.get("kind") == "resume"]


def test_the_actor_is_the_database_role_and_as_sets_it(world):
    rid = ok(world, "start", "ask", "--vars", json.dumps({"ask": {"allowed_actors": [ALICE]}}))["run_id"]
    grant_alice(world)
    before = ok(world, "ledger", rid)
    # ABSTRACTRT_ACTOR names nobody here: the server says who is connected.
    for actor in ("tester", ALICE):
        out = cli(world, "resume", rid, "--answer", "yes", actor=actor)
        assert out.returncode == 1, out.stderr
        assert out.stderr.strip() == (f"error: {world['login']} may not answer run {rid}: "
                                      f"only {ALICE} may")
    assert ok(world, "ledger", rid) == before
    run = ok(world, "resume", rid, "--answer", "yes", "--as", ALICE)
    assert run["status"] == "completed"
    assert [r["actor_id"] for r in resumes(world, rid)] == [ALICE]
    # The start record names the role that started the run, too.
    assert ok(world, "ledger", rid)[0]["actor_id"] == world["login"]


def test_as_a_role_the_login_is_not_a_member_of_is_refused_by_the_server(world):
    rid = ok(world, "start", "ask", "--vars", json.dumps({"ask": {"allowed_actors": [ALICE]}}))["run_id"]
    grant_alice(world)
    import psycopg

    with psycopg.connect(world["url"], autocommit=True) as conn:  # carol may read and write
        conn.execute(f"GRANT USAGE ON SCHEMA abstractrt TO {CAROL}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA abstractrt TO {CAROL}")
    before = ok(world, "ledger", rid)
    out = cli(world, "resume", rid, "--answer", "yes", "--as", ALICE, url=world["carol_url"])
    assert out.returncode == 1, out.stderr
    assert f'permission denied to set role "{ALICE}"' in out.stderr
    assert f"--as {ALICE} needs a database role of that name" in out.stderr
    out = cli(world, "resume", rid, "--answer", "yes", url=world["carol_url"])
    assert out.returncode == 1 and f"{CAROL} may not answer run {rid}" in out.stderr, out.stderr
    assert ok(world, "ledger", rid) == before
    out = cli(world, "waiting", "--as", f"nobody_{TAG}")
    assert out.returncode == 1 and "does not exist" in out.stderr, out.stderr


def test_the_mailbox_and_dry_runs_on_postgresql(world):
    key = f"order:{secrets.token_hex(3)}"
    rid = ok(world, "start", "event", "--no-tick", "--vars",
             json.dumps({"wait": {"wait_key": key, "timeout": "2020-01-01T00:00:00Z"}}))["run_id"]
    doc = ok(world, "emit", key, "--set", "paid=true", "--ttl", "1h")
    assert doc["delivered"] == [] and doc["event"]["actor_id"] == world["login"]
    assert ok(world, "tick", rid)["output"]["event"] == {"paid": True}  # before its deadline acts
    (event,) = ok(world, "events", "--key", key)
    assert event["received_by"] == [rid]
    (resume,) = resumes(world, rid)
    assert resume["result"]["event_id"] == event["event_id"]
    assert ok(world, "emit", key, "--payload", "{}", "--no-keep") == {"event": None, "delivered": [],
                                                                      "busy": []}
    assert ok(world, "events", "--prune") == {"pruned": 0}
    late = ok(world, "start", "ask", "--vars", json.dumps({"ask": {"timeout": "2020-01-01T00:00:00Z"}}))
    assert {"run_id": late["run_id"], "reason": "deadline due"} in ok(world, "tick", "--all", "--dry-run")
    assert ok(world, "show", late["run_id"])["status"] == "waiting"
