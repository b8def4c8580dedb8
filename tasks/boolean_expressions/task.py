"""Evaluate a random Boolean expression (BIG-Bench Hard's boolean_expressions, generated)."""

from __future__ import annotations

import random

OPERANDS = ("True", "False")


def _expr(rng: random.Random, depth: int) -> str:
    if depth == 0:
        leaf = rng.choice(OPERANDS)
        return f"not {leaf}" if rng.random() < 0.3 else leaf
    left, right = _expr(rng, depth - 1), _expr(rng, rng.randint(0, depth - 1))
    text = f"{left} {rng.choice(('and', 'or'))} {right}"
    if rng.random() < 0.25:
        return f"not ( {text} )"
    return f"( {text} )" if rng.random() < 0.6 else text


def generate(rng: random.Random) -> dict[str, str]:
    text = _expr(rng, rng.choice((2, 2, 3)))
    # The expression uses only Python's own Boolean syntax, so Python is the reference.
    value = eval(text, {"__builtins__": {}}, {})  # noqa: S307 - generated from a fixed alphabet
    return {"input": f"{text} is", "target": str(bool(value))}
