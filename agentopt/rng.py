"""Seeded randomness that leaves the caller's random state alone.

torch's weight initialisation, dropout and sampling draw from its process-wide generators. A
library that calls ``torch.manual_seed`` would quietly reseed the user's own experiment, so
agentopt seeds a private fork of those generators instead and restores them on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def private_torch_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU and CUDA generators seeded with ``seed``, then put back
    what they were before."""
    import torch

    gpus = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield
