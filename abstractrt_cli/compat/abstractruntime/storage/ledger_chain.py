"""AbstractRuntime's ledger hash chain: abstractrt's (``abstractrt_cli.storage.chain``).

In abstractrt every ledger store chains every record as it appends it (``seq``,
``prev_hash``, ``record_hash``, SHA-256 over the canonical JSON), and each run's checkpoint
keeps the record count and head hash, so even deleting the last records is caught.
``HashChainedLedgerStore`` is therefore a pass-through kept for code that wraps its
ledger store in it; ``verify_ledger_chain`` is abstractrt's verifier, whose report has
AbstractRuntime's keys (``ok``, ``count``, ``errors``, ``first_bad_index``, ``head_hash``)
and more.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ....storage.chain import compute_record_hash as _compute_record_hash
from ....storage.chain import verify_ledger_chain
from .._errors import UnsupportedStoreError
from ..core.models import StepRecord
from .base import LedgerStore

__all__ = ["HashChainedLedgerStore", "verify_ledger_chain", "compute_record_hash"]


def compute_record_hash(*, record: Dict[str, Any], prev_hash: Optional[str]) -> str:
    """SHA-256 of a record with ``prev_hash`` in it and ``record_hash``/``signature`` out."""
    return _compute_record_hash(record, prev_hash)


class HashChainedLedgerStore(LedgerStore):
    """Wraps an abstractrt ledger store (which chains already) and delegates to it."""

    def __init__(self, inner: Any) -> None:
        for needed in ("append", "list", "head", "records_since"):
            if not callable(getattr(inner, needed, None)):
                raise UnsupportedStoreError(
                    f"{type(inner).__name__} has no {needed}(): HashChainedLedgerStore wraps "
                    "abstractrt ledger stores, which chain every record themselves")
        self._inner = inner

    @property
    def inner(self) -> Any:
        return self._inner

    def append(self, record: StepRecord) -> Dict[str, Any]:
        return self._inner.append(record)

    def list(self, run_id: str) -> List[Dict[str, Any]]:
        return self._inner.list(run_id)

    def head(self, run_id: str) -> Any:
        return self._inner.head(run_id)

    def records_since(self, run_id: str, count: int) -> List[Dict[str, Any]]:
        return self._inner.records_since(run_id, count)
