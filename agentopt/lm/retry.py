"""Retry policy: exponential backoff with full jitter, honouring Retry-After, and when to stop.

Two signs tell a dead endpoint from a flaky one, so a user hears about it in seconds or a
minute rather than after the whole backoff schedule of every call: connections refused (or a
name that does not resolve) on every try of a call, and attempts that time out one after
another, across all the calls of one `LM`, with no answer in between (a hung server).
"""

from __future__ import annotations

import random

from pydantic import BaseModel, Field, ValidationError

from agentopt.errors import UserError

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_ATTEMPTS = 6


class RetryPolicy(BaseModel):
    attempts: int = Field(default=DEFAULT_ATTEMPTS, ge=1, description="total tries, the first included")
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=20.0, ge=0)
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S, gt=0, allow_inf_nan=False,
        description="seconds one attempt may wait for its answer; long generations on a slow "
        "server need more (--timeout)",
    )
    unreachable_attempts: int = Field(
        default=3, ge=1,
        description="tries while every attempt is refused outright: nothing listens there, so the "
        "user hears about it in seconds rather than after the whole backoff schedule",
    )
    down_after_timeouts: int = Field(
        default=3, ge=1,
        description="attempts in a row, across every call of one LM, that time out with no answer "
        "in between, spanning at least this many timeouts of silence, before the endpoint counts "
        "as down: the calls waiting then fail at once instead of each waiting out its own "
        "timeouts (queued calls to a slow server that time out together are not enough)",
    )

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(0, ceiling)


def retry_policy(timeout_s: float | None = None, attempts: int | None = None) -> RetryPolicy:
    """The default policy with the two settings a user may change (None keeps the default)."""
    settings = {"timeout_s": timeout_s, "attempts": attempts}
    try:
        return RetryPolicy(**{k: v for k, v in settings.items() if v is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = {"timeout_s": "--timeout", "attempts": "--attempts"}.get(str(error["loc"][0]), error["loc"][0])
        raise UserError(f"{flag}: {error['msg']}") from None
