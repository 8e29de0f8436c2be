"""The event mailbox on PostgreSQL: the store itself, and the kernel's emit over it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kernel_helpers import finish
from pg_helpers import requires_pg, sql
from pg_helpers import pg_schema_fixture, pg_stores_fixture  # noqa: F401  (fixtures)

from abstractrt_cli import Effect, RunStatus, StepPlan, WorkflowSpec
from abstractrt_cli.core.models import KeptEvent
from abstractrt_cli.errors import StoreIOError

pytestmark = requires_pg

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def event(n: int, key: str = "order:1", *, at: int = 0, ttl: int = 3600, **kw: Any) -> KeptEvent:
    emitted = T0 + timedelta(seconds=at)
    return KeptEvent(event_id=f"ev-{n}", key=key, payload={"n": n, "text": "héllo ✓", "f": 1e16},
                     emitted_at=emitted.isoformat(),
                     expires_at=(emitted + timedelta(seconds=ttl)).isoformat(), **kw)


def test_oldest_unreceived_by_key_time_and_receipt(pg_stores: Any) -> None:
    ev = pg_stores.events
    for e in (event(2, at=20), event(1, at=10), event(3, key="order:2", at=5),
              event(4, at=30, ttl=1)):
        ev.put(e)
    now = T0 + timedelta(seconds=40)  # ev-4 has expired by then
    got = ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0, now=now)
    assert got == event(1, at=10)
    assert ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0 + timedelta(seconds=10),
                                now=now).event_id == "ev-2"  # strictly after
    assert ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0, now=now,
                                exclude=["ev-1"]).event_id == "ev-2"
    ev.mark_received("ev-1", "r1")
    ev.mark_received("ev-1", "r1")  # idempotent
    ev.mark_received("ev-1", "r0")
    assert ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0, now=now).event_id == "ev-2"
    assert ev.oldest_unreceived("order:1", run_id="r9", emitted_after=T0, now=now).event_id == "ev-1"
    assert ev.oldest_unreceived("nothing", run_id="r1", emitted_after=T0, now=now) is None
    listed = ev.list_events()
    assert [e.event_id for e in listed] == ["ev-3", "ev-1", "ev-2", "ev-4"]
    assert listed[1].received_by == ["r1", "r0"] and listed[1].payload["f"] == 1e16
    assert [e.event_id for e in ev.list_events(key_pattern="order:[2]")] == ["ev-3"]
    assert [e.event_id for e in ev.list_events(key_pattern="*:1")] == ["ev-1", "ev-2", "ev-4"]
    assert ev.prune(now=now) == 1
    assert [e.event_id for e in ev.list_events()] == ["ev-3", "ev-1", "ev-2"]


def test_put_keeps_receipts_and_a_corrupt_row_names_itself(pg_stores: Any, pg_schema: str) -> None:
    ev = pg_stores.events
    ev.put(event(1, received_by=["a", "b"]))
    assert ev.list_events()[0].received_by == ["a", "b"]
    sql(f"UPDATE {pg_schema}.events SET event = '[1]' WHERE event_id = 'ev-1'")
    with pytest.raises(StoreIOError) as ei:
        ev.list_events()
    assert "ev-1" in str(ei.value) and ei.value.code == "corrupt_event"


def waiter(key: str = "order:1") -> WorkflowSpec:
    return WorkflowSpec("w", "a", {
        "a": lambda run, ctx: StepPlan("a", effect=Effect("wait_event", {"wait_key": key}, "evt"),
                                       next_node="end"),
        "end": finish()})


def test_emit_over_postgres(pg_stores: Any, make_runtime: Any, registry: Any, clock: Any) -> None:
    registry.register(waiter())
    rt = make_runtime(run_store=pg_stores.runs, ledger_store=pg_stores.ledger,
                      event_store=pg_stores.events)
    early = rt.start(workflow=registry.get("w"))  # created before the emit, not ticked
    clock.advance(1)
    report = rt.emit("order:1", {"paid": True})
    assert report.delivered == [] and report.event is not None
    run = rt.tick(run_id=early)  # reaches its wait and finds the kept event
    assert run.status is RunStatus.COMPLETED and run.vars["evt"] == {"paid": True}
    assert pg_stores.events.list_events()[0].received_by == [early]

    waiting = rt.start(workflow=registry.get("w"))
    assert rt.tick(run_id=waiting).status is RunStatus.WAITING
    clock.advance(1)
    (done,) = rt.emit("order:1", {"paid": "again"}).delivered
    assert done.run_id == waiting and done.status is RunStatus.COMPLETED
    assert done.vars["evt"] == {"paid": "again"}
    late = rt.start(workflow=registry.get("w"))  # created after both: receives neither
    assert rt.tick(run_id=late).status is RunStatus.WAITING
