"""A fake OpenAI-compatible server on 127.0.0.1 for the LLM tests (and bench/llm.py).

Scripted responses, every request recorded:

    with FakeLLM() as srv:
        srv.script([(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
                    (200, srv.reply("hi", total_tokens=12))])
        ... base_url = srv.base_url

A scripted status of ``"hang"`` sleeps longer than any client timeout used in tests.
When the script runs out, every further request gets ``srv.default``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple


class FakeLLM:
    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self._script: List[Tuple[Any, Any, Dict[str, str]]] = []
        self.default: Tuple[Any, Any, Dict[str, str]] = (200, self.reply("ok"), {})
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": json.loads(body or b"null")})
                    status, doc, headers = fake._script.pop(0) if fake._script else fake.default
                if status == "hang":
                    time.sleep(doc)
                    return
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @staticmethod
    def reply(content: Optional[str], *, total_tokens: int = 10,
              tool_calls: Optional[List[Dict[str, Any]]] = None, model: str = "fake-1") -> Dict[str, Any]:
        message: Dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = [
                {"id": c.get("id", f"call_{i}"), "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                for i, c in enumerate(tool_calls)]
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if tool_calls else "stop"}],
                "usage": {"prompt_tokens": total_tokens // 2,
                          "completion_tokens": total_tokens - total_tokens // 2,
                          "total_tokens": total_tokens}}

    def script(self, responses: List[Tuple[Any, ...]]) -> None:
        with self._lock:
            self._script = [(r[0], r[1], r[2] if len(r) > 2 else {}) for r in responses]

    def __enter__(self) -> "FakeLLM":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


if __name__ == "__main__":  # a server for other processes: prints its URL, runs until killed
    import sys

    srv = FakeLLM()
    if len(sys.argv) > 1:  # a JSON file with the script
        srv.script([tuple(r) for r in json.loads(open(sys.argv[1]).read())])
    with srv:
        print(srv.base_url, flush=True)
        while True:
            time.sleep(3600)
