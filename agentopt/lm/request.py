"""A chat request in canonical form, and its hash.

The hash is the cache key and the journal's request id. It covers what determines the answer:
the model, the messages, the sampling parameters, which sample this is, and, for a self-hosted
model, which server answers (two servers that both call their model ``openai/x`` are different
models). It leaves out who pays and how (key, headers, timeout), so no secret reaches a key that
is stored on disk.

Sample identity. A greedy request (``temperature=0``) has one answer, so every caller shares it.
A sampled request has many: each caller names the sample it wants (``sample=``, an index or a
string such as ``"seed0/task/train/3/step2"``) and gets that sample, from the cache when it was
drawn before. A sampled request that names no sample is a fresh draw: it is never answered from
the cache, or stored in it.
"""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from agentopt.errors import UserError
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

Sample = int | str


def check_endpoint(api_base: str | None) -> None:
    """A UserError unless ``api_base`` is None or an http(s) URL with a host (and a valid port)."""
    if api_base is None:
        return
    try:
        # urlsplit raises for a malformed IPv6 host ("http://[::1"); .port for a port that is
        # not a number in range.
        parts = urlsplit(api_base.strip())
        parts.port  # noqa: B018
    except ValueError:
        ok = False
    else:
        ok = (parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
              and not any(c.isspace() for c in api_base.strip()))
    if not ok:
        raise UserError(f"endpoint {api_base!r} is not an http(s) URL (e.g. http://127.0.0.1:8080/v1)")


def endpoint_identity(api_base: str | None) -> str | None:
    """Scheme, host, port and path of a self-hosted endpoint: what tells two servers apart,
    without the user:password, query or fragment a URL may carry."""
    if not api_base:
        return None
    parts = urlsplit(api_base.strip())
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}{parts.path.rstrip('/')}"


def _jsonable_response_format(value: Any) -> Any:
    """A pydantic class given as ``response_format`` becomes the strict JSON-schema form OpenAI
    takes (litellm's own conversion: every field required, no extra properties), so it can be
    hashed, cached and sent to any endpoint litellm maps it for."""
    if isinstance(value, type) and issubclass(value, BaseModel):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network on import
        from litellm.utils import type_to_response_format_param

        return type_to_response_format_param(value)
    return value


class ChatRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    messages: tuple[Message, ...]
    params: dict[str, Any] = Field(default_factory=dict)
    sample: Sample | None = Field(
        default=None, description="which of the repeated samples of a sampled request this is"
    )
    endpoint: str | None = Field(default=None, description="the self-hosted server, when there is one")

    @classmethod
    def build(
        cls,
        model: str,
        messages: list[Message] | list[dict[str, Any]],
        sample: Sample | None = None,
        *,
        endpoint: str | None = None,
        **params: Any,
    ) -> ChatRequest:
        msgs = tuple(m if isinstance(m, Message) else Message(**m) for m in messages)
        answer_params = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and v is not None}
        n = answer_params.pop("n", 1)
        if n != 1:
            raise UserError(f"n={n}: one request returns one answer here; for k samples call "
                            "LM.samples(messages, k) (each is cached and paid as its own call)")
        if "response_format" in answer_params:
            answer_params["response_format"] = _jsonable_response_format(answer_params["response_format"])
        if isinstance(sample, int) and sample < 0:
            raise UserError(f"sample={sample}: a sample index is never negative")
        return cls(model=model, messages=msgs, params=answer_params, sample=sample,
                   endpoint=endpoint_identity(endpoint))

    @property
    def greedy(self) -> bool:
        """True when the answer is the model's single most likely one (temperature 0)."""
        temperature = self.params.get("temperature")
        return temperature is not None and float(temperature) == 0.0

    @property
    def cacheable(self) -> bool:
        """A greedy request, or a sampled one that names its sample."""
        return self.greedy or self.sample is not None

    def key(self) -> str:
        parts: list[Any] = [
            self.model,
            [m.model_dump(exclude_none=True) for m in self.messages],
            self.params,
            None if self.greedy else self.sample,
        ]
        if self.endpoint is not None:
            parts.append(self.endpoint)
        return content_hash(*parts, length=32)

    def seed(self) -> int:
        """The sampling seed for a backend that takes one: fixed by the key when the request is
        cacheable (a replay draws the same sample), fresh otherwise."""
        if self.cacheable:
            return int(self.key()[:8], 16)
        return secrets.randbits(32)
