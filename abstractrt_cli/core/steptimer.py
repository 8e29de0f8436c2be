"""The step time limit: a node or effect handler that runs too long fails its attempt.

In the main thread it is ``SIGALRM`` (``setitimer``): the handler raises
``StepTimeoutError`` inside the running Python code, so even ``while True: pass`` is
stopped, and a blocking system call is interrupted (Python retries it after running the
handler, which raises). Elsewhere (a thread) signals cannot reach the code: there the
limit is not enforced, and the runtime says so in its docstring rather than pretend.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from ..errors import StepTimeoutError


@contextmanager
def step_time_limit(seconds: Optional[float], make_error: Callable[[], StepTimeoutError]
                    ) -> Iterator[None]:
    """Raise ``make_error()`` in this block after ``seconds`` (main thread, POSIX only)."""
    if (not seconds or seconds <= 0 or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    def on_alarm(signum: int, frame: Any) -> None:
        raise make_error()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:  # an enclosing limit (a child ticked inside a step) keeps running
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))
