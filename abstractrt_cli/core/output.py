"""What node code prints or logs while a run is ticked, kept per run with its step.

Around each node and effect handler call, ``sys.stdout``/``sys.stderr`` are wrapped so
that what the code writes still goes where it went (the command line sends it to
stderr) and is also noted with the run's node and effect sequence number; records of
the ``logging`` module are noted the same way. The notes go to the store's log
(``LogStore``, the last 1 MiB per run) at the run's next checkpoint. Only done when the
runtime has a log store: a library user without one pays nothing.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional


class _Tee:
    """A text stream that writes through and keeps a copy."""

    def __init__(self, inner: Any, sink: "StepOutput", stream: str) -> None:
        self._inner = inner
        self._sink = sink
        self._stream = stream

    def write(self, text: str) -> int:
        self._sink.note(self._stream, text)
        return self._inner.write(text)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno...
        return getattr(self._inner, name)


def _log_handler(sink: "StepOutput") -> Any:
    """A ``logging`` handler noting records in ``sink`` — only made once node code has
    imported ``logging`` (importing it here would cost every command): until then a log
    call can only come from code that imports it in the step, and with no handlers set
    up its record goes to stderr, which is noted anyway."""
    import logging

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sink.note("log", f"{record.levelname} {record.name}: {record.getMessage()}\n")
            except Exception:  # a log call must never break the step that made it
                pass

    return _Handler(logging.DEBUG)


class StepOutput:
    """Notes what one step writes (use as a context manager around the call)."""

    def __init__(self) -> None:
        self.entries: List[Dict[str, Any]] = []
        self.node_id = ""
        self.effect_seq = 0
        self._saved: Optional[tuple] = None
        self._handler: Any = None
        self._root: Any = None  # the logger the handler was added to

    def of(self, node_id: str, effect_seq: int) -> "StepOutput":
        self.node_id, self.effect_seq = node_id, effect_seq
        return self

    def note(self, stream: str, text: str) -> None:
        if not text:
            return
        last = self.entries[-1] if self.entries else None
        if (last is not None and last["stream"] == stream and last["node_id"] == self.node_id
                and last["effect_seq"] == self.effect_seq and not last["text"].endswith("\n")):
            last["text"] += text
            return
        self.entries.append({"at": datetime.now(timezone.utc).isoformat(), "node_id": self.node_id,
                             "effect_seq": self.effect_seq, "stream": stream, "text": text})

    def __enter__(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _Tee(sys.stdout, self, "stdout")  # type: ignore[assignment]
        sys.stderr = _Tee(sys.stderr, self, "stderr")  # type: ignore[assignment]
        logging = sys.modules.get("logging")
        if logging is not None:
            if self._handler is None:
                self._handler = _log_handler(self)
            self._root = logging.getLogger()
            self._root.addHandler(self._handler)

    def __exit__(self, *exc: Any) -> None:
        if self._root is not None:
            self._root.removeHandler(self._handler)
            self._root = None
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None

    def take(self) -> List[Dict[str, Any]]:
        out, self.entries = self.entries, []
        return out


class _NoOutput:
    """StepOutput's stand-in when there is no log store: nothing at all."""

    def of(self, node_id: str, effect_seq: int) -> "_NoOutput":
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

    def take(self) -> List[Dict[str, Any]]:
        return []


NO_OUTPUT = _NoOutput()


class ArtifactAccess:
    """``ctx.artifacts`` for node code: put bytes, get them back by ref (PRODUCT §9)."""

    def __init__(self, store: Any, run_id: Any) -> None:
        self._store = store
        self._run_id = run_id  # a callable: the run the current step belongs to

    def put(self, data: Any, *, content_type: str = "application/octet-stream",
            tags: Any = (), name: Optional[str] = None) -> str:
        if isinstance(data, str):
            data = data.encode("utf-8")
            if content_type == "application/octet-stream":
                content_type = "text/plain; charset=utf-8"
        meta = self._store.put_artifact(bytes(data), content_type=content_type,
                                        run_id=self._run_id(), tags=list(tags or ()), name=name)
        return meta["ref"]

    def get(self, ref: str) -> bytes:
        return self._store.get_artifact(ref)
