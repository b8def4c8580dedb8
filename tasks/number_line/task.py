"""Number line: move a token along a number line onto a target, within a tight move limit.

A multi-step task sized for small models, which score about 0 on the PROMST tasks: each state
is one line (position, target, the gap and its direction, moves left), and the four actions are
steps of 1 and jumps of 3 either way. The limit is the fewest moves plus two, so steps alone
reach only gaps of 4 and 5: the agent has to jump while the target is far, step when it is
near, and not overshoot.

Score: 1 on the target; otherwise half the share of the starting gap closed, so that an
episode that ends near the target still ranks above one that ran away from it.
"""

from __future__ import annotations

import random
import re
from collections import deque

from agentopt.tasks.env import Outcome, TextEnv

MOVES: dict[str, int] = {"step left": -1, "step right": 1, "jump left": -3, "jump right": 3}

# Instance families: the starting gap, 4 to 12 (instance i has gap 4 + i % 9).
FAMILIES = [{"gap": gap} for gap in range(4, 13)]

SLACK = 2  # moves allowed beyond the fewest

# `{Jump right}`, `{ jump  RIGHT }`, `{"Step left"}`: braces required, case and spacing not.
_ACTION_RE = re.compile(r"\{\s*[\"'`]?\s*(step|jump)\s+(left|right)\s*[\"'`]?\s*\}", re.IGNORECASE)


def fewest_moves(gap: int) -> int:
    """The fewest moves that cover ``gap`` (>= 0), overshooting and coming back allowed."""
    depth: dict[int, int] = {0: 0}
    queue = deque([0])
    while queue:
        here = queue.popleft()
        if here == gap:
            return depth[here]
        for delta in MOVES.values():
            there = here + delta
            if -3 <= there <= gap + 3 and there not in depth:  # no shortest route strays further
                depth[there] = depth[here] + 1
                queue.append(there)
    raise AssertionError(f"gap {gap} unreachable")  # every integer is: steps of 1 exist


class Env(TextEnv):
    """One episode. State: the token's position, the target, and the starting gap."""

    position: int
    target: int
    closest: int  # the smallest gap reached so far, which `progress` counts from

    @property
    def start_gap(self) -> int:
        return int(self.instance.config["gap"])

    @property
    def max_steps(self) -> int:
        return fewest_moves(self.start_gap) + SLACK

    def build(self, rng: random.Random) -> None:
        self.position = rng.randint(0, 20)
        self.target = self.position + rng.choice((-1, 1)) * self.start_gap
        self.closest = self.start_gap

    def render(self) -> str:
        gap = self.target - self.position
        where = "right here" if gap == 0 else f"{abs(gap)} to your {'right' if gap > 0 else 'left'}"
        return (f"You are at position {self.position}. The target is at position {self.target}, "
                f"{where}. Moves left: {self.max_steps - self.steps_taken}.")

    def parse_action(self, text: str) -> str | None:
        """The last action in braces (a reply that thinks aloud puts its decision last)."""
        found = _ACTION_RE.findall(text)
        if not found:
            return None
        kind, side = found[-1]
        return f"{kind.lower()} {side.lower()}"

    def format_action(self, action: str) -> str:
        return "{" + action.capitalize() + "}"

    def apply(self, action: str) -> Outcome:
        before = abs(self.target - self.position)
        self.position += MOVES[action]
        after = abs(self.target - self.position)
        self.closest = min(self.closest, after)
        if after == 0:
            return Outcome(feedback=f"You moved to position {self.position} and reached the target.")
        feedback = f"You moved to position {self.position}."
        if after > before:  # includes jumping over the target to a farther point
            return Outcome(feedback=feedback + " That is further from the target than before.",
                           events=["moved_away"])
        return Outcome(feedback=feedback)

    def progress(self) -> float:
        return float(self.start_gap - self.closest)

    def score(self) -> float:
        if self.position == self.target:
            return 1.0
        return 0.5 * max(0.0, 1.0 - abs(self.target - self.position) / self.start_gap)


def oracle(env: Env) -> str:
    """A move after which the rest of the gap takes the fewest moves, never moving away."""
    gap = abs(env.target - env.position)

    def cost(action: str) -> tuple[int, bool]:
        after = abs(env.target - env.position - MOVES[action])
        return fewest_moves(after), after > gap  # ties: never the move that goes further away

    return env.format_action(min(MOVES, key=cost))
