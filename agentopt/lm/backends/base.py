"""What every backend provides, and how it reports failures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel

from agentopt.errors import LMError
from agentopt.lm.request import ChatRequest


class Reply(BaseModel):
    """A backend's raw answer, before caching and accounting."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: list[dict[str, Any]] | None = None


class TransientError(LMError):
    """A failure worth retrying: timeout, 429, 5xx, a malformed or empty reply.

    ``retry_after`` carries the server's Retry-After hint in seconds, when it gave one;
    ``unreachable`` marks a connection that could not be made (``reason`` says why: refused,
    or a name that does not resolve), reported as a user error if it persists; ``timed_out``
    marks an attempt that got no answer within the timeout, which the client counts to tell a
    hung endpoint from a slow call.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, unreachable: bool = False,
        *, timed_out: bool = False, reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.timed_out = timed_out
        self.reason = reason


class Backend(ABC):
    """Turns requests into replies. Thread-safe: the client calls it from worker threads."""

    parallel_calls: int | None = None
    """How many calls are worth making at once; None for no limit of the backend's own."""

    greedy_by_default: bool = False
    """True when a request that sets no temperature is decoded greedily (an in-process model);
    False when the provider's own default applies, which for hosted APIs is sampling."""

    @abstractmethod
    def complete(self, request: ChatRequest, transport: dict[str, Any]) -> Reply:
        """Answer one request. ``transport`` holds routing options (api_base, key, timeout)."""

    def check(self, transport: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Fail fast (UserError) when the backend can't work at all, before any call is made."""

    def weights_version(self) -> str | None:
        """For a model whose name can point at changing weights (a local folder), something that
        changes with them; it joins the cache key so answers of old weights are not served."""
        return None
