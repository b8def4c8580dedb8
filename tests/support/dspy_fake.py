"""A scripted OpenAI-compatible model on 127.0.0.1 that answers in DSPy's chat format, for the
peer-benchmark smoke test (no weights, no network).

DSPy asks for output fields between ``[[ ## name ## ]]`` markers; this model fills each field the
request names with a fixed line, ends with ``[[ ## completed ## ]]``, and answers any request
without markers (agentopt's) with ``Answer: 0``. Usage is counted in words.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")


def answer(messages: list[dict[str, Any]], reply: str = "Answer: 0") -> str:
    last = str(messages[-1].get("content") or "") if messages else ""
    fields = [f for f in dict.fromkeys(_FIELD.findall(last)) if f != "completed"]
    if not fields:
        return reply
    body = "".join(f"[[ ## {f} ## ]]\n{reply}\n\n" for f in fields)
    return body + "[[ ## completed ## ]]"


class DspyFakeServer:
    def __init__(self, reply: str = "Answer: 0") -> None:
        self.reply = reply  # every field of every answer
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DspyFakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send({"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                messages = body.get("messages") or []
                text = answer(messages, fake.reply)
                with fake._lock:
                    fake.requests += 1
                prompt_words = sum(len(str(m.get("content") or "").split()) for m in messages)
                self._send(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "model": body.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_words,
                            "completion_tokens": len(text.split()),
                            "total_tokens": prompt_words + len(text.split()),
                        },
                    }
                )

        return Handler
