"""AbstractRuntime's ``Runtime``: the kernel's runtime with AbstractRuntime's constructor,
defaults and exceptions.

What differs from the kernel's ``abstractrt_cli.core.runtime.Runtime``, and why:

- ``artifact_store=`` is accepted and kept (``artifact_store`` / ``set_artifact_store``):
  node code reaches it through the runtime, as with AbstractRuntime.
- Without ``effect_policy``, every effect gets one attempt (AbstractRuntime's default);
  the kernel alone gives ``llm_call`` three.
- ``resume`` refusals are ``ValueError``s too, worded as AbstractRuntime worded them.
- ``start_subworkflow`` on a runtime without a registry fails saying so.
- A run store with only ``save``/``load`` (written for AbstractRuntime) gets in-process
  run locks, so it can be ticked; a ledger store must be hash-chained (ours are).

Everything else — ticking, recording, replay after a crash, subworkflows, retries — is
the kernel's, unchanged.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, Optional

from ....core.runtime import DefaultRunContext as _KernelRunContext
from ....core.runtime import EffectOutcome, NonRetryableError, set_nested
from ....core.runtime import Runtime as _KernelRuntime
from ....errors import RunBusyError, RunNotWaitingError, WaitKeyMismatchError
from .._errors import (
    KeyMismatchError,
    NotWaitingError,
    UnsupportedStoreError,
)
from .config import RuntimeConfig
from .models import RunState
from .policy import DefaultEffectPolicy

__all__ = ["Runtime", "EffectOutcome", "EffectHandler", "DefaultRunContext", "NonRetryableError",
           "utc_now_iso"]

EffectHandler = Callable[..., Any]


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class DefaultRunContext(_KernelRunContext):
    """The ``ctx`` node handlers get (``ctx.now_iso()``); the clock is optional here."""

    def __init__(self, clock: Optional[Callable[[], datetime]] = None) -> None:
        super().__init__(clock or (lambda: datetime.now(timezone.utc)))


_set_nested = set_nested


class Runtime(_KernelRuntime):
    """Durable graph runner (``abstractrt_cli.core.runtime.Runtime``), AbstractRuntime's shape."""

    def __init__(
        self,
        *,
        run_store: Any,
        ledger_store: Any,
        effect_handlers: Optional[Dict[Any, EffectHandler]] = None,
        context: Optional[Any] = None,
        workflow_registry: Optional[Any] = None,
        artifact_store: Optional[Any] = None,
        effect_policy: Optional[Any] = None,
        config: Optional[RuntimeConfig] = None,
        **kernel_options: Any,
    ) -> None:
        for needed in ("append", "list", "head", "records_since"):
            if not callable(getattr(ledger_store, needed, None)):
                raise UnsupportedStoreError(
                    f"{type(ledger_store).__name__} has no {needed}(): the runtime needs a "
                    "hash-chained ledger store (InMemoryLedgerStore, JsonlLedgerStore, or one "
                    "implementing abstractrt_cli.storage.base.LedgerStore)")
        if not callable(getattr(run_store, "lock", None)):
            run_store = LocalLockRunStore(run_store)
        super().__init__(
            run_store=run_store,
            ledger_store=ledger_store,
            effect_handlers=effect_handlers,
            context=context,
            workflow_registry=workflow_registry,
            effect_policy=effect_policy if effect_policy is not None else DefaultEffectPolicy(),
            config=config,
            **kernel_options,
        )
        self._artifact_store = artifact_store

    @property
    def artifact_store(self) -> Optional[Any]:
        return self._artifact_store

    def set_artifact_store(self, store: Any) -> None:
        self._artifact_store = store

    def resume(self, *, run_id: str, payload: Dict[str, Any], wait_key: Optional[str] = None,
               workflow: Optional[Any] = None, **options: Any) -> RunState:
        """Unblock a waiting run and tick it on (see the kernel's ``resume``).

        A run that is not waiting, or a wait key that differs, raises a ``ValueError``
        (``NotWaitingError``, ``KeyMismatchError``) and changes nothing."""
        try:
            return super().resume(run_id=run_id, payload=payload, wait_key=wait_key,
                                  workflow=workflow, **options)
        except (NotWaitingError, KeyMismatchError):
            raise
        except RunNotWaitingError as exc:
            raise NotWaitingError(exc.run_id, exc.status) from exc
        except WaitKeyMismatchError as exc:
            raise KeyMismatchError(exc.run_id, exc.expected, exc.given) from exc

    def _start_child_for(self, parent: RunState) -> Callable[..., Optional[RunState]]:
        # Without a registry the kernel's message is "subworkflow X not found"; say what is
        # missing instead. (To go once the kernel says it itself.)
        start_child = super()._start_child_for(parent)

        def start_child_or_explain(child_id: str, workflow_id: str, child_vars: Dict[str, Any],
                                   tick: bool) -> Optional[RunState]:
            if self.workflow_registry is None:
                raise NonRetryableError(
                    f"start_subworkflow requires a workflow_registry to find {workflow_id!r}: set it "
                    "via Runtime(workflow_registry=...) or runtime.set_workflow_registry(...)")
            return start_child(child_id, workflow_id, child_vars, tick)

        return start_child_or_explain


class LocalLockRunStore:
    """A run store written for AbstractRuntime (``save``/``load`` only) with the per-run
    locks the runtime takes: in-process locks, so such a store is safe for one process,
    as it was. Everything else is the wrapped store's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextmanager
    def lock(self, run_id: str, *, timeout: float) -> Iterator[None]:
        with self._guard:
            lk = self._locks.setdefault(run_id, threading.Lock())
        if not (lk.acquire(timeout=timeout) if timeout > 0 else lk.acquire(blocking=False)):
            raise RunBusyError(run_id)
        try:
            yield
        finally:
            lk.release()

    def list_children(self, *, parent_run_id: str, status: Optional[Any] = None) -> Any:
        fn = getattr(self._inner, "list_children", None)
        if fn is None:
            raise UnsupportedStoreError(
                f"{type(self._inner).__name__} cannot list a run's children (no list_children()), "
                "which cancelling a run needs")
        return fn(parent_run_id=parent_run_id, status=status)
