"""The built-in ``llm_call``: any OpenAI-compatible ``POST {base_url}/chat/completions``.

Configured by the config key ``llm`` (``base_url``, ``model``, ``api_key_env``,
``timeout``) or a workflow module's ``LLM = {...}`` (which overrides it key by key).
Without either, ``llm_call`` stays a job that someone else answers (PRODUCT §1).

The client is the standard library's ``urllib``, imported when a call is made: one
request per attempt, no hidden retries, no dependency, and nothing loaded by commands
that never call a model (cron runs us every minute). ``httpx`` would add connection
pooling, which a run that makes one call per tick does not use.

Each attempt is one request and one ledger record. HTTP 429 and 5xx, timeouts and
refused connections fail the attempt as retryable (``Retry-After`` is honoured by the
runtime); any other 4xx fails at once with the server's message. The API key is read
from the environment when the request is sent and goes only into its header: it is
never in the payload, the result, an error or a log.

What can be repeated after a crash: a ``kill -9`` after the server has answered but
before the response's ledger record is on disk (the append and its fdatasync, well
under a millisecond after the response is parsed) makes the next tick send the request
again, because nothing durable says it was answered. Once that record is written, the
result is reused and never requested again.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from .effects import EffectContext
from .outcome import EffectOutcome

DEFAULT_TIMEOUT = 60.0
LLM_KEYS = ("base_url", "model", "api_key_env", "timeout")
_MAX_ERROR_TEXT = 500


class LLMConfigError(ValueError):
    pass


def merge_llm_config(base: Optional[Dict[str, Any]], override: Optional[Dict[str, Any]]
                     ) -> Optional[Dict[str, Any]]:
    """The config key ``llm`` overridden key by key by a module's ``LLM``."""
    if not base and not override:
        return None
    merged = {**(base or {}), **(override or {})}
    unknown = sorted(set(merged) - set(LLM_KEYS))
    if unknown:
        raise LLMConfigError(f"llm: unknown key(s) {', '.join(unknown)} (known: {', '.join(LLM_KEYS)})")
    if not merged.get("base_url"):
        raise LLMConfigError("llm: base_url is required")
    return merged


def _messages(payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    messages = payload.get("messages")
    if messages is None and payload.get("prompt") is not None:
        messages = [{"role": "user", "content": str(payload["prompt"])}]
    if not isinstance(messages, list) or not messages:
        raise LLMConfigError("llm_call needs payload.messages (a non-empty list) or payload.prompt")
    return messages


def build_request(config: Dict[str, Any], payload: Dict[str, Any]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"model": payload.get("model") or config.get("model"),
                            "messages": _messages(payload)}
    if not body["model"]:
        raise LLMConfigError("llm_call needs a model: payload.model or llm.model")
    for key in ("tools", "temperature", "max_tokens", "tool_choice"):
        if payload.get(key) is not None:
            body[key] = payload[key]
    return body


def _tool_calls(message: Dict[str, Any]) -> List[Dict[str, Any]]:
    out = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args: Any = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                args = {"_raw": args}
        out.append({"call_id": call.get("id"), "name": fn.get("name"),
                    "arguments": args if isinstance(args, dict) else {"_value": args}})
    return out


def parse_response(data: Any) -> Dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError("the response has no choices")
    choice = data["choices"][0] or {}
    message = choice.get("message") or {}
    return {
        "content": message.get("content"),
        "tool_calls": _tool_calls(message),
        "usage": data.get("usage") or {},
        "model": data.get("model"),
        "finish_reason": choice.get("finish_reason"),
    }


def _server_message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
        elif isinstance(err, str):
            text = err
    except ValueError:
        pass
    return text[:_MAX_ERROR_TEXT] or "(no message)"


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import datetime, timezone

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def call_llm(config: Dict[str, Any], payload: Dict[str, Any]) -> EffectOutcome:
    """One request; the outcome says whether a retry may help."""
    import socket
    import urllib.error
    import urllib.request

    try:
        body = build_request(config, payload)
    except LLMConfigError as exc:
        return EffectOutcome.failed(str(exc), retryable=False)
    url = str(config["base_url"]).rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key_env = config.get("api_key_env")
    key = os.environ.get(key_env) if key_env else None
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = float(config.get("timeout") or DEFAULT_TIMEOUT)
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        message = _server_message(exc.read() or b"")
        status = exc.code
        error = f"HTTP {status} from {url}: {message}"
        if status == 429 or status >= 500:
            return _failed(error, True, _retry_after(exc.headers.get("Retry-After")))
        return EffectOutcome.failed(error, retryable=False)
    except (socket.timeout, TimeoutError):
        return EffectOutcome.failed(f"no answer from {url} within {timeout:g} s (timeout)")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return EffectOutcome.failed(f"no answer from {url} within {timeout:g} s (timeout)")
        return EffectOutcome.failed(f"cannot reach {url}: {getattr(reason, 'strerror', None) or reason}")
    except OSError as exc:
        return EffectOutcome.failed(f"cannot reach {url}: {exc.strerror or exc}")
    try:
        result = parse_response(json.loads(raw))
    except ValueError as exc:
        return EffectOutcome.failed(f"unexpected answer from {url}: {exc}", retryable=False)
    if key:
        # A server that echoes the key must not get it into the ledger.
        text = json.dumps(result)
        if key in text:
            result = json.loads(text.replace(key, "***"))
    return EffectOutcome.completed(result)


def _failed(error: str, retryable: bool, retry_after: Optional[float]) -> EffectOutcome:
    return EffectOutcome(status="failed", error=error, retryable=retryable, retry_after=retry_after)


def llm_call(ctx: EffectContext) -> EffectOutcome:
    """The built-in llm_call, when an ``llm`` config is in effect (else a job)."""
    assert ctx.llm is not None
    return call_llm(ctx.llm, ctx.payload)
