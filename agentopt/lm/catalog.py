"""What `agentopt models` shows: the models usable with no configuration, and their state."""

from __future__ import annotations

import os
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.backends import scripted
from agentopt.lm.local_models import DEFAULT_LOCAL, PACKAGED, discover_gguf_files

# Providers users most often ask for, with the variable litellm reads their key from.
_PROVIDERS = {
    "openai/gpt-4o-mini": "OPENAI_API_KEY",
    "anthropic/claude-3-5-haiku-20241022": "ANTHROPIC_API_KEY",
    "gemini/gemini-1.5-flash": "GEMINI_API_KEY",
    "mistral/mistral-small-latest": "MISTRAL_API_KEY",
}


def model_catalog() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, spec in PACKAGED.items():
        default = " (default)" if name == DEFAULT_LOCAL else ""
        try:
            state = spec.probe()
            rows.append({"model": name, "kind": "embedded", "ready": True,
                         "notes": f"{spec.title}{default}; {spec.note}; {state}"})
        except UserError:
            rows.append({"model": name, "kind": "embedded", "ready": False,
                         "notes": f"{spec.title}{default}; install: {spec.install}"})
    for where, path in discover_gguf_files():
        rows.append({"model": f"local/{path}", "kind": "gguf", "ready": True,
                     "notes": f"found in {where}, {path.stat().st_size / 1e6:.0f} MB"})
    for name in scripted.available():
        rows.append({"model": name, "kind": "scripted", "ready": True, "notes": "deterministic test model"})
    for model, var in _PROVIDERS.items():
        ready = bool(os.environ.get(var))
        rows.append({"model": model, "kind": "litellm", "ready": ready,
                     "notes": f"{var} {'set' if ready else 'not set'}"})
    return rows
