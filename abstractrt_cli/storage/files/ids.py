"""Run ids the file store accepts: safe as file names on every file system."""

from __future__ import annotations

import re
from typing import Any

from ...errors import InvalidRunIdError

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ID_CHARS = re.compile(r"[A-Za-z0-9._-]*")


def is_valid_run_id(run_id: str) -> bool:
    return bool(RUN_ID.fullmatch(run_id)) and ".." not in run_id


def validate_run_id(run_id: Any) -> str:
    """The run id, if it is safe to use in a file name; else InvalidRunIdError."""
    if not isinstance(run_id, str):
        raise InvalidRunIdError(repr(run_id), "a run id is a string")
    if not RUN_ID.fullmatch(run_id):
        raise InvalidRunIdError(
            run_id, "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if ".." in run_id:
        raise InvalidRunIdError(run_id, "'..' is not allowed")
    return run_id

