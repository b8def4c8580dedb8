"""Serve the embedded model as an OpenAI-compatible endpoint (llama.cpp's own server).

Any OpenAI client can then use it: litellm as ``openai/smollm2-135m`` with
``api_base=http://127.0.0.1:PORT/v1``, DSPy, LangChain, curl.
"""

from __future__ import annotations

import os

from agentopt.errors import UserError
from agentopt.lm.backends.embedded import gguf_path

SERVED_NAME = "smollm2-135m"


def create_server_app(n_ctx: int = 2048) -> object:
    try:
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        raise UserError(
            "serving needs llama-cpp-python[server] (pip install 'llama-cpp-python[server]')"
        ) from exc
    threads = int(os.environ.get("AGENTOPT_THREADS", "0")) or (os.cpu_count() or 1)
    model = ModelSettings(
        model=str(gguf_path()), model_alias=SERVED_NAME, n_ctx=n_ctx, n_threads=threads, verbose=False
    )
    return create_app(server_settings=ServerSettings(), model_settings=[model])


def serve_embedded(host: str = "127.0.0.1", port: int = 8080, n_ctx: int = 2048) -> None:
    import socket

    import uvicorn

    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise UserError(f"port {port} on {host} is already in use")
    uvicorn.run(create_server_app(n_ctx), host=host, port=port, log_level="warning")
