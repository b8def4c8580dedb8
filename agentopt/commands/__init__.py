"""Subcommands of ``agentopt`` that live outside ``cli.py``.

Each module exposes ``register(app: typer.Typer) -> None``, which adds its commands to the main
app; ``cli.py`` calls it once per module. Heavy imports (torch, transformers) happen inside the
command functions, so ``agentopt --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    """``--json`` output, on stdout, for every command."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
