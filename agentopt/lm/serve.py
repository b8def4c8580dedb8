"""Serve a local model as an OpenAI-compatible endpoint (llama.cpp's own server).

Any OpenAI client can then use it: litellm as ``openai/NAME`` (NAME is the model name without
``local/``, e.g. ``openai/smollm2-135m``) with ``api_base=http://127.0.0.1:PORT/v1``, DSPy,
LangChain, curl.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentopt.errors import UserError
from agentopt.lm.local_models import DEFAULT_LOCAL, PACKAGED, resolve


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
    return create_app(server_settings=ServerSettings(), model_settings=[settings])


def serve_local(
    model: str = DEFAULT_LOCAL, host: str = "127.0.0.1", port: int = 8080, n_ctx: int | None = None
) -> None:
    import socket

    import uvicorn

    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise UserError(f"port {port} on {host} is already in use")
    app = create_server_app(model, n_ctx)
    uvicorn.run(app, host=host, port=port, log_level="warning")
