"""Where agentopt keeps state that outlives a run: the shared cache, journal, ledger, models."""

from __future__ import annotations

import os
from pathlib import Path


def agentopt_home() -> Path:
    """``$AGENTOPT_HOME``, default ``~/.cache/agentopt``."""
    return Path(os.environ.get("AGENTOPT_HOME", Path.home() / ".cache" / "agentopt"))
