"""The contract every run store / ledger store pair honours (memory, files, any later one).

This is the one place that says what a store must do. To run it against a new store:
subclass ``StoreContract`` (and ``ThreadSafetyContract`` if one store instance may be
shared by threads) and provide ONE ``kit`` fixture returning a ``StoreKit``:

- ``run_store``, ``ledger_store``: the two stores, empty;
- ``hold_lock_elsewhere(run_id) -> LockHolder``: make *someone else* hold a run's lock
  until ``release()`` (a thread for an in-process store, a real process for a durable
  one);
- ``reopen() -> StoreKit``: the stores as a new process would open them (same data);
- ``capabilities``: what the kit can do that not every store allows; a test that needs
  one the kit lacks is skipped, never failed:

  ``"corruptible"``  ``corrupt_run(run_id)`` makes a stored run unreadable (a file store's
                     garbage file; a database cannot hold a torn row);
  ``"tear_ledger"``  ``tear_ledger(run_id, junk)`` leaves ``junk`` at the end of a run's
                     ledger, as a write cut short by a crash would;
  ``"deadlines"``    the due queries count the ``deadline`` of a person's or an event's
                     wait (``rules.due_at``);
  ``"events"``, ``"snapshots"``, ``"artifacts"``, ``"audit"``, ``"logs"``: the kit's
                     ``stores`` (a ``Stores`` bundle, also what ``reopen()`` gives)
                     has that part;
  ``"admin"``        its run store is also a ``RunAdmin`` (``iter_run_ids``,
                     ``delete_run``) with ``import_run(run, records)``.

The kit's ``stores`` is the whole bundle (``StoreKit(runs, ledger, stores)``); a kit made
of a run and a ledger store only gets a bundle of those two.

Everything else a test needs it builds from the protocols in ``storage/base.py``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, FrozenSet, List, Optional

import pytest

from abstractrt_cli.core.models import (
    KeptEvent,
    RecordKind,
    RunState,
    RunStatus,
    StepRecord,
    StepStatus,
    WaitReason,
    WaitState,
)
from abstractrt_cli.errors import (
    ArtifactNotFoundError,
    CorruptRunError,
    InvalidRunIdError,
    PayloadError,
    RunBusyError,
    SnapshotExistsError,
    StoreIOError,
)
from abstractrt_cli.storage.base import LOG_CAP, Stores
from abstractrt_cli.storage.chain import verify_ledger_chain

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.isoformat()


class LockHolder:
    """Someone other than the caller holding a run's lock, until ``release()``."""

    def release(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class StoreKit:
    """What a contract test needs from one kind of store (see the module docstring)."""

    capabilities: FrozenSet[str] = frozenset()

    def __init__(self, run_store: Any, ledger_store: Any, stores: Optional[Stores] = None) -> None:
        self.run_store = run_store
        self.ledger_store = ledger_store
        self.stores = stores if stores is not None else Stores(
            runs=run_store, ledger=ledger_store, kind="test", location="test")

    def hold_lock_elsewhere(self, run_id: str) -> LockHolder:
        raise NotImplementedError

    def reopen(self) -> "StoreKit":
        """The stores as a fresh process would open them (same data)."""
        raise NotImplementedError

    def corrupt_run(self, run_id: str) -> None:
        """(capability "corruptible") Make the stored run ``run_id`` unreadable."""
        raise NotImplementedError

    def tear_ledger(self, run_id: str, junk: bytes) -> None:
        """(capability "tear_ledger") Leave ``junk`` after the last record of a ledger."""
        raise NotImplementedError


def needs(kit: StoreKit, capability: str) -> None:
    """Skip the calling test unless the kit can do ``capability``."""
    if capability not in kit.capabilities:
        pytest.skip(f"this store's kit lacks {capability!r}")


class ThreadLockHolder(LockHolder):
    """Holds a lock from another thread (for in-process stores)."""

    def __init__(self, store: Any, run_id: str) -> None:
        self._locked = threading.Event()
        self._release = threading.Event()
        self._errors: List[BaseException] = []

        def hold() -> None:
            try:
                with store.lock(run_id, timeout=5):
                    self._locked.set()
                    self._release.wait(30)
            except BaseException as exc:  # surfaced by the test through _errors
                self._errors.append(exc)
                self._locked.set()

        self._thread = threading.Thread(target=hold, daemon=True)
        self._thread.start()
        assert self._locked.wait(10), "helper thread never took the lock"
        assert not self._errors, self._errors

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def make_run(run_id: str, *, workflow_id: str = "wf", status: RunStatus = RunStatus.RUNNING,
             created: datetime = T0, waiting: Optional[WaitState] = None,
             parent_run_id: Optional[str] = None, **vars: Any) -> RunState:
    return RunState(run_id=run_id, workflow_id=workflow_id, status=status, current_node="n1",
                    vars=dict(vars), waiting=waiting, created_at=iso(created),
                    updated_at=iso(created), parent_run_id=parent_run_id)


def user_wait(key: str = "k") -> WaitState:
    return WaitState(reason=WaitReason.USER, wait_key=key, prompt="ok?", choices=["yes", "no"],
                     allow_free_text=False, result_key="answer", resume_to_node="n2")


def until_wait(until: str) -> WaitState:
    return WaitState(reason=WaitReason.UNTIL, until=until, resume_to_node="n2")


def record(run_id: str, n: int, **kw: Any) -> StepRecord:
    return StepRecord(run_id=run_id, step_id=f"s{n}", node_id=f"node{n}",
                      status=kw.pop("status", StepStatus.COMPLETED),
                      effect={"type": "noop", "payload": {"n": n}, "result_key": None},
                      result={"n": n, "text": "héllo ✓"}, idempotency_key=f"key{n}",
                      kind=kw.pop("kind", RecordKind.EFFECT), **kw)


def deadline_wait(reason: WaitReason, deadline: str) -> WaitState:
    return WaitState(reason=reason, wait_key="dk", prompt="ok?", deadline=deadline,
                     on_timeout="fail", resume_to_node="n2")


def kept_event(n: int, key: str = "order:1", *, at: int = 0, ttl: int = 3600,
               **kw: Any) -> KeptEvent:
    emitted = T0 + timedelta(seconds=at)
    return KeptEvent(event_id=f"ev-{n}", key=key, payload={"n": n, "text": "héllo ✓", "f": 1e16},
                     emitted_at=emitted.isoformat(),
                     expires_at=(emitted + timedelta(seconds=ttl)).isoformat(), **kw)


def snapshot(run_id: str, name: str, *, at: int = 0, tags: Optional[List[str]] = None
             ) -> dict:
    state = make_run(run_id, status=RunStatus.WAITING, waiting=user_wait(), step=at).to_jsonable()
    return {"run_id": run_id, "name": name, "tags": tags or [], "state": state,
            "ledger_count": at, "ledger_head": "cd" * 32,
            "created_at": iso(T0 + timedelta(minutes=at)), "actor_id": "alice"}


def log_entry(seq: int, text: str, *, stream: str = "stdout") -> dict:
    return {"at": iso(T0 + timedelta(seconds=seq)), "node_id": f"node{seq}", "effect_seq": seq,
            "stream": stream, "text": text}


def ids(runs: List[RunState]) -> List[str]:
    return [r.run_id for r in runs]


class StoreContract:
    """Behaviour shared by every store pair. Subclasses provide the ``kit`` fixture."""

    # ------------------------------------------------------------------ runs: save/load

    def test_save_load_round_trip(self, kit: StoreKit) -> None:
        run = make_run("run-1", waiting=user_wait(), status=RunStatus.WAITING,
                       parent_run_id="parent-1", nested={"a": [1, 2, {"b": None}]},
                       text="héllo ✓")
        run.output = {"x": 1}
        run.effect_seq, run.ledger_count, run.ledger_head = 3, 4, "ab" * 32
        run.pending_retry = {"idempotency_key": "k", "attempt": 2}
        kit.run_store.save(run)
        loaded = kit.run_store.load("run-1")
        assert loaded == run
        assert loaded is not run
        loaded.vars["nested"]["a"].append(3)  # a copy: changing it changes nothing stored
        assert kit.run_store.load("run-1") == run
        assert kit.reopen().run_store.load("run-1") == run

    def test_load_missing_is_none(self, kit: StoreKit) -> None:
        assert kit.run_store.load("no-such-run") is None

    def test_save_replaces(self, kit: StoreKit) -> None:
        run = make_run("run-1", step=1)
        kit.run_store.save(run)
        run.vars["step"] = 2
        run.status = RunStatus.COMPLETED
        run.output = {"done": True}
        kit.run_store.save(run)
        assert kit.run_store.load("run-1") == run
        assert kit.reopen().run_store.load("run-1") == run

    # ------------------------------------------------------------------ locks

    def test_lock_is_exclusive_and_try_lock_fails_at_once(self, kit: StoreKit) -> None:
        holder = kit.hold_lock_elsewhere("run-1")
        try:
            t = time.monotonic()
            with pytest.raises(RunBusyError) as ei:
                with kit.run_store.lock("run-1", timeout=0):
                    pytest.fail("got a lock someone else holds")
            assert time.monotonic() - t < 0.5  # timeout=0 tries once
            assert ei.value.run_id == "run-1" and ei.value.exit_code == 4
            with kit.run_store.lock("run-2", timeout=0):  # other runs are not affected
                pass
        finally:
            holder.release()
        with kit.run_store.lock("run-1", timeout=5):
            pass

    def test_lock_timeout_expires(self, kit: StoreKit) -> None:
        holder = kit.hold_lock_elsewhere("run-1")
        try:
            t = time.monotonic()
            with pytest.raises(RunBusyError):
                with kit.run_store.lock("run-1", timeout=0.3):
                    pytest.fail("got a lock someone else holds")
            assert 0.25 <= time.monotonic() - t < 3
        finally:
            holder.release()

    def test_lock_waits_for_release(self, kit: StoreKit) -> None:
        holder = kit.hold_lock_elsewhere("run-1")
        timer = threading.Timer(0.3, holder.release)
        timer.start()
        try:
            t = time.monotonic()
            with kit.run_store.lock("run-1", timeout=10):
                waited = time.monotonic() - t
            assert waited >= 0.2
        finally:
            timer.join()

    def test_lock_is_released_on_error(self, kit: StoreKit) -> None:
        with pytest.raises(ValueError):
            with kit.run_store.lock("run-1", timeout=1):
                raise ValueError("boom")
        with kit.run_store.lock("run-1", timeout=0):
            pass

    def test_same_thread_cannot_take_a_held_lock_again(self, kit: StoreKit) -> None:
        with kit.run_store.lock("run-1", timeout=1):
            with pytest.raises(RunBusyError):
                with kit.run_store.lock("run-1", timeout=0):
                    pass

    # ------------------------------------------------------------------ list_runs

    def _population(self, kit: StoreKit) -> None:
        rs = kit.run_store
        specs = [
            ("r0", "alpha", RunStatus.COMPLETED, None),
            ("r1", "alpha", RunStatus.RUNNING, None),
            ("r2", "beta", RunStatus.WAITING, user_wait("key-a")),
            ("r3", "alpha", RunStatus.WAITING, user_wait("key-b")),
            ("r4", "beta", RunStatus.WAITING, WaitState(reason=WaitReason.EVENT, wait_key="key-a")),
            ("r5", "beta", RunStatus.FAILED, None),
            ("r6", "alpha", RunStatus.WAITING, until_wait(iso(T0 + timedelta(days=1)))),
            ("r7", "gamma", RunStatus.CANCELLED, None),
        ]
        # Saved in an order unrelated to creation time, which is what lists sort on.
        for i in (3, 0, 7, 5, 1, 6, 2, 4):
            rid, wf, st, w = specs[i]
            rs.save(make_run(rid, workflow_id=wf, status=st, waiting=w,
                             created=T0 + timedelta(minutes=i)))

    def test_list_runs_newest_first(self, kit: StoreKit) -> None:
        self._population(kit)
        assert ids(kit.run_store.list_runs()) == ["r7", "r6", "r5", "r4", "r3", "r2", "r1", "r0"]
        assert ids(kit.run_store.list_runs(limit=3)) == ["r7", "r6", "r5"]
        assert kit.run_store.list_runs(limit=0) == []

    @pytest.mark.parametrize("query, expected", [
        ({"status": RunStatus.WAITING}, ["r6", "r4", "r3", "r2"]),
        ({"status": RunStatus.RUNNING}, ["r1"]),
        ({"status": RunStatus.COMPLETED}, ["r0"]),
        ({"workflow_id": "alpha"}, ["r6", "r3", "r1", "r0"]),
        ({"workflow_id": "nope"}, []),
        ({"status": RunStatus.WAITING, "workflow_id": "beta"}, ["r4", "r2"]),
        ({"wait_reason": WaitReason.USER}, ["r3", "r2"]),
        ({"status": RunStatus.WAITING, "wait_reason": WaitReason.UNTIL}, ["r6"]),
        ({"wait_key": "key-a"}, ["r4", "r2"]),
        ({"wait_key": "key-a", "wait_reason": WaitReason.EVENT}, ["r4"]),
        ({"status": RunStatus.WAITING, "workflow_id": "alpha", "limit": 1}, ["r6"]),
        ({"status": RunStatus.RUNNING, "wait_reason": WaitReason.USER}, []),
    ])
    def test_list_runs_filters(self, kit: StoreKit, query: dict, expected: List[str]) -> None:
        self._population(kit)
        assert ids(kit.run_store.list_runs(**query)) == expected
        assert ids(kit.reopen().run_store.list_runs(**query)) == expected

    def test_list_runs_follows_status_changes(self, kit: StoreKit) -> None:
        rs = kit.run_store
        run = make_run("r1")
        rs.save(run)
        assert ids(rs.list_runs(status=RunStatus.RUNNING)) == ["r1"]
        run.status, run.waiting = RunStatus.WAITING, user_wait("k1")
        rs.save(run)
        assert ids(rs.list_runs(status=RunStatus.RUNNING)) == []
        assert ids(rs.list_runs(wait_key="k1")) == ["r1"]
        run.waiting = user_wait("k2")  # same status, another wait key
        rs.save(run)
        assert ids(rs.list_runs(wait_key="k1")) == []
        assert ids(rs.list_runs(wait_key="k2")) == ["r1"]
        run.status, run.waiting = RunStatus.COMPLETED, None
        rs.save(run)
        assert ids(rs.list_runs(status=RunStatus.WAITING)) == []
        assert ids(rs.list_runs(wait_key="k2")) == []
        assert ids(kit.reopen().run_store.list_runs(status=RunStatus.COMPLETED)) == ["r1"]

    def test_list_runs_returns_copies(self, kit: StoreKit) -> None:
        kit.run_store.save(make_run("r1", x=1))
        kit.run_store.list_runs()[0].vars["x"] = 2
        assert kit.run_store.load("r1").vars["x"] == 1

    # ------------------------------------------------------------------ due query

    def test_due_wait_until_compares_real_times(self, kit: StoreKit) -> None:
        rs = kit.run_store
        # 12:00+05:00 is 07:00Z: due at 07:30Z although the string sorts after it.
        rs.save(make_run("tz-plus5", status=RunStatus.WAITING,
                         waiting=until_wait("2030-01-01T12:00:00+05:00")))
        rs.save(make_run("zulu-early", status=RunStatus.WAITING,
                         waiting=until_wait("2030-01-01T06:00:00Z")))
        rs.save(make_run("zulu-late", status=RunStatus.WAITING,
                         waiting=until_wait("2030-01-01T08:00:00Z")))
        rs.save(make_run("exact", status=RunStatus.WAITING,
                         waiting=until_wait("2030-01-01T07:30:00+00:00")))
        # Not candidates: not waiting on time, or not waiting at all.
        rs.save(make_run("user", status=RunStatus.WAITING, waiting=user_wait()))
        rs.save(make_run("done", status=RunStatus.COMPLETED,
                         waiting=until_wait("2030-01-01T00:00:00Z")))
        now = datetime(2030, 1, 1, 7, 30, tzinfo=timezone.utc)
        assert ids(rs.list_due_wait_until(now=now)) == ["zulu-early", "tz-plus5", "exact"]
        assert ids(rs.list_due_wait_until(now=now, limit=2)) == ["zulu-early", "tz-plus5"]
        # ``now`` in another zone is the same instant.
        now_plus2 = now.astimezone(timezone(timedelta(hours=2)))
        assert ids(kit.reopen().run_store.list_due_wait_until(now=now_plus2)) == [
            "zulu-early", "tz-plus5", "exact"]
        later = datetime(2030, 1, 1, 8, 0, tzinfo=timezone.utc)
        assert ids(rs.list_due_wait_until(now=later)) == [
            "zulu-early", "tz-plus5", "exact", "zulu-late"]
        assert rs.list_due_wait_until(now=datetime(2029, 1, 1, tzinfo=timezone.utc)) == []

    def test_due_run_leaves_the_due_list_when_resumed(self, kit: StoreKit) -> None:
        rs = kit.run_store
        run = make_run("t1", status=RunStatus.WAITING, waiting=until_wait("2030-01-01T00:00:00Z"))
        rs.save(run)
        now = datetime(2030, 6, 1, tzinfo=timezone.utc)
        assert ids(rs.list_due_wait_until(now=now)) == ["t1"]
        run.status, run.waiting = RunStatus.RUNNING, None
        rs.save(run)
        assert rs.list_due_wait_until(now=now) == []
        assert kit.reopen().run_store.list_due_wait_until(now=now) == []

    # ------------------------------------------------------------------ children, prefix

    def test_list_children(self, kit: StoreKit) -> None:
        rs = kit.run_store
        rs.save(make_run("parent"))
        rs.save(make_run("kid-b", parent_run_id="parent", status=RunStatus.COMPLETED,
                         created=T0 + timedelta(seconds=2)))
        rs.save(make_run("kid-a", parent_run_id="parent", status=RunStatus.WAITING,
                         waiting=user_wait(), created=T0 + timedelta(seconds=1)))
        rs.save(make_run("kid-c", parent_run_id="parent", created=T0 + timedelta(seconds=3)))
        rs.save(make_run("other-kid", parent_run_id="other"))
        assert ids(rs.list_children(parent_run_id="parent")) == ["kid-a", "kid-b", "kid-c"]
        done = rs.list_children(parent_run_id="parent", status=RunStatus.COMPLETED)
        assert ids(done) == ["kid-b"]
        assert ids(kit.reopen().run_store.list_children(
            parent_run_id="parent", status=RunStatus.WAITING)) == ["kid-a"]
        assert rs.list_children(parent_run_id="kid-a") == []

    def test_match_prefix(self, kit: StoreKit) -> None:
        rs = kit.run_store
        for rid in ("abc123", "abc124", "abd000", "xyz", "ab"):
            rs.save(make_run(rid))
        assert rs.match_prefix("abc") == ["abc123", "abc124"]
        assert rs.match_prefix("ab") == ["ab", "abc123", "abc124", "abd000"]
        assert rs.match_prefix("ab", limit=2) == ["ab", "abc123"]
        assert rs.match_prefix("abc123") == ["abc123"]
        assert rs.match_prefix("q") == []
        assert kit.reopen().run_store.match_prefix("abd") == ["abd000"]

    # ------------------------------------------------------------------ newer queries

    def test_list_runs_by_parent(self, kit: StoreKit) -> None:
        rs = kit.run_store
        rs.save(make_run("p1"))
        rs.save(make_run("k1", parent_run_id="p1", created=T0 + timedelta(minutes=1)))
        rs.save(make_run("k2", parent_run_id="p1", status=RunStatus.WAITING,
                         waiting=user_wait("kk"), created=T0 + timedelta(minutes=2)))
        rs.save(make_run("k3", parent_run_id="p2", created=T0 + timedelta(minutes=3)))
        for store in (rs, kit.reopen().run_store):
            assert ids(store.list_runs(parent_run_id="p1")) == ["k2", "k1"]
            assert ids(store.list_runs(parent_run_id="p1", status=RunStatus.WAITING)) == ["k2"]
            assert ids(store.list_runs(parent_run_id="p1", wait_key="kk")) == ["k2"]
            assert ids(store.list_runs(parent_run_id="p1", limit=1)) == ["k2"]
            assert store.list_runs(parent_run_id="nobody") == []

    def test_list_runs_created_since_is_inclusive(self, kit: StoreKit) -> None:
        rs = kit.run_store
        for i in range(5):
            rs.save(make_run(f"c{i}", created=T0 + timedelta(hours=i),
                             status=RunStatus.COMPLETED if i % 2 else RunStatus.RUNNING))
        since = T0 + timedelta(hours=2)
        for store in (rs, kit.reopen().run_store):
            assert ids(store.list_runs(created_since=since)) == ["c4", "c3", "c2"]
            # Another zone, the same instant.
            plus2 = since.astimezone(timezone(timedelta(hours=2)))
            assert ids(store.list_runs(created_since=plus2)) == ["c4", "c3", "c2"]
            assert ids(store.list_runs(created_since=since, status=RunStatus.COMPLETED)) == ["c3"]
            assert ids(store.list_runs(created_since=since, limit=2)) == ["c4", "c3"]
            assert store.list_runs(created_since=T0 + timedelta(days=1)) == []

    def test_earliest_due(self, kit: StoreKit) -> None:
        rs = kit.run_store
        assert rs.earliest_due() is None
        rs.save(make_run("u", status=RunStatus.WAITING, waiting=user_wait()))
        rs.save(make_run("done", status=RunStatus.COMPLETED,
                         waiting=until_wait("2000-01-01T00:00:00Z")))
        assert rs.earliest_due() is None  # only runs waiting on time count
        late = make_run("late", status=RunStatus.WAITING,
                        waiting=until_wait("2030-01-02T00:00:00+00:00"))
        rs.save(late)
        # 2030-01-01T12:00+05:00 is 07:00Z: earlier than the string order says.
        rs.save(make_run("early", status=RunStatus.WAITING,
                         waiting=until_wait("2030-01-01T12:00:00+05:00")))
        want = datetime(2030, 1, 1, 7, 0, tzinfo=timezone.utc)
        assert rs.earliest_due() == want
        assert kit.reopen().run_store.earliest_due() == want
        early = rs.load("early")
        early.status, early.waiting = RunStatus.RUNNING, None
        rs.save(early)
        assert rs.earliest_due() == datetime(2030, 1, 2, tzinfo=timezone.utc)
        late.status, late.waiting = RunStatus.COMPLETED, None
        rs.save(late)
        assert rs.earliest_due() is None

    @pytest.mark.parametrize("good", ["run-1", "0a8f1e2c-5b4d-4c3e-9f1a-2b3c4d5e6f70", "A.b_c-9"])
    def test_validate_run_id_accepts_ordinary_ids(self, kit: StoreKit, good: str) -> None:
        assert kit.run_store.validate_run_id(good) == good

    @pytest.mark.parametrize("bad", ["", "a/b", "a\0b", None, 7])
    def test_validate_run_id_refuses(self, kit: StoreKit, bad: Any) -> None:
        with pytest.raises(InvalidRunIdError):
            kit.run_store.validate_run_id(bad)

    def test_corrupt_run_names_itself(self, kit: StoreKit) -> None:
        needs(kit, "corruptible")
        kit.run_store.save(make_run("sick"))
        kit.corrupt_run("sick")
        with pytest.raises(CorruptRunError) as ei:
            kit.run_store.load("sick")
        assert ei.value.run_id == "sick"

    def test_limit_counts_corrupt_runs(self, kit: StoreKit) -> None:
        needs(kit, "corruptible")
        rs = kit.run_store
        for i in range(4):
            rs.save(make_run(f"r{i}", created=T0 + timedelta(minutes=i)))
        kit.corrupt_run("r3")
        seen: List[CorruptRunError] = []
        got = rs.list_runs(limit=2, on_corrupt=seen.append)
        assert len(got) + len(seen) == 2 and len(seen) == 1  # "--limit 2" shows two lines
        assert seen[0].run_id == "r3" and ids(got) == ["r2"]
        seen.clear()
        assert ids(rs.list_runs(on_corrupt=seen.append)) == ["r2", "r1", "r0"]
        assert [e.run_id for e in seen] == ["r3"]  # once per query
        with pytest.raises(CorruptRunError):
            rs.list_runs()  # no on_corrupt: never silently skipped

    # ------------------------------------------------------------------ ledger

    def test_head_and_records_since_after_a_torn_tail(self, kit: StoreKit) -> None:
        needs(kit, "tear_ledger")
        ls = kit.ledger_store
        stored = [ls.append(record("run-1", n)) for n in range(3)]
        kit.tear_ledger("run-1", b'{"run_id":"run-1","seq":3,"tor')
        for store in (ls, kit.reopen().ledger_store):
            assert store.head("run-1") == (3, stored[-1]["record_hash"])
            assert store.records_since("run-1", 2) == stored[2:]
            assert store.records_since("run-1", 3) == []
            assert store.list("run-1") == stored
        out = kit.reopen().ledger_store.append(record("run-1", 3))
        assert out["seq"] == 3 and out["prev_hash"] == stored[-1]["record_hash"]
        records = kit.reopen().ledger_store.list("run-1")
        assert verify_ledger_chain(records, expected_count=4,
                                   expected_head=out["record_hash"])["ok"]

    def test_ledger_append_list_head_chain(self, kit: StoreKit) -> None:
        ls = kit.ledger_store
        assert ls.head("run-1") == (0, None)
        assert ls.list("run-1") == []
        assert ls.records_since("run-1", 0) == []
        stored = []
        for n in range(5):
            rec = record("run-1", n)
            out = ls.append(rec)
            assert out["seq"] == n == rec.seq
            assert out["record_hash"] == rec.record_hash and len(rec.record_hash) == 64
            prev = stored[-1]["record_hash"] if stored else None
            assert out["prev_hash"] == rec.prev_hash == prev
            stored.append(out)
        ls.append(record("run-2", 0))  # another run's ledger is separate
        records = ls.list("run-1")
        assert [r["step_id"] for r in records] == [f"s{n}" for n in range(5)]
        assert records == stored
        assert records[1]["result"] == {"n": 1, "text": "héllo ✓"}
        assert ls.head("run-1") == (5, stored[-1]["record_hash"])
        assert ls.head("run-2")[0] == 1
        report = verify_ledger_chain(records, expected_count=5,
                                     expected_head=stored[-1]["record_hash"])
        assert report["ok"], report
        assert verify_ledger_chain(ls.list("run-2"))["ok"]

    def test_records_since(self, kit: StoreKit) -> None:
        ls = kit.ledger_store
        for n in range(6):
            ls.append(record("run-1", n))
        assert [r["seq"] for r in ls.records_since("run-1", 0)] == [0, 1, 2, 3, 4, 5]
        assert [r["seq"] for r in ls.records_since("run-1", 4)] == [4, 5]
        assert [r["step_id"] for r in ls.records_since("run-1", 5)] == ["s5"]
        assert ls.records_since("run-1", 6) == []
        assert ls.records_since("run-1", 60) == []
        fresh = kit.reopen().ledger_store
        assert [r["seq"] for r in fresh.records_since("run-1", 3)] == [3, 4, 5]
        assert fresh.records_since("run-1", 3) == ls.records_since("run-1", 3)

    def test_ledger_head_and_append_after_reopen(self, kit: StoreKit) -> None:
        ls = kit.ledger_store
        for n in range(3):
            ls.append(record("run-1", n))
        head = ls.head("run-1")
        fresh = kit.reopen().ledger_store
        assert fresh.head("run-1") == head
        out = fresh.append(record("run-1", 3))
        assert out["seq"] == 3 and out["prev_hash"] == head[1]
        records = kit.reopen().ledger_store.list("run-1")
        assert len(records) == 4
        report = verify_ledger_chain(records, expected_count=4, expected_head=out["record_hash"])
        assert report["ok"], report

    def test_verify_catches_an_edit(self, kit: StoreKit) -> None:
        ls = kit.ledger_store
        for n in range(4):
            ls.append(record("run-1", n))
        records = ls.list("run-1")
        records[2]["result"] = {"n": 99}
        report = verify_ledger_chain(records)
        assert not report["ok"] and report["first_bad_index"] == 2

    def test_operator_records_are_chained_too(self, kit: StoreKit) -> None:
        ls = kit.ledger_store
        ls.append(record("run-1", 0, status=StepStatus.WAITING))
        ls.append(record("run-1", 1, kind=RecordKind.RESUME, status=StepStatus.RESUMED,
                         actor_id="alice"))
        records = ls.list("run-1")
        assert [r["kind"] for r in records] == ["effect", "resume"]
        assert records[1]["actor_id"] == "alice"
        assert verify_ledger_chain(records)["ok"]

    # ------------------------------------------------------------------ deadlines

    def test_a_wait_deadline_makes_the_run_due(self, kit: StoreKit) -> None:
        needs(kit, "deadlines")
        rs = kit.run_store
        past, future = "2030-01-01T06:00:00+00:00", "2030-01-01T09:00:00+00:00"
        rs.save(make_run("user-past", status=RunStatus.WAITING,
                         waiting=deadline_wait(WaitReason.USER, past)))
        rs.save(make_run("user-future", status=RunStatus.WAITING,
                         waiting=deadline_wait(WaitReason.USER, future)))
        # 11:30+05:00 is 06:30Z: an event's deadline, between the two.
        rs.save(make_run("event-past", status=RunStatus.WAITING,
                         waiting=deadline_wait(WaitReason.EVENT, "2030-01-01T11:30:00+05:00")))
        rs.save(make_run("timer", status=RunStatus.WAITING,
                         waiting=until_wait("2030-01-01T06:15:00Z")))
        rs.save(make_run("no-deadline", status=RunStatus.WAITING, waiting=user_wait()))
        # Only a person's or an event's wait has a deadline that makes it due.
        rs.save(make_run("job", status=RunStatus.WAITING,
                         waiting=deadline_wait(WaitReason.JOB, past)))
        rs.save(make_run("ended", status=RunStatus.COMPLETED,
                         waiting=deadline_wait(WaitReason.USER, past)))
        now = datetime(2030, 1, 1, 7, 0, tzinfo=timezone.utc)
        for store in (rs, kit.reopen().run_store):
            assert ids(store.list_due_wait_until(now=now)) == ["user-past", "timer", "event-past"]
            assert ids(store.list_due_wait_until(now=now, limit=1)) == ["user-past"]
            assert store.earliest_due() == datetime(2030, 1, 1, 6, 0, tzinfo=timezone.utc)
        later = datetime(2030, 1, 1, 9, 0, tzinfo=timezone.utc)
        assert "user-future" in ids(rs.list_due_wait_until(now=later))
        # Answered: not due any more; a deadline added to a wait: due.
        run = rs.load("user-past")
        run.status, run.waiting = RunStatus.RUNNING, None
        rs.save(run)
        plain = rs.load("no-deadline")
        plain.waiting.deadline = "2030-01-01T05:00:00Z"
        rs.save(plain)
        for store in (rs, kit.reopen().run_store):
            assert ids(store.list_due_wait_until(now=now)) == ["no-deadline", "timer", "event-past"]
            assert store.earliest_due() == datetime(2030, 1, 1, 5, 0, tzinfo=timezone.utc)

    # ------------------------------------------------------------------ events

    def test_events_oldest_unreceived_by_key_time_and_receipt(self, kit: StoreKit) -> None:
        needs(kit, "events")
        ev = kit.stores.events
        for e in (kept_event(2, at=20), kept_event(1, at=10), kept_event(3, key="order:2", at=5),
                  kept_event(4, at=30, ttl=1)):
            ev.put(e)
        now = T0 + timedelta(seconds=40)  # ev-4 has expired by then
        got = ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0, now=now)
        assert got == kept_event(1, at=10)
        assert ev.oldest_unreceived("order:1", run_id="r1", now=now,
                                    emitted_after=T0 + timedelta(seconds=10)).event_id == "ev-2"
        assert ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0, now=now,
                                    exclude=["ev-1"]).event_id == "ev-2"
        assert ev.oldest_unreceived("order:1", run_id="r1", emitted_after=T0, now=now,
                                    exclude=["ev-1", "ev-2"]) is None
        ev.mark_received("ev-1", "r1")
        ev.mark_received("ev-1", "r1")  # idempotent
        ev.mark_received("ev-1", "r0")
        for store in (ev, kit.reopen().stores.events):
            assert store.oldest_unreceived("order:1", run_id="r1", emitted_after=T0,
                                           now=now).event_id == "ev-2"
            assert store.oldest_unreceived("order:1", run_id="r9", emitted_after=T0,
                                           now=now).event_id == "ev-1"
            assert store.oldest_unreceived("nothing", run_id="r1", emitted_after=T0,
                                           now=now) is None
            listed = store.list_events()
            assert [e.event_id for e in listed] == ["ev-3", "ev-1", "ev-2", "ev-4"]
            assert listed[1].received_by == ["r1", "r0"]
            assert listed[1].payload == {"n": 1, "text": "héllo ✓", "f": 1e16}
            assert [e.event_id for e in store.list_events(key_pattern="order:[2]")] == ["ev-3"]
            assert [e.event_id for e in store.list_events(key_pattern="*:1")] == [
                "ev-1", "ev-2", "ev-4"]
            assert [e.event_id for e in store.list_events(key_pattern="order:1")] == [
                "ev-1", "ev-2", "ev-4"]
        # Expired: never delivered, then dropped.
        late = T0 + timedelta(seconds=31)
        assert ev.oldest_unreceived("order:1", run_id="r9", emitted_after=T0 + timedelta(seconds=25),
                                    now=late) is None
        assert ev.prune(now=now) == 1
        assert ev.prune(now=now) == 0
        assert [e.event_id for e in kit.reopen().stores.events.list_events()] == [
            "ev-3", "ev-1", "ev-2"]

    def test_events_put_keeps_given_receipts(self, kit: StoreKit) -> None:
        needs(kit, "events")
        ev = kit.stores.events
        ev.put(kept_event(1, received_by=["a", "b"], actor_id="alice"))
        got = kit.reopen().stores.events.list_events()
        assert got[0].received_by == ["a", "b"] and got[0].actor_id == "alice"
        assert ev.oldest_unreceived("order:1", run_id="a", emitted_after=T0 - timedelta(days=1),
                                    now=T0) is None
        assert ev.oldest_unreceived("order:1", run_id="c", emitted_after=T0 - timedelta(days=1),
                                    now=T0).event_id == "ev-1"

    # ------------------------------------------------------------------ snapshots

    def test_snapshots(self, kit: StoreKit) -> None:
        needs(kit, "snapshots")
        sn = kit.stores.snapshots
        a1 = snapshot("run-a", "before deploy", at=2, tags=["release"])
        a2 = snapshot("run-a", "v1.0", at=1)
        b1 = snapshot("run-b", "release 1/2 ✓", at=3, tags=["release", "b"])
        for s in (a1, a2, b1):
            sn.put_snapshot(s)
        with pytest.raises(SnapshotExistsError) as ei:
            sn.put_snapshot(snapshot("run-a", "v1.0", at=9))
        assert ei.value.run_id == "run-a" and ei.value.name == "v1.0"
        for store in (sn, kit.reopen().stores.snapshots):
            assert store.get_snapshot("run-a", "v1.0") == a2
            assert store.get_snapshot("run-b", "release 1/2 ✓") == b1
            assert store.get_snapshot("run-a", "nope") is None
            assert store.get_snapshot("run-c", "v1.0") is None
            assert store.list_snapshots() == [a2, a1, b1]  # oldest first
            assert store.list_snapshots(run_id="run-a") == [a2, a1]
            assert store.list_snapshots(tag="release") == [a1, b1]
            assert store.list_snapshots(run_id="run-b", tag="b") == [b1]
            assert store.list_snapshots(run_id="run-c") == []
        got = sn.get_snapshot("run-a", "v1.0")
        got["state"]["vars"]["x"] = "changed"  # a copy
        assert sn.get_snapshot("run-a", "v1.0") == a2
        assert sn.delete_snapshots("run-a") == 2
        assert sn.delete_snapshots("run-a") == 0
        assert kit.reopen().stores.snapshots.list_snapshots() == [b1]
        sn.put_snapshot(a2)  # the name is free again
        assert sn.list_snapshots(run_id="run-a") == [a2]

    # ------------------------------------------------------------------ artifacts

    def test_artifacts_content_addressed_and_merged(self, kit: StoreKit) -> None:
        needs(kit, "artifacts")
        ar = kit.stores.artifacts
        data = bytes(range(256)) * 4
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        meta = ar.put_artifact(data, content_type="application/x-test", run_id="run-a",
                               tags=["in"], name="blob.bin")
        assert meta["ref"] == ref and meta["size"] == len(data)
        assert meta["content_type"] == "application/x-test" and meta["name"] == "blob.bin"
        assert meta["run_ids"] == ["run-a"] and meta["tags"] == ["in"] and meta["created_at"]
        again = ar.put_artifact(data, run_id="run-b", tags=["in", "out"])
        assert again["ref"] == ref and again["run_ids"] == ["run-a", "run-b"]
        assert again["tags"] == ["in", "out"] and again["content_type"] == "application/x-test"
        assert again["created_at"] == meta["created_at"] and again["name"] == "blob.bin"
        empty = ar.put_artifact(b"", run_id="run-b")
        assert empty["ref"] == "sha256:" + hashlib.sha256(b"").hexdigest()
        assert empty["content_type"] == "application/octet-stream"
        for store in (ar, kit.reopen().stores.artifacts):
            assert store.get_artifact(ref) == data
            assert store.get_artifact(empty["ref"]) == b""
            assert store.artifact_meta(ref) == again
            assert [m["ref"] for m in store.list_artifacts(run_id="run-a")] == [ref]
            assert sorted(m["ref"] for m in store.list_artifacts(run_id="run-b")) == sorted(
                [ref, empty["ref"]])
            assert [m["ref"] for m in store.list_artifacts(tag="out")] == [ref]
            assert len(store.list_artifacts()) == 2
            assert store.list_artifacts(run_id="run-z") == []
        missing = "sha256:" + "0" * 64
        assert ar.artifact_meta(missing) is None
        for bad in (missing, "sha256:xyz", "md5:00"):
            with pytest.raises(ArtifactNotFoundError):
                ar.get_artifact(bad)
        ar.delete_artifact(ref)
        ar.delete_artifact(ref)  # nothing there: nothing to do
        with pytest.raises(ArtifactNotFoundError):
            kit.reopen().stores.artifacts.get_artifact(ref)
        assert [m["ref"] for m in ar.list_artifacts()] == [empty["ref"]]

    def test_import_artifact_keeps_the_given_metadata(self, kit: StoreKit) -> None:
        needs(kit, "artifacts")
        ar = kit.stores.artifacts
        data = b"from another store"
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        given = {"ref": ref, "size": len(data), "content_type": "text/plain", "name": "n.txt",
                 "run_ids": ["run-a", "run-b"], "tags": ["t1"],
                 "created_at": "2001-02-03T04:05:06+00:00"}
        assert ar.import_artifact(given, data) == given
        for store in (ar, kit.reopen().stores.artifacts):
            assert store.artifact_meta(ref) == given and store.get_artifact(ref) == data
            assert [m["ref"] for m in store.list_artifacts(run_id="run-b")] == [ref]
        merged = ar.import_artifact(dict(given, run_ids=["run-c"], tags=["t2"],
                                         created_at="2020-01-01T00:00:00+00:00"), data)
        assert merged["run_ids"] == ["run-a", "run-b", "run-c"]
        assert merged["tags"] == ["t1", "t2"] and merged["created_at"] == given["created_at"]
        assert [m["ref"] for m in kit.reopen().stores.artifacts.list_artifacts(run_id="run-c")] == [ref]
        with pytest.raises(PayloadError):
            ar.import_artifact(given, b"other bytes")

    # ------------------------------------------------------------------ audit

    def test_prune_records_and_heartbeats(self, kit: StoreKit) -> None:
        needs(kit, "audit")
        au = kit.stores.audit
        assert au.list_prune_records() == [] and au.heartbeats() == []
        recs = [{"run_id": f"r{i}", "workflow_id": "wf", "status": "completed",
                 "ledger_count": i, "ledger_head": "ab" * 32, "pruned_at": iso(T0),
                 "actor_id": "alice"} for i in (2, 1, 3)]
        for r in recs:
            au.put_prune_record(r)
        beat = {"worker_id": "host-1:42", "host": "host-1", "pid": 42, "interval": 5.0,
                "beat_at": iso(T0), "started_at": iso(T0), "rounds": 1, "moved": 0}
        au.beat(beat)
        au.beat(dict(beat, beat_at=iso(T0 + timedelta(seconds=5)), rounds=2, moved=3))
        au.beat(dict(beat, worker_id="a-worker"))
        for store in (au, kit.reopen().stores.audit):
            assert store.list_prune_records() == recs  # in the order they were made
            beats = store.heartbeats()
            assert [b["worker_id"] for b in beats] == ["a-worker", "host-1:42"]
            assert beats[1]["rounds"] == 2 and beats[1]["moved"] == 3

    # ------------------------------------------------------------------ logs

    def test_logs_in_order_and_capped(self, kit: StoreKit) -> None:
        needs(kit, "logs")
        lg = kit.stores.logs
        assert lg.read_log("run-1") == ([], 0)
        first = [log_entry(0, "hello ✓\n"), log_entry(1, "world\n", stream="stderr")]
        lg.append_log("run-1", first)
        lg.append_log("run-2", [log_entry(0, "other run\n")])
        assert lg.read_log("run-1") == (first, 0)
        assert kit.reopen().stores.logs.read_log("run-1") == (first, 0)
        # Past the cap: the newest text is kept, what was dropped is counted in bytes.
        chunk = "é" * (LOG_CAP // 8)  # LOG_CAP / 4 bytes of UTF-8
        big = [log_entry(2 + i, chunk) for i in range(10)]
        for e in big:
            lg.append_log("run-1", [e])
        written = sum(len(e["text"].encode()) for e in first + big)
        for store in (lg, kit.reopen().stores.logs):
            kept, dropped = store.read_log("run-1")
            assert kept == big[-4:]
            assert dropped == written - 4 * (LOG_CAP // 4)
        lg.delete_log("run-1")
        assert lg.read_log("run-1") == ([], 0)
        assert kit.reopen().stores.logs.read_log("run-2")[0][0]["text"] == "other run\n"

    def test_import_log_keeps_the_dropped_count(self, kit: StoreKit) -> None:
        needs(kit, "logs")
        lg = kit.stores.logs
        entries = [log_entry(0, "one\n"), log_entry(1, "two ✓\n")]
        lg.import_log("run-1", entries, 123)
        assert lg.read_log("run-1") == (entries, 123)
        with pytest.raises(StoreIOError) as ei:
            lg.import_log("run-1", entries, 0)
        assert ei.value.code == "log_exists"
        lg.append_log("run-1", [log_entry(2, "three\n")])
        for store in (lg, kit.reopen().stores.logs):
            assert store.read_log("run-1") == (entries + [log_entry(2, "three\n")], 123)

    # ------------------------------------------------------------------ admin

    def test_iter_run_ids_and_delete_run(self, kit: StoreKit) -> None:
        needs(kit, "admin")
        rs, ls = kit.run_store, kit.ledger_store
        for rid in ("b-2", "a-1", "c-3", "a-0"):
            rs.save(make_run(rid, status=RunStatus.WAITING, waiting=user_wait("k")))
            with rs.lock(rid, timeout=5):
                ls.append(record(rid, 0))
        assert list(rs.iter_run_ids()) == ["a-0", "a-1", "b-2", "c-3"]
        with rs.lock("a-1", timeout=5):
            rs.delete_run("a-1")
        for store in (kit, kit.reopen()):
            assert store.run_store.load("a-1") is None
            assert store.ledger_store.head("a-1") == (0, None)
            assert store.ledger_store.list("a-1") == []
            assert list(store.run_store.iter_run_ids()) == ["a-0", "b-2", "c-3"]
            assert sorted(ids(store.run_store.list_runs(wait_key="k"))) == ["a-0", "b-2", "c-3"]
            assert store.run_store.match_prefix("a-") == ["a-0"]
        with rs.lock("a-1", timeout=5):  # its lock is still usable (nothing left behind)
            pass
        assert rs.load("a-1") is None and ls.list("a-1") == []

    def test_import_run_writes_the_records_as_given(self, kit: StoreKit) -> None:
        needs(kit, "admin")
        src = kit.ledger_store
        for n in range(3):
            src.append(record("src", n))
        records = src.list("src")
        records = [dict(r, run_id="imp") for r in records]  # (the hashes do not matter here)
        run = make_run("imp", status=RunStatus.COMPLETED)
        run.ledger_count, run.ledger_head = 3, records[-1]["record_hash"]
        kit.run_store.import_run(run, records)
        for store in (kit, kit.reopen()):
            assert store.run_store.load("imp") == run
            assert store.ledger_store.list("imp") == records
            assert store.ledger_store.head("imp") == (3, records[-1]["record_hash"])
        with pytest.raises(StoreIOError) as ei:
            kit.run_store.import_run(run, records)
        assert ei.value.code == "run_exists"
        with pytest.raises(ValueError):
            kit.run_store.import_run(make_run("other"), records)
        assert kit.run_store.load("other") is None


def run_with_threads(n: int, fn: Callable[[int], None]) -> None:
    """Run ``fn(i)`` in ``n`` threads and re-raise the first failure."""
    errors: List[BaseException] = []

    def target(i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]


class ThreadSafetyContract:
    """Threads of one process sharing a store instance (mixed into StoreContract users)."""

    def test_threads_serialise_on_the_run_lock(self, kit: StoreKit) -> None:
        rs = kit.run_store
        rs.save(make_run("counter", n=0))

        def bump(_: int) -> None:
            for _ in range(10):
                with rs.lock("counter", timeout=10):
                    run = rs.load("counter")
                    run.vars["n"] += 1
                    rs.save(run)

        run_with_threads(4, bump)
        assert rs.load("counter").vars["n"] == 40
