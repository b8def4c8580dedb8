"""Reading JSON-ish action objects out of chatty model output.

The multi-agent PROMST tasks (BoxNet1/2, BoxLift, Warehouse) answer with a JSON object mapping
agents to actions; models wrap it in prose and code fences, use single or curly quotes, or leave
values unquoted. `extract_pairs` finds the object anyway.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from typing import Any

_MAX_BLOCKS = 32  # bounded work on adversarial input with thousands of braces


def _brace_blocks(text: str) -> list[str]:
    """Balanced ``{...}`` blocks, the ones ending last (the final answer) and outermost first."""
    stack: list[int] = []
    spans: list[tuple[int, int]] = []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            spans.append((stack.pop(), i + 1))
    spans.sort(key=lambda s: (-s[1], s[0]))
    return [text[a:b] for a, b in spans[:_MAX_BLOCKS]]


def _as_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _load_pairs(block: str) -> list[tuple[str, str]] | None:
    """The block as (key, value) pairs if it is a JSON or Python dict literal."""
    for load in (json.loads, ast.literal_eval):
        try:
            value = load(block)
        except Exception:  # malformed text (even a RecursionError) just means "not a dict"
            continue
        if isinstance(value, dict):
            return [(str(k), _as_text(v)) for k, v in value.items()]
    return None


def extract_pairs(
    text: str, pair_re: re.Pattern[str], accept: Callable[[list[tuple[str, str]]], bool]
) -> list[tuple[str, str]] | None:
    """The first ``{...}`` block (latest first) that reads as an action dict, as pairs.

    A block that is not valid JSON/Python (unquoted values, say) is read with ``pair_re``,
    whose two groups are the key and the value.
    """
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    for block in _brace_blocks(text):
        pairs = _load_pairs(block)
        if pairs is None:
            pairs = [(m.group(1), m.group(2)) for m in pair_re.finditer(block)]
        if accept(pairs):
            return pairs
    return None


def pairs_json(pairs: list[tuple[str, str]]) -> str:
    """Pairs written as a JSON object, keeping repeated keys (so a repeat stays visible)."""
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
