"""A chat request in canonical form, and its hash.

The hash is the cache key and the journal's request id. It covers what determines the answer
(model, messages, sampling parameters, sample index) and deliberately leaves out where the
request goes and who pays for it (base URL, key, headers, timeout): the same question asked of
the same model through another proxy is the same question, and secrets must never reach a key
that is stored on disk.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentopt.types import Message, content_hash

# Parameters that route or authenticate a request rather than shape its answer.
TRANSPORT_PARAMS = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "organization",
        "headers",
        "extra_headers",
        "timeout",
        "num_retries",
        "max_retries",
    }
)


class ChatRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    messages: tuple[Message, ...]
    params: dict[str, Any] = Field(default_factory=dict)
    sample: int = Field(default=0, ge=0, description="index among repeated samples of one request")

    @classmethod
    def build(
        cls, model: str, messages: list[Message] | list[dict[str, str]], sample: int = 0,
        **params: Any,
    ) -> ChatRequest:
        msgs = tuple(m if isinstance(m, Message) else Message(**m) for m in messages)
        answer_params = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and v is not None}
        return cls(model=model, messages=msgs, params=answer_params, sample=sample)

    def key(self) -> str:
        return content_hash(
            self.model,
            [m.model_dump() for m in self.messages],
            self.params,
            self.sample,
            length=32,
        )
