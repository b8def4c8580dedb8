"""The learned heuristic that predicts a prompt's score before it is run (PROMST section 3.2).

PROMST fine-tuned a Longformer online on (prompt, score) pairs and evaluated only the children
it predicted to be good. Here the prompt is embedded with all-MiniLM-L6-v2 and a scikit-learn
regressor maps embeddings to scores; it is refit from scratch on every pair gathered so far
whenever new scores arrive (fitting a ridge model on a few hundred rows takes milliseconds).

It follows scikit-learn's estimator API: the constructor takes only hyperparameters, `fit`
learns, `predict` predicts, and it works inside sklearn tooling (cloning, cross-validation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from agentopt.optimizers.embeddings import Embedder, HashingEmbedder, default_embedder


def make_embedder(name: str) -> Embedder:
    if name == "minilm":
        return default_embedder()
    if name == "hashing":
        return HashingEmbedder()
    raise ValueError(f"unknown embedder {name!r} (use minilm or hashing)")


class PromptScoreModel(RegressorMixin, BaseEstimator):
    """Predicts a prompt's objective from its text.

    Args:
        embedder: ``"minilm"`` (all-MiniLM-L6-v2, the default) or ``"hashing"`` (fast, for tests).
        alpha: ridge regularisation; strong by default because there are few training pairs
            and 384 dimensions.
        bounds: the range the objective can take, predictions are clipped to it; ``None`` for
            an objective with no known range (a step penalty makes it negative), where clipping
            to [0, 1] would turn every prediction into 0 and the ranking into noise.
    """

    def __init__(
        self, embedder: str = "minilm", alpha: float = 1.0, bounds: tuple[float, float] | None = (0.0, 1.0)
    ) -> None:
        self.embedder = embedder
        self.alpha = alpha
        self.bounds = bounds

    def _features(self, prompts: Sequence[str]) -> np.ndarray:
        return make_embedder(self.embedder).encode(list(prompts))

    def fit(self, prompts: Sequence[str], scores: Sequence[float]) -> PromptScoreModel:
        if len(prompts) != len(scores) or not prompts:
            raise ValueError("fit needs as many scores as prompts, and at least one")
        y = np.asarray(scores, dtype=np.float64)
        # Centre the target so the regulariser shrinks towards the mean score, not towards 0.
        self.mean_ = float(y.mean())
        self.regressor_ = Ridge(alpha=self.alpha).fit(self._features(prompts), y - self.mean_)
        self.n_train_ = len(prompts)
        return self

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        raw = self.regressor_.predict(self._features(prompts)) + self.mean_
        return raw if self.bounds is None else np.clip(raw, *self.bounds)
