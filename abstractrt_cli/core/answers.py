"""The one rule for answers to a prompt with choices (PRODUCT §4a).

``resume``, answer scripts and interactive ``answer`` all go through ``match_choice``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ..errors import InvalidChoiceError
from .models import WaitReason, WaitState


def match_choice(wait: WaitState, answer: Any, *, run_id: str = "") -> Any:
    """The answer as stored: the choice as written when it matches one exactly, or
    case-insensitively when exactly one choice matches; else the answer as typed when
    free text is allowed; else InvalidChoiceError naming the choices."""
    choices = wait.choices or []
    if not choices:
        return answer
    if isinstance(answer, str):
        if answer in choices:
            return answer
        folded = [c for c in choices if c.casefold() == answer.strip().casefold()]
        if len(folded) == 1:
            return folded[0]
    if wait.allow_free_text and answer is not None:
        return answer
    raise InvalidChoiceError(run_id, answer, choices)


def normalise_payload(wait: Optional[WaitState], payload: Dict[str, Any], *,
                      run_id: str) -> Dict[str, Any]:
    """The payload with its ``response`` matched to the prompt's choices (a copy if changed).

    A payload without ``response`` to a prompt that allows no free text is refused: the
    refusal names the choices (never ``None``)."""
    if wait is None or wait.reason != WaitReason.USER or not wait.choices:
        return payload
    if "response" not in payload:
        if wait.allow_free_text:
            return payload
        raise InvalidChoiceError(run_id, None, wait.choices)
    matched = match_choice(wait, payload["response"], run_id=run_id)
    if matched is payload["response"] or matched == payload["response"]:
        return payload
    return {**payload, "response": matched}
