"""Do these moves bring you back to the start? (BIG-Bench Hard's navigate, generated).

Half the instances are built to return: after the random moves, one or two moves undo the
offset. The moves are then written either with turns relative to where you face, or with
"Always face forward" and absolute directions.
"""

from __future__ import annotations

import random

# Unit vectors of the four headings, clockwise from "forward" (north).
HEADINGS = ((0, 1), (1, 0), (0, -1), (-1, 0))
ABSOLUTE = {(0, 1): "forward", (1, 0): "right", (0, -1): "backward", (-1, 0): "left"}
TURNS = {0: "", 1: "Turn right. ", 2: "Turn around. ", 3: "Turn left. "}


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def generate(rng: random.Random) -> dict[str, str]:
    moves = [(rng.choice(HEADINGS), rng.randint(1, 9)) for _ in range(rng.randint(2, 4))]
    x = sum(d[0] * n for d, n in moves)
    y = sum(d[1] * n for d, n in moves)
    if rng.random() < 0.5:
        if x:
            moves.append(((-1 if x > 0 else 1, 0), abs(x)))
        if y:
            moves.append(((0, -1 if y > 0 else 1), abs(y)))
        x = y = 0
    if rng.random() < 0.5:
        parts = ["Always face forward."] + [f"Take {_steps(n)} {ABSOLUTE[d]}." for d, n in moves]
    else:
        parts, heading = [], 0
        for d, n in moves:
            want = HEADINGS.index(d)
            parts.append(f"{TURNS[(want - heading) % 4]}Take {_steps(n)}.")
            heading = want
    question = "If you follow these instructions, do you return to the starting point? " + " ".join(parts)
    return {"input": question, "target": "Yes" if (x, y) == (0, 0) else "No"}
