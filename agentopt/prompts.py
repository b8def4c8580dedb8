"""Meta-prompt templates: files under ``prompts/<method>/NAME.j2``, rendered in a sandbox.

Templates are data, not code: jinja2's `SandboxedEnvironment` renders them, with
``StrictUndefined`` so a missing variable fails loudly instead of leaving a silent gap in a
prompt sent to a model. Users can point ``AGENTOPT_PROMPTS_PATH`` at a folder of their own
templates (same layout) to override any of ours.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from agentopt.errors import UserError
from agentopt.tasks.loader import builtin_data_dir


def prompt_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("AGENTOPT_PROMPTS_PATH", "").split(os.pathsep) if p]
    return extra + [builtin_data_dir("prompts")]


def find_template(name: str) -> Path:
    """``promst/summarize`` -> the first ``promst/summarize.j2`` on the search path."""
    relative = name if name.endswith(".j2") else f"{name}.j2"
    for root in prompt_dirs():
        candidate = root / relative
        if candidate.is_file():
            return candidate
    raise UserError(f"prompt template {relative!r} not found in {', '.join(map(str, prompt_dirs()))}")


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


def render_prompt(name: str, **variables: Any) -> str:
    source = find_template(name).read_text(encoding="utf-8")
    return _environment().from_string(source).render(**variables).strip()
