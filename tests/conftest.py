"""Shared fixtures: an in-memory runtime with a controllable clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from abstractrt_cli import InMemoryLedgerStore, InMemoryRunStore, Runtime, WorkflowRegistry
from abstractrt_cli.core.timeutil import parse_timestamp


class FakeClock:
    """A clock for ``Runtime(clock=...)`` that only moves when a test moves it."""

    def __init__(self, start: str = "2026-01-01T00:00:00+00:00") -> None:
        self.now = parse_timestamp(start)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def set(self, when: str) -> None:
        self.now = parse_timestamp(when).astimezone(timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> WorkflowRegistry:
    return WorkflowRegistry()


@pytest.fixture
def make_runtime(clock: FakeClock, registry: WorkflowRegistry) -> Callable[..., Runtime]:
    """``make_runtime(**kw)``: a Runtime over fresh in-memory stores (or the ones given)."""

    def make(*, run_store: Any = None, ledger_store: Any = None, **kw: Any) -> Runtime:
        kw.setdefault("clock", clock)
        kw.setdefault("workflow_registry", registry)
        return Runtime(
            run_store=run_store if run_store is not None else InMemoryRunStore(),
            ledger_store=ledger_store if ledger_store is not None else InMemoryLedgerStore(),
            **kw,
        )

    return make


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()
