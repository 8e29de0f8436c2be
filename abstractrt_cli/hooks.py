"""Notification hooks (PRODUCT §7): a command line per transition, after it is durable.

Config key ``hooks``::

    hooks:
      on_wait: "notify-send \"$ABSTRACTRT_PROMPT\""   # a person's, an event's or a job's wait
      on_complete: "mail -s done me@example.com"
      on_fail: "logger -t abstractrt failed $ABSTRACTRT_RUN_ID"
      timeout: 10                                    # seconds, default 10

Each hook runs through ``/bin/sh -c`` with the run's JSON on stdin and
``ABSTRACTRT_RUN_ID``, ``ABSTRACTRT_EVENT`` (``wait``/``complete``/``fail``) and, for a
person's wait, ``ABSTRACTRT_PROMPT`` and ``ABSTRACTRT_ANSWER_CMD`` in its environment. A
hook that fails or runs past its timeout is killed (its whole process group) and
reported as a warning: it never fails or rolls back the run, whose checkpoint is durable
before the hook starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .core.models import RunState, WaitReason
from .errors import ConfigError

HOOK_EVENTS = {"wait": "on_wait", "complete": "on_complete", "fail": "on_fail"}
HOOK_KEYS = ("on_wait", "on_complete", "on_fail", "timeout")
DEFAULT_TIMEOUT = 10.0


def parse_hooks(data: Any, *, source: str) -> Dict[str, Any]:
    """The ``hooks`` setting, checked: command strings and a positive timeout."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: hooks must be a mapping with keys {', '.join(HOOK_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(HOOK_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown hook key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(HOOK_KEYS)})")
    for key in ("on_wait", "on_complete", "on_fail"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise ConfigError(f"{source}: hooks.{key} must be a command line (a string)")
    timeout = data.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"{source}: hooks.timeout must be a number of seconds above 0")
    return {**data, "timeout": float(timeout)}


@dataclass
class HookRunner:
    """Runs the configured hook of each transition the runtime reports."""

    hooks: Dict[str, Any]
    # The shell-quoted command that answers a run interactively (same store, workflows).
    answer_cmd: Callable[[RunState], str]
    # Settings the hook's own abstractrt commands must see (the store and workflows this
    # command used, even when they came from options rather than the environment).
    env: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    ran: List[Dict[str, Any]] = field(default_factory=list)

    def __call__(self, event: str, run: RunState) -> None:
        command = self.hooks.get(HOOK_EVENTS.get(event, ""))
        if not command:
            return
        env = dict(os.environ, **self.env, ABSTRACTRT_RUN_ID=run.run_id, ABSTRACTRT_EVENT=event)
        if event == "wait" and run.waiting is not None and run.waiting.reason == WaitReason.USER:
            env["ABSTRACTRT_PROMPT"] = run.waiting.prompt or ""
            env["ABSTRACTRT_ANSWER_CMD"] = self.answer_cmd(run)
        timeout = float(self.hooks.get("timeout", DEFAULT_TIMEOUT))
        data = json.dumps(run.to_jsonable()).encode("utf-8")
        name = HOOK_EVENTS[event]
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)
        except OSError as exc:
            self.warnings.append(f"warning: hook {name} for run {run.run_id[:8]} could not start: "
                                 f"{exc.strerror or exc}")
            return
        try:
            _, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            self.warnings.append(f"warning: hook {name} for run {run.run_id[:8]} ran past its "
                                 f"{timeout:g} s timeout and was killed")
            self.ran.append({"hook": name, "run_id": run.run_id, "rc": None})
            return
        except BrokenPipeError:  # the hook did not read its stdin: fine
            proc.wait(timeout=timeout)
            err = b""
        self.ran.append({"hook": name, "run_id": run.run_id, "rc": proc.returncode})
        if proc.returncode != 0:
            last = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            self.warnings.append(f"warning: hook {name} for run {run.run_id[:8]} exited "
                                 f"{proc.returncode}" + (f": {last[0][:200]}" if last[0] else ""))


def _kill_group(proc: "subprocess.Popen[bytes]") -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):
        pass


def make_runner(hooks: Optional[Dict[str, Any]], answer_cmd: Callable[[RunState], str],
                env: Optional[Dict[str, str]] = None) -> Optional[HookRunner]:
    return HookRunner(hooks, answer_cmd, dict(env or {})) if hooks else None
