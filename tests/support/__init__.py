"""Helpers shared by the tests."""

from __future__ import annotations


def sample_index(params: dict) -> int:
    """The optimiser's index among repeated proposals, from a scripted call's sample identity:
    an int from `LM.batch`, or ``"seed<N>/<index>"`` from `RunContext.generate`."""
    sample = params.get("sample")
    if sample is None:
        return 0
    return sample if isinstance(sample, int) else int(str(sample).rsplit("/", 1)[-1])
