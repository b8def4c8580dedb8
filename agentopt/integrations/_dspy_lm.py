"""`AgentoptLM`: a DSPy LM whose every call is made by an `agentopt.LM`.

DSPy 3.4's extension point for a model is an *engine* (``complete(Request) -> Response``) given
to ``dspy.LM(engine=...)``; subclassing ``BaseLM.forward`` is deprecated there (a warning on every
call) and goes in 3.5. So `AgentoptLM` is a ``dspy.LM`` with an engine that turns DSPy's
canonical request back into the OpenAI-shaped chat agentopt takes, calls ``LM.chat`` and reads
the completion back as a DSPy response. DSPy's own response cache and retries are off:
agentopt's cache, budget, journal and retry policy are the ones that count.

Sampled calls follow agentopt's rules (`agentopt.lm.request`): a greedy call (temperature 0,
the default here) has one answer, cached; a sampled one is a fresh draw unless it names its
sample. Inside `episode(name)` (the agent of `optimize_program` opens one per example) the k-th
identical sampled request is sample ``name/k``, so a resumed run is served the same draws.

This module imports DSPy; `agentopt.integrations.dspy` imports it only once DSPy is known to
be installed.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any

import dspy
from dspy import lm15

from agentopt.errors import UserError
from agentopt.lm.client import LM
from agentopt.types import Completion, content_hash

# Config fields that map one to one onto chat parameters agentopt passes to its backends.
_SAMPLING = ("max_tokens", "temperature", "top_p", "top_k", "seed", "frequency_penalty", "presence_penalty")
# Config fields handled below, or empty by default; any other one set is refused, not dropped.
_HANDLED = frozenset({*_SAMPLING, "stop", "response_format", "tool_choice", "extensions"})


@dataclass
class Episode:
    """One example played by a program: names its sampled calls and adds up its tokens."""

    name: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, request_key: str) -> str:
        """The sample a request is: how many identical requests this episode made before it."""
        with self._lock:
            k = self._seen[request_key]
            self._seen[request_key] += 1
        return f"{self.name}/{k}"

    def add(self, completion: Completion) -> None:
        with self._lock:
            self.prompt_tokens += completion.usage.prompt_tokens
            self.completion_tokens += completion.usage.completion_tokens


_EPISODE: ContextVar[Episode | None] = ContextVar("agentopt_dspy_episode", default=None)


@contextmanager
def episode(name: str) -> Iterator[Episode]:
    """Calls made in this context (this thread, or tasks it awaits) belong to episode ``name``."""
    current = Episode(name)
    token = _EPISODE.set(current)
    try:
        yield current
    finally:
        _EPISODE.reset(token)


class AgentoptLM(dspy.LM):
    """A DSPy LM that forwards every request to ``lm`` (an `agentopt.LM`).

    Its calls are budgeted, cached, journalled (``calls.jsonl``) and replayed on resume by
    ``lm``; DSPy's cache is bypassed. ``temperature`` defaults to 0, so every call is cacheable;
    other keyword arguments are DSPy's defaults for each request (``max_tokens``...).

        lm = AgentoptLM(agentopt.LM("openai/gpt-4o-mini"))
        with dspy.context(lm=lm):
            program(question="...")
    """

    def __init__(self, lm: LM, *, temperature: float | None = 0.0, **kwargs: Any) -> None:
        engine = _Engine(lm)
        super().__init__(f"agentopt/{lm.model}", engine=engine, async_engine=_AsyncEngine(engine),
                         cache=False, num_retries=0, temperature=temperature, **kwargs)
        self.agentopt_lm = lm


class _Engine:
    """DSPy's engine contract: one request in, one response out; no cache, no retries."""

    def __init__(self, lm: LM) -> None:
        self.lm = lm

    def complete(self, request: lm15.Request) -> lm15.Response:
        messages, params = chat_request(request)
        current = _EPISODE.get()
        sample = current.sample(content_hash(messages, params)) if current is not None else None
        # An empty reply is the program's failure to answer (DSPy cannot parse it), not the
        # endpoint's: agentopt's agent accepts one too.
        completion = self.lm.chat(messages, sample=sample, allow_empty=True, **params)
        if current is not None:
            current.add(completion)
        return dspy_response(completion)

    def stream(self, request: lm15.Request) -> Iterator[Any]:
        # No streaming from agentopt's LM: the whole answer, as the events of one chunk.
        return lm15.response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class _AsyncEngine:
    """The same engine for DSPy's async path (``program.acall``): the call on a worker thread,
    which carries the episode along (asyncio.to_thread copies the context)."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine

    async def complete(self, request: lm15.Request) -> lm15.Response:
        return await asyncio.to_thread(self.engine.complete, request)

    async def stream(self, request: lm15.Request) -> Any:
        for event in lm15.response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        pass


# --- DSPy's request as an OpenAI-shaped chat, and the completion back --------------------------
def chat_request(request: lm15.Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(messages, parameters) for ``LM.chat``: text, tool calls and tool results carried over;
    anything agentopt's LM cannot send (images, files, reasoning settings) is a UserError."""
    messages: list[dict[str, Any]] = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else _text(request.system, "system")
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        messages.extend(_chat_messages(message))
    return messages, _params(request)


