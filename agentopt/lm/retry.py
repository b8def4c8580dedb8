"""Retry policy: exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import random

from pydantic import BaseModel, Field


class RetryPolicy(BaseModel):
    attempts: int = Field(default=6, ge=1, description="total tries, the first included")
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=20.0, ge=0)
    timeout_s: float = Field(default=120.0, gt=0, description="per-call timeout")
    unreachable_attempts: int = Field(
        default=3, ge=1,
        description="tries while every attempt is refused outright: nothing listens there, so the "
        "user hears about it in seconds rather than after the whole backoff schedule",
    )

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return rng.uniform(0, ceiling)
