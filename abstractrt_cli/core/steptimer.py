"""The step time limit: a node or effect handler that runs too long fails its attempt.

One interval timer (``SIGALRM``, ``setitimer``) ticks while a run loop runs; each step
only notes when it must end, which costs an assignment instead of system calls (a pure
step takes a few microseconds: arming a timer per step would triple that). When the
timer fires and the step in progress is past its end, the handler raises
``StepTimeoutError`` inside the running Python code, so even ``while True: pass`` is
stopped, and a blocking system call is interrupted (Python retries it after running the
handler, which raises). The limit is thus enforced to within a tick of the timer (a
quarter of the limit, at most one second).

Signals reach only the main thread: elsewhere (a thread) the limit is not enforced, and
the runtime's docstring says so rather than pretend.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Tuple

from ..errors import StepTimeoutError

_MAX_TICK = 1.0


class _Watch:
    """The process's one timer, and the step it is watching (nested loops share it)."""

    def __init__(self) -> None:
        self.depth = 0
        self.deadline: Optional[float] = None
        self.make_error: Optional[Callable[[], StepTimeoutError]] = None
        self.tick = _MAX_TICK
        self._previous: Any = None

    def on_alarm(self, signum: int, frame: Any) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            make = self.make_error
            self.deadline = self.make_error = None
            if make is not None:
                raise make()

    def start(self, tick: float) -> None:
        if self.depth == 0:
            self._previous = signal.signal(signal.SIGALRM, self.on_alarm)
            self.tick = tick
            signal.setitimer(signal.ITIMER_REAL, tick, tick)
        elif tick < self.tick:
            self.tick = tick
            signal.setitimer(signal.ITIMER_REAL, tick, tick)
        self.depth += 1

    def stop(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)
            self.deadline = self.make_error = None


_watch = _Watch()


def _usable(seconds: Optional[float]) -> bool:
    return bool(seconds and seconds > 0 and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread())


@contextmanager
def watching(seconds: Optional[float]) -> Iterator[bool]:
    """Keep the timer ticking for a run loop whose steps may take ``seconds`` each."""
    if not _usable(seconds):
        yield False
        return
    assert seconds is not None
    _watch.start(min(_MAX_TICK, max(seconds / 4, 0.01)))
    try:
        yield True
    finally:
        _watch.stop()


@contextmanager
def step_time_limit(seconds: Optional[float], make_error: Callable[[], StepTimeoutError]
                    ) -> Iterator[None]:
    """Raise ``make_error()`` in this block once it has run ``seconds`` (main thread)."""
    if not _usable(seconds):
        yield
        return
    assert seconds is not None
    outer: Tuple[Optional[float], Any] = (_watch.deadline, _watch.make_error)
    own_timer = _watch.depth == 0
    if own_timer:
        _watch.start(min(_MAX_TICK, max(seconds / 4, 0.01)))
    end = time.monotonic() + seconds
    if outer[0] is not None and outer[0] < end:
        end, make_error = outer[0], outer[1]  # the enclosing step ends first
    _watch.deadline, _watch.make_error = end, make_error
    try:
        yield
    finally:
        _watch.deadline, _watch.make_error = outer
        if own_timer:
            _watch.stop()


class StepLimit:
    """``step_time_limit`` for the steps of one loop, as a cheap reusable context manager
    (a generator-based one costs more than the pure step it watches)."""

    __slots__ = ("seconds", "active", "run_id", "node_id", "_outer")

    def __init__(self, seconds: Optional[float]) -> None:
        self.seconds = seconds
        # Only inside ``watching`` (the loop's timer is ticking) and in the main thread.
        self.active = _usable(seconds) and _watch.depth > 0
        self.run_id = self.node_id = ""
        self._outer: Tuple[Optional[float], Any] = (None, None)

    def of(self, run_id: str, node_id: str) -> "StepLimit":
        self.run_id, self.node_id = run_id, node_id
        return self

    def _error(self) -> StepTimeoutError:
        return StepTimeoutError(self.run_id, self.node_id, self.seconds or 0)

    def __enter__(self) -> None:
        if not self.active:
            return
        assert self.seconds is not None
        self._outer = (_watch.deadline, _watch.make_error)
        end = time.monotonic() + self.seconds
        if self._outer[0] is not None and self._outer[0] < end:
            _watch.deadline, _watch.make_error = self._outer  # the enclosing step ends first
        else:
            _watch.deadline, _watch.make_error = end, self._error

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            _watch.deadline, _watch.make_error = self._outer


__all__: List[str] = ["watching", "step_time_limit", "StepLimit"]
