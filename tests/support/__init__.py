"""Helpers shared by the tests."""

from __future__ import annotations

import threading


def sample_index(params: dict) -> int:
    """The optimiser's index among repeated proposals, from a scripted call's sample identity:
    an int from `LM.batch`, or ``"seed<N>/<index>"`` from `RunContext.ask_optimizer`."""
    sample = params.get("sample")
    if sample is None:
        return 0
    return sample if isinstance(sample, int) else int(str(sample).rsplit("/", 1)[-1])


class InFlight:
    """A scripted model's body that counts how many calls it is running at once (``peak``)."""

    def __init__(self, work) -> None:
        self.work = work  # (messages, params) -> reply text; it may sleep
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, messages, params) -> str:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return self.work(messages, params)
        finally:
            with self._lock:
                self.now -= 1
