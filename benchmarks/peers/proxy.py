"""The one place calls are counted: an HTTP proxy in front of the model server.

agentopt and DSPy both talk to the model through here, each run under its own path prefix
(``http://127.0.0.1:PORT/<tag>/v1``), so the calls and tokens of every run are counted by the
same code, from the server's own replies, and neither library's accounting is trusted.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel


class Tally(BaseModel):
    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CountingProxy:
    """Forwards ``/<tag>/v1/...`` to ``upstream`` + ``/v1/...`` and tallies each tag.

    A call counts when the server answered it (any status); ``failed`` counts the answers that
    were not 200. Use as a context manager, or call `close`.
    """

    def __init__(self, upstream: str, host: str = "127.0.0.1", timeout_s: float = 600.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.timeout_s = timeout_s
        self._tallies: dict[str, Tally] = defaultdict(Tally)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, tag: str) -> str:
        """The base URL (``.../v1``) a client of run ``tag`` is given."""
        if not tag or "/" in tag:
            raise ValueError(f"a tag is one path segment, got {tag!r}")
        return f"http://127.0.0.1:{self.port}/{tag}/v1"

    def tally(self, tag: str) -> Tally:
        with self._lock:
            return self._tallies[tag].model_copy()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, tag: str, status: int, body: bytes) -> None:
        usage: dict[str, Any] = {}
        if status == 200:
            try:
                usage = json.loads(body).get("usage") or {}
            except (ValueError, AttributeError):
                usage = {}
        with self._lock:
            tally = self._tallies[tag]
            tally.calls += 1
            tally.failed += status != 200
            tally.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            tally.completion_tokens += int(usage.get("completion_tokens") or 0)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _relay(self, method: str) -> None:
                tag, _, rest = self.path.lstrip("/").partition("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {"Content-Type": "application/json"}
                if self.headers.get("Authorization"):  # a server that wants a key gets the client's
                    headers["Authorization"] = self.headers["Authorization"]
                request = urllib.request.Request(
                    f"{proxy.upstream}/{rest}", data=body, method=method, headers=headers
                )
                try:
                    with urllib.request.urlopen(request, timeout=proxy.timeout_s) as reply:
                        status, payload = reply.status, reply.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                except (urllib.error.URLError, TimeoutError) as exc:
                    status, payload = 502, json.dumps({"error": str(exc)}).encode()
                if method == "POST" and rest.endswith("chat/completions"):
                    proxy._record(tag, status, payload)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._relay("POST")

            def do_GET(self) -> None:  # noqa: N802
                self._relay("GET")

        return Handler
