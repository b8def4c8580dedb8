"""A fault-injecting OpenAI-compatible endpoint on 127.0.0.1, for tests.

`FaultProxy` answers ``POST /v1/chat/completions`` (and ``GET /v1/models``). Each request is
either passed through or, with probability ``fault_rate`` (seeded RNG), answered with a fault:

- ``rate_limit``: 429 with ``Retry-After`` (seconds, ``retry_after``)
- ``server_error``: 500, 502 or 503 (in turn)
- ``timeout``: no answer for ``hang_s`` seconds, then the connection is closed without a
  reply; with ``hang_s`` above the client's timeout the client times out first, otherwise it
  sees the server hang up
- ``garbage``: 200 with a body that is not JSON
- ``empty_choices``: 200 with valid JSON but ``"choices": []``

Three more kinds are never drawn at random (they are not transient), only named in
``sequence`` or ``kinds``: ``unauthorized`` (401), ``bad_request`` (400) and ``not_found``
(404), each with an error message that echoes the request's headers back, as some gateways
do, Authorization included: what a client must never print.

Fault kinds are drawn in a shuffled round robin, so any run with at least as many faults as
kinds sees every kind. ``faults`` counts what was injected, per kind; ``passed`` counts the
requests answered normally, ``peak_in_flight`` the most handled at once. The sequence of
outcomes depends only on the seed (after ``sequence``, outcomes forced for the first
requests), not on which request arrives when, so a run's fault counts are repeatable.

Passing through means forwarding to ``upstream`` (a base URL such as ``http://127.0.0.1:PORT``,
e.g. the embedded model's server) or, with no upstream, answering from a built-in
deterministic fake: the last user message reversed, with usage counted in words. Use
``FaultProxy(fault_rate=0)`` for the fault-free reference.

The server is bounded: at most ``max_concurrent`` requests are handled at once, and it shuts
itself down after ``max_lifetime_s`` even if a test forgets to close it. Use it as a context
manager (or call `close`); closing wakes any handler that is hanging to simulate a timeout.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("rate_limit", "server_error", "timeout", "garbage", "empty_choices")
ECHO_KINDS = {"unauthorized": 401, "bad_request": 400, "not_found": 404}
_SERVER_STATUSES = (500, 502, 503)


def fake_answer(messages: list[dict[str, Any]]) -> str:
    """The built-in fake model: the last user message, reversed."""
    users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
    return (users[-1] if users else "")[::-1]


def fake_completion(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    text = fake_answer(messages)
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
    completion_tokens = len(text.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FaultProxy:
    def __init__(
        self,
        upstream: str | None = None,
        *,
        fault_rate: float = 0.3,
        seed: int = 0,
        kinds: Sequence[str] = FAULT_KINDS,
        sequence: Sequence[str] = (),
        retry_after: float = 0,
        hang_s: float = 3.0,
        upstream_timeout_s: float = 120.0,
        max_concurrent: int = 16,
        max_lifetime_s: float = 600.0,
    ) -> None:
        known = set(FAULT_KINDS) | set(ECHO_KINDS)
        unknown = set(kinds) - known | set(sequence) - known - {"pass"}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.upstream = upstream.rstrip("/") if upstream else None
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds)
        self.retry_after = retry_after
        self.hang_s = hang_s
        self.upstream_timeout_s = upstream_timeout_s
        self.faults: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.passed = 0
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0  # most chat requests handled at the same time
        self.seen_headers: list[dict[str, str]] = []
        self._sequence = list(sequence)  # forced outcomes for the first requests, then random
        self._rng = random.Random(seed)
        self._round: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        self._watchdog = threading.Timer(max_lifetime_s, self.close)
        self._watchdog.daemon = True
        self._watchdog.start()

    # --- public ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for OpenAI clients (``api_base``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------
    def _decide(self) -> str:
        """'pass' or a fault kind, for the next request."""
        with self._lock:
            self.requests += 1
            if self._sequence:
                outcome = self._sequence.pop(0)
            elif self.kinds and self._rng.random() < self.fault_rate:
                if not self._round:
                    self._round = list(self.kinds)
                    self._rng.shuffle(self._round)
                outcome = self._round.pop()
            else:
                outcome = "pass"
            if outcome == "pass":
                self.passed += 1
            else:
                self.faults[outcome] += 1
            return outcome

    def _next_server_status(self) -> int:
        with self._lock:
            return _SERVER_STATUSES[(self.faults["server_error"] - 1) % len(_SERVER_STATUSES)]

    def _forward(self, path: str, body: bytes | None, method: str) -> tuple[int, bytes, str]:
        request = urllib.request.Request(
            self.upstream + path, data=body, method=method,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.upstream_timeout_s) as resp:
                return resp.status, resp.read(), resp.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "application/json")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                with proxy._lock:
                    proxy.statuses[status] += 1
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(data).encode(), headers=headers)

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self._json(404, {"error": {"message": "not found"}})
                elif proxy.upstream:
                    self._send(*proxy._forward(self.path, None, "GET"))
                else:
                    self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                with proxy._slots:
                    with proxy._lock:
                        proxy.in_flight += 1
                        proxy.peak_in_flight = max(proxy.peak_in_flight, proxy.in_flight)
                    try:
                        self._post()
                    finally:
                        with proxy._lock:
                            proxy.in_flight -= 1

            def _post(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                outcome = proxy._decide()
                if outcome == "rate_limit":
                    self._json(429, {"error": {"message": "rate limited (injected)", "type": "rate_limit"}},
                               headers={"Retry-After": f"{proxy.retry_after:g}"})
                elif outcome == "server_error":
                    status = proxy._next_server_status()
                    self._json(status, {"error": {"message": f"injected {status}", "type": "server_error"}})
                elif outcome == "timeout":
                    proxy._stop.wait(proxy.hang_s)
                    self.close_connection = True  # hang up without a reply
                elif outcome == "garbage":
                    self._send(200, b'{"id": "chatcmpl-x", "choices": [ <<< this is not json')
                elif outcome in ECHO_KINDS:
                    echoed = json.dumps(dict(self.headers.items()))
                    self._json(ECHO_KINDS[outcome], {"error": {
                        "message": f"request refused ({outcome}); headers received: {echoed}",
                        "type": outcome}})
                elif outcome == "empty_choices":
                    self._json(200, {"id": "chatcmpl-x", "object": "chat.completion", "created": 1,
                                     "model": "fake", "choices": []})
                elif proxy.upstream:
                    self._send(*proxy._forward(self.path, raw, "POST"))
                else:
                    try:
                        body = json.loads(raw or b"{}")
                    except json.JSONDecodeError:
                        self._json(400, {"error": {"message": "request body is not JSON"}})
                        return
                    self._json(200, fake_completion(body))

        return Handler


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout_s}s: {last}")