def _chat_messages(message: lm15.Message) -> list[dict[str, Any]]:
    results = [p for p in message.parts if isinstance(p, lm15.ToolResultPart)]
    if results:
        # OpenAI's shape: one tool message per result.
        return [{"role": "tool", "tool_call_id": p.id, "content": _text(p.content, "tool result"),
                 **({"name": p.name} if p.name else {})} for p in results]
    calls = [p for p in message.parts if isinstance(p, lm15.ToolCallPart)]
    # The model's own reasoning in past turns is not sent back (as OpenAI's chat API has it).
    said = [p for p in message.parts if not isinstance(p, lm15.ToolCallPart | lm15.ThinkingPart)]
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": _text(said, f"{message.role} message")}
    if calls:
        out["tool_calls"] = [{"id": p.id, "type": "function",
                              "function": {"name": p.name, "arguments": json.dumps(p.input)}} for p in calls]
    return [out]


def _text(parts: Any, where: str) -> str:
    unsupported = sorted({type(p).__name__ for p in parts if not isinstance(p, lm15.TextPart)})
    if unsupported:
        raise UserError(f"AgentoptLM sends text and tool calls only; a {where} holds "
                        f"{', '.join(unsupported)}")
    return "".join(p.text for p in parts)


def _params(request: lm15.Request) -> dict[str, Any]:
    config = request.config
    refused = [f.name for f in fields(config)
               if f.name not in _HANDLED and getattr(config, f.name) not in (None, (), {})]
    if refused:
        raise UserError(f"AgentoptLM cannot pass DSPy's {', '.join(refused)} setting to an agentopt model")
    params: dict[str, Any] = {name: getattr(config, name) for name in _SAMPLING}
    if config.stop:
        params["stop"] = list(config.stop)
    if config.response_format is not None:
        params["response_format"] = _response_format(config.response_format)
    tools = [t for t in request.tools if isinstance(t, lm15.FunctionTool)]
    if len(tools) != len(request.tools):
        raise UserError("AgentoptLM passes function tools only, not a provider's built-in tools")
    if tools:
        params["tools"] = [{"type": "function", "function": {
            "name": t.name, "parameters": t.parameters,
            **({"description": t.description} if t.description else {})}} for t in tools]
    if config.tool_choice is not None:
        params.update(_tool_choice(config.tool_choice))
    params.update(config.extensions or {})
    return {k: v for k, v in params.items() if v is not None}


def _response_format(canonical: dict[str, Any]) -> dict[str, Any]:
    if canonical.get("type") == "json_object":
        return {"type": "json_object"}
    inner = {"name": canonical.get("name") or "response", "schema": canonical["schema"]}
    if "strict" in canonical:
        inner["strict"] = canonical["strict"]
    return {"type": "json_schema", "json_schema": inner}


def _tool_choice(choice: lm15.ToolChoice) -> dict[str, Any]:
    out: dict[str, Any] = {"tool_choice": choice.mode}
    if len(choice.allowed) == 1 and choice.mode == "required":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.allowed[0]}}
    elif choice.allowed:
        raise UserError("AgentoptLM cannot restrict the model to a subset of several tools")
    if choice.parallel is not None:
        out["parallel_tool_calls"] = choice.parallel
    return out


def dspy_response(completion: Completion) -> lm15.Response:
    """The completion as DSPy's canonical response, through DSPy's own reader of OpenAI's shape."""
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.tool_calls:
        message["tool_calls"] = completion.tool_calls
    usage = completion.usage
    return lm15.response_from_openai_chat({
        "id": completion.request_hash or None,
        "object": "chat.completion",
        "model": completion.model,
        "choices": [{"index": 0, "finish_reason": completion.finish_reason or "stop", "message": message}],
        "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  "total_tokens": usage.total_tokens},
    })
