"""Records beyond a run's checkpoint: found when the run is locked, rolled forward.

The ledger is the truth (PRODUCT §5a): a record appended after the run's last
checkpoint happened, even if the process died before checkpointing. The kernel never
checkpoints a state the ledger has not recorded, and when it takes a run it reads the
records beyond the checkpoint (a handful, from the ledger's tail) and replays them:

- operator records (``resume``, ``cancel``, ``limits``) are applied to the state as they
  were recorded, so a prompt the ledger shows answered can never take a second answer;
- effect records are reused by idempotency key when the replayed nodes reach them, so a
  recorded effect never runs twice;
- ``complete``/``fail`` records are reused when the replay reaches them, instead of
  being appended a second time.

Before any of that, the ledger must still hold the checkpoint's last record with the
checkpoint's hash: a ledger that lost its tail (or was deleted) is refused, so a damaged
chain is never laundered by appending onto it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..errors import CorruptLedgerError, LedgerMismatchError
from .models import RunState


class Replay:
    """The records beyond a checkpoint, consumed as the kernel catches up with them."""

    __slots__ = ("records", "_used", "_by_key", "_next")

    def __init__(self, records: List[Dict[str, Any]]) -> None:
        self.records = records
        self._used = [False] * len(records)
        self._by_key: Dict[str, List[int]] = {}
        self._next = 0
        for i, rec in enumerate(records):
            key = rec.get("idempotency_key")
            if key and rec.get("kind", "effect") == "effect":
                self._by_key.setdefault(key, []).append(i)

    def __bool__(self) -> bool:
        return self.peek() is not None

    def peek(self) -> Optional[Dict[str, Any]]:
        """The oldest record not consumed yet."""
        while self._next < len(self.records) and self._used[self._next]:
            self._next += 1
        return self.records[self._next] if self._next < len(self.records) else None

    def take(self) -> Dict[str, Any]:
        rec = self.peek()
        assert rec is not None
        self._used[self._next] = True
        return rec

    def take_kind(self, *kinds: str) -> Optional[Dict[str, Any]]:
        """Consume the oldest record if it is of one of ``kinds``."""
        rec = self.peek()
        if rec is not None and rec.get("kind", "effect") in kinds:
            return self.take()
        return None

    def effect_records(self, key: str) -> List[Dict[str, Any]]:
        """Every attempt recorded under ``key`` (consumed: the replayed step owns them)."""
        idx = self._by_key.pop(key, [])
        for i in idx:
            self._used[i] = True
        return [self.records[i] for i in idx]

    def consumed(self) -> int:
        return sum(self._used)

    def has_effects(self) -> bool:
        return any(self._by_key.values())


def load_beyond(ledger: Any, run: RunState) -> Tuple[Replay, Tuple[int, Optional[str]], Optional[str]]:
    """Check the ledger against ``run``'s checkpoint; return the records beyond it, the
    ledger's real head (count, hash) and the state digest its last record carries.

    Raises LedgerMismatchError when the ledger no longer holds the checkpoint's records.
    """
    count, head = run.ledger_count, run.ledger_head
    try:
        recs = ledger.records_since(run.run_id, max(count - 1, 0))
    except CorruptLedgerError as exc:
        raise LedgerMismatchError(run.run_id, str(exc)) from None
    if count > 0:
        if not recs or recs[0].get("seq", count - 1) != count - 1:
            have = ledger.head(run.run_id)[0]
            raise LedgerMismatchError(
                run.run_id, f"the checkpoint covers {count} records but the ledger has {have} "
                            "(records deleted or truncated)")
        if head is not None and recs[0].get("record_hash") != head:
            raise LedgerMismatchError(
                run.run_id, f"record {count - 1} is not the one the checkpoint recorded "
                            "(the ledger was rewritten)")
        beyond = recs[1:]
    else:
        beyond = recs
    last = recs[-1] if recs else None
    real_head = (count + len(beyond), last.get("record_hash")) if last else (0, None)
    return Replay(beyond), real_head, (last or {}).get("state_digest")
