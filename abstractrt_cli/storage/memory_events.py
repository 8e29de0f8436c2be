"""The event mailbox in memory: for tests, the library, and an empty read-only store."""

from __future__ import annotations

import copy
import fnmatch
import threading
from datetime import datetime
from typing import Dict, List, Optional, Sequence

from ..core.models import KeptEvent
from ..core.timeutil import parse_timestamp


class InMemoryEventStore:
    """Events by key, oldest first."""

    def __init__(self) -> None:
        self._by_key: Dict[str, List[KeptEvent]] = {}
        self._by_id: Dict[str, KeptEvent] = {}
        self._guard = threading.Lock()

    def put(self, event: KeptEvent) -> None:
        with self._guard:
            kept = copy.deepcopy(event)
            kept.received_by = list(dict.fromkeys(kept.received_by))
            self._by_key.setdefault(event.key, []).append(kept)
            self._by_key[event.key].sort(key=lambda e: (parse_timestamp(e.emitted_at), e.event_id))
            self._by_id[event.event_id] = kept

    def oldest_unreceived(self, key: str, *, run_id: str, emitted_after: datetime,
                          now: datetime, exclude: Sequence[str] = ()) -> Optional[KeptEvent]:
        with self._guard:
            for ev in self._by_key.get(key, []):
                if (ev.event_id not in exclude and parse_timestamp(ev.emitted_at) > emitted_after
                        and parse_timestamp(ev.expires_at) > now and run_id not in ev.received_by):
                    return copy.deepcopy(ev)
        return None

    def mark_received(self, event_id: str, run_id: str) -> None:
        """Idempotent; an event no longer kept: nothing."""
        with self._guard:
            ev = self._by_id.get(event_id)
            if ev is not None and run_id not in ev.received_by:
                ev.received_by.append(run_id)

    def list_events(self, *, key_pattern: Optional[str] = None) -> List[KeptEvent]:
        with self._guard:
            out = [copy.deepcopy(e) for key, events in self._by_key.items()
                   if key_pattern is None or fnmatch.fnmatchcase(key, key_pattern) for e in events]
        return sorted(out, key=lambda e: (parse_timestamp(e.emitted_at), e.event_id))

    def prune(self, *, now: datetime) -> int:
        dropped = 0
        with self._guard:
            for key in list(self._by_key):
                keep = [e for e in self._by_key[key] if parse_timestamp(e.expires_at) > now]
                dropped += len(self._by_key[key]) - len(keep)
                for e in self._by_key[key]:
                    if parse_timestamp(e.expires_at) <= now:
                        self._by_id.pop(e.event_id, None)
                if keep:
                    self._by_key[key] = keep
                else:
                    del self._by_key[key]
        return dropped
