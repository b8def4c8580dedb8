"""Confidence intervals for mean episode scores."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel


class MeanCI(BaseModel):
    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def mean_ci(scores: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Student-t interval for the mean of scores in [0, 1], clipped to [0, 1].

    With fewer than two scores nothing is known about the spread, so the interval is [0, 1].
    """
    n = len(scores)
    if n == 0:
        return MeanCI(mean=0.0, low=0.0, high=1.0, n=0, confidence=confidence)
    mean = sum(scores) / n
    if n < 2:
        return MeanCI(mean=mean, low=0.0, high=1.0, n=n, confidence=confidence)
    from scipy.stats import t

    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return MeanCI(
        mean=mean, low=max(0.0, mean - half), high=min(1.0, mean + half), n=n, confidence=confidence
    )
