"""A deterministic model for tests: ``scripted/NAME`` answers with a registered function.

A script is any callable ``(messages, params) -> reply``. The reply is the answer's text, or, for
a model that calls tools, an assistant message in OpenAI's shape (a `Message` or a dict such as
``{"content": "", "tool_calls": [...]}``). ``params`` holds the call's parameters (``tools``,
``tool_choice``, ``temperature``...) and ``sample``. Register your own with `register`; the
built-ins are:

- ``scripted/echo``: repeats the last user message.
- ``scripted/constant``: answers ``params["reply"]`` (default ``"ok"``).

Token counts are whitespace word counts, so budgets and journals behave as with a real model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.backends.base import Backend, Reply
from agentopt.lm.request import ChatRequest
from agentopt.types import Message

Script = Callable[[list[Message], dict[str, Any]], str | Message | dict[str, Any]]

_SCRIPTS: dict[str, Script] = {}


def register(name: str, script: Script) -> str:
    """Make ``scripted/NAME`` answer with ``script``; returns the model string."""
    _SCRIPTS[name] = script
    return f"scripted/{name}"


def _echo(messages: list[Message], params: dict[str, Any]) -> str:
    users = [m.content for m in messages if m.role == "user"]
    return users[-1] if users else ""


def _constant(messages: list[Message], params: dict[str, Any]) -> str:
    return str(params.get("reply", "ok"))


# The name `agentopt.lm` exports it under.
register_script = register

register("echo", _echo)
register("constant", _constant)


def available() -> list[str]:
    return sorted(f"scripted/{name}" for name in _SCRIPTS)


class ScriptedBackend(Backend):
    greedy_by_default = True  # a script is a function of its request
    def __init__(self, name: str) -> None:
        if name not in _SCRIPTS:
            known = ", ".join(available())
            raise UserError(f"unknown scripted model 'scripted/{name}' (known: {known})")
        self.name = name

    def complete(self, request: ChatRequest, transport: dict[str, Any]) -> Reply:
        params = dict(request.params, sample=request.sample)
        reply = _as_message(_SCRIPTS[self.name](list(request.messages), params))
        return Reply(
            text=reply.content,
            tool_calls=reply.tool_calls,
            finish_reason="tool_calls" if reply.tool_calls else "stop",
            prompt_tokens=sum(_words(m) for m in request.messages),
            completion_tokens=_words(reply),
        )


def _as_message(reply: str | Message | dict[str, Any]) -> Message:
    if isinstance(reply, str):
        return Message(role="assistant", content=reply)
    if isinstance(reply, Message):
        return reply
    return Message.model_validate({"role": "assistant", **reply})


def _words(message: Message) -> int:
    """A message's size in words, its tool calls' arguments included (what a real model bills)."""
    calls = json.dumps(message.tool_calls) if message.tool_calls else ""
    return len(message.content.split()) + len(calls.split())
