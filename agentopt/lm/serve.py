"""Serve a local model as an OpenAI-compatible endpoint (llama.cpp's own server).

Any OpenAI client can then use it: litellm as ``openai/NAME`` (NAME is the model name without
``local/``, e.g. ``openai/smollm2-135m``) with ``api_base=http://127.0.0.1:PORT/v1``, DSPy,
LangChain, curl.

llama.cpp's server answers a request body it cannot validate with 500, as if it had failed
itself, and generates for a chat request with no messages at all. `RequestGuard` sits in
front of it and answers such requests as OpenAI does: 400 for a body that is not JSON, 422 for
one that is not a valid request.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.files import describe_os_error
from agentopt.lm.local_models import DEFAULT_LOCAL, PACKAGED, resolve

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def served_name(model: str) -> str:
    """The name clients use: ``smollm2-135m`` for ``local/smollm2-135m``, a file's stem otherwise."""
    if model in PACKAGED:
        return model.split("/", 1)[1]
    return Path(model.split("/", 1)[-1]).stem


def create_server_app(model: str = DEFAULT_LOCAL, n_ctx: int | None = None) -> object:
    try:
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        raise UserError(
            "serving needs llama-cpp-python[server] (pip install 'llama-cpp-python[server]')"
        ) from exc
    path, default_ctx = resolve(model)
    threads = int(os.environ.get("AGENTOPT_THREADS", "0")) or (os.cpu_count() or 1)
    settings = ModelSettings(
        model=str(path), model_alias=served_name(model), n_ctx=n_ctx or default_ctx,
        n_threads=threads, verbose=False,
    )
    try:
        app = create_app(server_settings=ServerSettings(), model_settings=[settings])
    except ValueError as exc:  # llama.cpp's "Failed to load model": a damaged or foreign GGUF
        raise UserError(f"llama.cpp cannot load {path}: {exc}") from None
    return RequestGuard(app)


class RequestGuard:
    """ASGI wrapper that checks the body of completion requests before the server sees it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/") if scope.get("type") == "http" else ""
        if scope.get("method") != "POST" or path not in _CHECKS:
            await self.app(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        if disconnected:
            return
        problem = _CHECKS[path](body)
        if problem is not None:
            await _send_error(send, *problem)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body over once, then defers to the real one."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, status: int, message: str) -> None:
    kind = "invalid_request_error"
    payload = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _json_object(body: bytes) -> tuple[dict[str, Any] | None, tuple[int, str] | None]:
    try:
        data = json.loads(body or b"")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, (400, "the request body is not JSON")
    if not isinstance(data, dict):
        return None, (422, "the request body must be a JSON object")
    return data, None


def _check_chat(body: bytes) -> tuple[int, str] | None:
    data, problem = _json_object(body)
    if data is None:
        return problem
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return 422, "'messages' must be a non-empty list"
    return _validate(data, "CreateChatCompletionRequest")


def _check_completion(body: bytes) -> tuple[int, str] | None:
    data, problem = _json_object(body)
    if data is None:
        return problem
    if "prompt" not in data:
        return 422, "'prompt' is required"
    return _validate(data, "CreateCompletionRequest")


def _validate(data: dict[str, Any], model_name: str) -> tuple[int, str] | None:
    """llama.cpp's own request model decides the rest (types, ranges, message shapes)."""
    from llama_cpp.server import types
    from pydantic import ValidationError

    try:
        getattr(types, model_name).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return 422, f"{where}: {first['msg']}" if where else first["msg"]
    return None


_CHECKS: dict[str, Callable[[bytes], tuple[int, str] | None]] = {
    "/v1/chat/completions": _check_chat,
    "/v1/completions": _check_completion,
}


def check_port_free(host: str, port: int) -> None:
    """A UserError when ``host:port`` cannot be served on (taken, not ours to bind, a host
    that does not resolve), found before a model is loaded or anything is printed."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        raise UserError(f"cannot serve on {host}: the name does not resolve") from None
    with socket.socket(family, kind, proto) as probe:
        probe.settimeout(2)
        if probe.connect_ex(address) == 0:
            raise UserError(f"port {port} on {host} is already in use")
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port}: {describe_os_error(exc)}") from None


def serve_local(
    model: str = DEFAULT_LOCAL,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve until interrupted; ``on_ready`` runs once the model is loaded, just before the
    server starts listening."""
    import uvicorn

    check_port_free(host, port)
    app = create_server_app(model, n_ctx)
    if on_ready is not None:
        on_ready()
    uvicorn.run(app, host=host, port=port, log_level="warning")
