"""Call, token and dollar budgets with a hard stop.

A call is reserved before it is made, so concurrent workers can never overshoot the call
budget; tokens and dollars are only known afterwards, so the call that crosses those limits
completes and the next one is refused.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel, Field

from agentopt.errors import BudgetExceeded


class Budget(BaseModel):
    max_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)
    count_cache_hits: bool = Field(
        default=False,
        description="charge cached answers too; runs set this so a resumed run, which replays "
        "from the cache, spends its budget exactly as the uninterrupted run did",
    )


class BudgetMeter:
    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self.calls = 0
        self.tokens = 0
        self.usd = 0.0
        self._lock = threading.Lock()

    def reserve_call(self) -> None:
        with self._lock:
            b = self.budget
            if b.max_calls is not None and self.calls >= b.max_calls:
                raise BudgetExceeded(f"budget exceeded: {self.calls}/{b.max_calls} calls used")
            if b.max_tokens is not None and self.tokens >= b.max_tokens:
                raise BudgetExceeded(f"budget exceeded: {self.tokens}/{b.max_tokens} tokens used")
            if b.max_usd is not None and self.usd >= b.max_usd:
                raise BudgetExceeded(f"budget exceeded: ${self.usd:.4f}/${b.max_usd:.4f} spent")
            self.calls += 1

    def release_call(self) -> None:
        """Give back a reserved call that was answered from the cache or never made."""
        with self._lock:
            self.calls -= 1

    def charge(self, tokens: int, usd: float) -> None:
        with self._lock:
            self.tokens += tokens
            self.usd += usd

    def charge_replayed(self, calls: int, tokens: int, usd: float) -> None:
        """Account for work replayed from a run journal instead of being redone."""
        with self._lock:
            self.calls += calls
            self.tokens += tokens
            self.usd += usd

    def snapshot(self) -> tuple[int, int, float]:
        with self._lock:
            return self.calls, self.tokens, self.usd

    def summary(self) -> dict[str, float]:
        return {"calls": self.calls, "tokens": self.tokens, "usd": round(self.usd, 6)}
