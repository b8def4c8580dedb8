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


class PairedDifference(BaseModel):
    """``a - b`` over the same instances: the mean difference, its bootstrap CI and a p-value.

    The p-value is the two-sided Wilcoxon signed-rank test on the per-instance differences,
    zero differences dropped as in Wilcoxon's original test. When every non-zero difference has
    the same size (0/1 scores: the instances where the two disagree) the ranks carry nothing and
    the test is the exact sign test, computed as such. All differences zero gives p = 1.
    """

    n: int
    mean: float
    low: float
    high: float
    p_value: float
    wins: int
    losses: int
    confidence: float = 0.95

    def __str__(self) -> str:
        return (f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] p={self.p_value:.3g} "
                f"(+{self.wins}/-{self.losses} of {self.n})")


def paired_difference(
    a: dict[str, float], b: dict[str, float], *, confidence: float = 0.95, resamples: int = 10_000,
    seed: int = 0,
) -> PairedDifference:
    """Compare two score maps keyed by instance id, on the instances both hold.

    Raises ValueError when they share no instance: a comparison over different instances is
    exactly what this exists to prevent."""
    import numpy as np
    from scipy.stats import binomtest, wilcoxon

    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two evaluations share no instance")
    diffs = np.array([a[k] - b[k] for k in shared], dtype=float)
    # Means over seeds of equal scores can differ in the last bit (0.1 + 0.1 + 0.1 over 3 is not
    # 0.1); such a difference is no difference, not an instance won or lost.
    diffs[np.abs(diffs) < 1e-9] = 0.0
    n = len(diffs)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(means, [alpha, 1 - alpha]))
    nonzero = diffs[diffs != 0]
    if nonzero.size == 0:
        p_value = 1.0
    elif np.allclose(np.abs(nonzero), abs(nonzero[0])):
        p_value = float(binomtest(int((nonzero > 0).sum()), int(nonzero.size), 0.5).pvalue)
    else:
        p_value = float(wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedDifference(
        n=n, mean=float(diffs.mean()), low=low, high=high, p_value=p_value,
        wins=int((diffs > 0).sum()), losses=int((diffs < 0).sum()), confidence=confidence,
    )
