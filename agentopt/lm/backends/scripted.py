"""A deterministic model for tests: ``scripted/NAME`` answers with a registered function.

A script is any callable ``(messages, params) -> str``. Register your own with `register`; the
built-ins are:

- ``scripted/echo``: repeats the last user message.
- ``scripted/constant``: answers ``params["reply"]`` (default ``"ok"``).

Token counts are whitespace word counts, so budgets and journals behave as with a real model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.backends.base import Backend, Reply
from agentopt.lm.request import ChatRequest
from agentopt.types import Message

Script = Callable[[list[Message], dict[str, Any]], str]

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
        text = _SCRIPTS[self.name](list(request.messages), params)
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        return Reply(
            text=text,
            finish_reason="stop",
            prompt_tokens=prompt_words,
            completion_tokens=len(text.split()),
        )
