"""Greedy decoding under a grammar that asks the grammar about the likeliest tokens first.

llama.cpp's grammar sampler checks every token of the vocabulary against the grammar at every
step: 152k tokens for Qwen, about 0.1-0.3 s per generated token on 2 CPU cores, several times
the cost of the forward pass. Greedy decoding only needs the likeliest token the grammar
accepts, and that is almost always one of the few likeliest tokens overall. This sampler offers
the grammar the likeliest tokens one at a time, best first, and runs the full check only when
none of the first `CANDIDATES` is accepted. The token chosen is the one the full check would
choose (up to ties between equal logits), so replies, and the cache entries made before this
sampler existed, stay the same.

Sampling at a temperature keeps llama.cpp's own grammar sampler: probing only the top tokens
would change the distribution the sample is drawn from.
"""

from __future__ import annotations

import ctypes
import math
from functools import lru_cache
from typing import Any

import numpy as np

CANDIDATES = 64
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


class GrammarFirstSampler:
    """A llama.cpp sampler (for a sampler chain, before greedy) that leaves only the likeliest
    token the grammar accepts. It owns its grammar sampler: the chain's accept and reset reach
    it through this sampler, so the grammar's state follows the tokens generated."""

    def __init__(self, vocab: Any, grammar_text: str, root: str) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._grammar = llama_cpp.llama_sampler_init_grammar(
            vocab, grammar_text.encode("utf-8"), root.encode("utf-8"))
        if not self._grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        # The callbacks and the interface table must outlive the chain that calls them.
        self._callbacks = (
            llama_cpp.llama_sampler_i_accept(lambda _smpl, token: self._accept(token)),
            llama_cpp.llama_sampler_i_apply(lambda _smpl, cur_p: self._apply(cur_p)),
            llama_cpp.llama_sampler_i_reset(lambda _smpl: self._reset()),
        )
        self._iface = llama_cpp.llama_sampler_i()  # the callbacks not set here stay NULL
        self._iface.accept, self._iface.apply, self._iface.reset = self._callbacks
        self.sampler = llama_cpp.llama_sampler()
        self.sampler.iface = ctypes.pointer(self._iface)
        self.sampler.ctx = None
        self._one = llama_cpp.llama_token_data()
        self._probe = llama_cpp.llama_token_data_array(
            data=ctypes.pointer(self._one), size=1, selected=-1, sorted=False)

    def _accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self._grammar, token)

    def _reset(self) -> None:
        self._llama_cpp.llama_sampler_reset(self._grammar)

    def _accepts(self, token: int, logit: float) -> bool:
        self._one.id, self._one.logit, self._one.p = token, logit, 0.0
        self._probe.size, self._probe.selected = 1, -1
        self._llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(self._probe))
        return not math.isinf(self._one.logit)

    def _apply(self, cur_p: Any) -> None:
        # An exception cannot leave a ctypes callback: it would be printed and the token chosen
        # unconstrained. Any failure here falls back to the full check instead.
        try:
            if self._narrow(cur_p.contents):
                return
        except Exception:  # noqa: BLE001
            pass
        self._llama_cpp.llama_sampler_apply(self._grammar, cur_p)

    def _narrow(self, candidates: Any) -> bool:
        """Leave only the likeliest token the grammar accepts, if it is among the first
        `CANDIDATES`; False (the candidates untouched) if it is not."""
        n = int(candidates.size)
        if n == 0:
            return False
        cells = (self._llama_cpp.llama_token_data * n).from_address(
            ctypes.addressof(candidates.data.contents))
        table = np.frombuffer(cells, dtype=_TOKEN_DATA)
        logits = table["logit"]
        k = min(CANDIDATES, n)
        top = np.argpartition(-logits, k - 1)[:k] if k < n else np.arange(n)
        for i in top[np.argsort(-logits[top], kind="stable")]:
            token, logit = int(table["id"][i]), float(logits[i])
            if self._accepts(token, logit):
                cells[0].id, cells[0].logit, cells[0].p = token, logit, 0.0
                candidates.size, candidates.selected, candidates.sorted = 1, 0, True
                return True
        return False

    def close(self) -> None:
        if self._grammar:
            self._llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:
        self.close()


@lru_cache(maxsize=1)
def llama_class() -> type:
    """llama-cpp-python's `Llama`, decoding greedily under a grammar with `GrammarFirstSampler`.

    Only the greedy, penalty-free case changes (what agentopt asks of a local model at
    temperature 0); every other request builds llama-cpp-python's own sampler chain."""
    from llama_cpp import Llama

    class GrammarFirstLlama(Llama):  # type: ignore[misc]
        def _init_sampler(self, *args: Any, **settings: Any) -> Any:
            grammar = settings.get("grammar")
            plain = (not args and settings.get("temp") == 0.0 and not settings.get("logits_processor")
                     and settings.get("repeat_penalty", 1.0) == 1.0
                     and not settings.get("frequency_penalty") and not settings.get("presence_penalty"))
            if grammar is None or not plain:
                return super()._init_sampler(*args, **settings)
            try:
                from llama_cpp._internals import LlamaSampler

                return _greedy_chain(LlamaSampler(), self._model.vocab, grammar)
            except (ImportError, AttributeError):
                # A llama-cpp-python whose internals differ from those this was written
                # against (0.3.x): its own sampler is slower, never wrong.
                return super()._init_sampler(**settings)

    return GrammarFirstLlama


def _greedy_chain(chain: Any, vocab: Any, grammar: Any) -> Any:
    """``chain`` (an empty llama-cpp-python sampler chain) as grammar-first, then greedy."""
    import llama_cpp

    first = GrammarFirstSampler(vocab, grammar._grammar, grammar._root)
    registry = chain.custom_samplers  # checked before the chain holds anything
    llama_cpp.llama_sampler_chain_add(chain.sampler, ctypes.pointer(first.sampler))
    # The chain frees what it holds when it is freed; a sampler made in Python must be taken
    # out first, which llama-cpp-python does for the ones it lists here.
    registry.append((llama_cpp.llama_sampler_chain_n(chain.sampler) - 1, first))
    chain.add_greedy()
    return chain
