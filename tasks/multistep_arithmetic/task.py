"""Evaluate a two-step integer expression (BIG-Bench Hard's multistep_arithmetic_two, smaller)."""

from __future__ import annotations

import random


def _term(rng: random.Random) -> str:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    op = rng.choice("+-*")
    return f"({a} {op} {b})"


def generate(rng: random.Random) -> dict[str, str]:
    # One bracketed pair and a third number, in either order: two steps, as small as BBH's
    # multi-step arithmetic gets, so a 0.5B model answering directly is right now and then.
    term, number, op = _term(rng), str(rng.randint(1, 9)), rng.choice("+-*")
    text = f"{term} {op} {number}" if rng.random() < 0.5 else f"{number} {op} {term}"
    value = eval(text, {"__builtins__": {}}, {})  # noqa: S307 - integers and + - * only
    return {"input": f"{text} =", "target": str(value)}
