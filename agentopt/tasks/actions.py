"""Action grammars: what a well-formed action looks like, for constrained decoding.

A task may declare, in ``task.toml``::

    [actions]
    regex = '\\{(Move (up|down|left|right)|Pick goal)\\}'
    # or: json_schema = { type = "object", additionalProperties = { type = "string" } }

With ``--constrain-actions`` the agent asks the model to decode only text the grammar accepts.
The request carries it as the chat parameter ``constraint`` (``{"regex": ...}`` or
``{"json_schema": ...}``), which each backend turns into what it supports: a llama.cpp grammar
for local models, ``response_format`` (JSON schema) or ``guided_regex``/``grammar`` fields for
OpenAI-compatible servers (vLLM, llama.cpp's server). Being a parameter, it is part of the cache
key, so constrained and free answers are never mixed up.

Constraining is off by default: PROMST's setting lets the model reason before its action, and
a grammar takes that away. It helps models too small to keep to the format at all.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class ActionGrammar(BaseModel):
    """The ``[actions]`` table of a task.toml: exactly one of a regex or a JSON schema."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a default

    regex: str | None = None
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ActionGrammar:
        if (self.regex is None) == (self.json_schema is None):
            raise ValueError("give exactly one of actions.regex or actions.json_schema")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"actions.regex does not compile: {exc}") from exc
        return self

    def constraint(self) -> dict[str, Any]:
        """The ``constraint`` chat parameter for this grammar."""
        if self.regex is not None:
            return {"regex": self.regex}
        return {"json_schema": self.json_schema}
