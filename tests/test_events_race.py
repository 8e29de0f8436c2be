"""An emit that meets a run which already took the same event from the mailbox, made
deterministic: between ``emit`` keeping its event and locking the run, another process
(here a second runtime over the same stores) ticks the run, which takes the event from
the mailbox and loops back to a wait on the same key. The emit must not hand it the
event a second time (PRODUCT §8: each run receives a given event at most once).

``test_events_concurrency.py`` meets the same race with real processes.
"""

from __future__ import annotations


from abstractrt_cli import Effect, RunStatus, StepPlan, WorkflowSpec
from abstractrt_cli.storage.memory_events import InMemoryEventStore



def collect(run, ctx):
    got = run.vars.setdefault("got", [])
    if "last" in run.vars:
        got.append(run.vars.pop("last"))
    if len(got) >= 3:
        return StepPlan("collect", complete_output={"got": got})
    return StepPlan("collect", effect=Effect("wait_event", {"wait_key": "k"}, "last"),
                    next_node="collect")


LOOP = WorkflowSpec("loop", "collect", {"collect": collect})


class TickAfterPut:
    """An event store that lets "another process" tick a run right after the first event
    is kept."""

    def __init__(self, inner, on_put):
        self._inner, self._on_put = inner, on_put

    def put(self, event):
        self._inner.put(event)
        on_put, self._on_put = self._on_put, None
        if on_put is not None:
            on_put()

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_emit_does_not_deliver_an_event_the_run_took_from_the_mailbox_meanwhile(make_runtime, registry, clock):
    from abstractrt_cli import InMemoryLedgerStore, InMemoryRunStore

    registry.register(LOOP)
    runs, ledger, events = InMemoryRunStore(), InMemoryLedgerStore(), InMemoryEventStore()
    other = make_runtime(run_store=runs, ledger_store=ledger, event_store=events)
    rid = other.start(workflow=LOOP)
    assert other.tick(run_id=rid).status is RunStatus.WAITING
    clock.advance(1)
    emitter = make_runtime(run_store=runs, ledger_store=ledger,
                           event_store=TickAfterPut(events, lambda: other.tick(run_id=rid)))
    report = emitter.emit("k", {"n": 1})
    run = other.get_state(rid)
    assert run.vars["got"] == [{"n": 1}], "the event reached the run twice"
    assert [r for r in report.delivered if r.run_id == rid] == []  # it had it already
    clock.advance(1)
    assert emitter.emit("k", {"n": 2}).delivered[0].vars["got"] == [{"n": 1}, {"n": 2}]
    ids = [r["result"].get("event_id") for r in other.get_ledger(rid) if r["kind"] == "resume"]
    assert len(ids) == len(set(ids)) == 2
