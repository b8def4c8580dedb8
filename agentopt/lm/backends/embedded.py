"""GGUF models run in-process by llama.cpp: ``local/NAME`` or ``local/PATH`` (see `local_models`).

Nothing is downloaded: the packaged models come from pip packages, other files from the user.
The chat template is the one stored in the GGUF file.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.backends.base import Backend, Reply, TransientError
from agentopt.lm.local_models import DEFAULT_LOCAL, PACKAGED, resolve
from agentopt.lm.request import ChatRequest

EMBEDDED_MODEL = DEFAULT_LOCAL


def gguf_path(model: str = EMBEDDED_MODEL) -> Path:
    """Path of a local model's GGUF file; UserError (saying how to install it) if it is missing."""
    return resolve(model)[0]


@lru_cache(maxsize=2)
def _load(path: str, n_ctx: int) -> Any:
    try:
        from agentopt.lm.backends.grammar_first import llama_class

        llama = llama_class()
    except ImportError as exc:
        raise UserError("local models need llama-cpp-python (pip install llama-cpp-python)") from exc
    threads = int(os.environ.get("AGENTOPT_THREADS", "0")) or max(1, os.cpu_count() or 1)
    try:
        llm = llama(model_path=path, n_ctx=n_ctx, n_threads=threads, verbose=False)
    except ValueError as exc:
        raise UserError(f"llama.cpp cannot load {path}: {exc}") from exc
    # Free the model while the interpreter is still whole: left to Llama.__del__ at shutdown,
    # llama.cpp's bindings are already torn down and it prints a TypeError traceback.
    atexit.register(llm.close)
    return llm


@lru_cache(maxsize=32)
def _grammar(constraint_json: str) -> Any:
    """A llama.cpp grammar for a ``constraint`` parameter (see `agentopt.tasks.actions`)."""
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from agentopt.lm.grammar import regex_to_gbnf

    constraint = json.loads(constraint_json)
    if "regex" in constraint:
        gbnf = regex_to_gbnf(constraint["regex"])
    elif "json_schema" in constraint:
        gbnf = json_schema_to_gbnf(json.dumps(constraint["json_schema"]))
    else:
        raise UserError(f"unknown constraint {constraint_json} (use regex or json_schema)")
    return LlamaGrammar.from_string(gbnf, verbose=False)


def _common_prefix(a: Any, b: Any) -> int:
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()[0]
    return int(differ[0]) if len(differ) else n


class EmbeddedBackend(Backend):
    """A llama.cpp model shared by the process; calls are serialised (llama.cpp isn't
    re-entrant, and on a small CPU parallel calls would only fight over the cores).

    llama.cpp keeps the tokens it evaluated last and skips the prefix a new prompt shares with
    them. A multi-step episode resends its growing history every step, so its steps should
    reach the model back to back: ``parallel_calls = 1`` tells the rollout to play episodes one
    after another, where interleaving them would make every step evaluate its whole prompt."""

    _lock = threading.Lock()
    parallel_calls = 1
    greedy_by_default = True

    def __init__(self, model: str = EMBEDDED_MODEL) -> None:
        self.model = model
        self._path: Path | None = None
        self.n_ctx = 0

    def check(self, transport: dict[str, Any]) -> None:
        # Resolving joins and verifies a chunked model once, before any call is made.
        self._path, self.n_ctx = resolve(self.model)

    def weights_version(self) -> str | None:
        if self.model in PACKAGED or self._path is None:
            return None  # a packaged model is pinned by its sha256
        stat = self._path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def complete(self, request: ChatRequest, transport: dict[str, Any]) -> Reply:
        params = dict(request.params)
        if params.get("tools"):
            # llama.cpp would answer in prose as if no tool were offered, and a tool-using agent
            # would then score a model that was never given its tools.
            raise UserError(f"{self.model} runs in process, and the in-process backend cannot call "
                            "tools: give a tool-using agent a model behind an endpoint that supports "
                            "tool calls (e.g. -m openai/... or --api-base)")
        if self._path is None:
            self.check(transport)
        # Seeded by the request's sample identity: a replay draws the same sample, different
        # samples differ, and a sample nobody named is a fresh draw (`ChatRequest.seed`).
        seed = request.seed()
        with self._lock:
            llm = _load(str(self._path), self.n_ctx)
            # What llama.cpp holds from the previous call: the prefix it shares with this
            # prompt is not evaluated again (see `parallel_calls`).
            before = llm.input_ids[: llm.n_tokens].copy()
            try:
                out = llm.create_chat_completion(
                    messages=[m.wire() for m in request.messages],
                    temperature=float(params.get("temperature", 0.0)),
                    top_p=float(params.get("top_p", 1.0)),
                    max_tokens=int(params.get("max_tokens", 256)),
                    stop=params.get("stop"),
                    seed=seed,
                    grammar=_grammar(json.dumps(params["constraint"], sort_keys=True))
                    if params.get("constraint")
                    else None,
                )
            except ValueError as exc:
                # llama.cpp raises ValueError when the prompt exceeds the context window.
                raise UserError(f"{self.model}: {exc}") from exc
            prompt_tokens = int((out.get("usage") or {}).get("prompt_tokens", 0))
            reused = _common_prefix(before, llm.input_ids[:prompt_tokens])
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
            # llama.cpp re-evaluates the last prompt token when the whole prompt matched.
            cached_prompt_tokens=min(reused, max(0, prompt_tokens - 1)),
        )
