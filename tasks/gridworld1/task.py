"""GridWorld1 (PROMST): a robot on an n x n grid must walk to every goal and pick it.

Rules as in PROMST's GridWorld1 (reimplemented, not copied): obstacles, goals and the robot sit
in distinct random cells; moving into an obstacle is a collision and moving off the grid is an
error (the task's rules end the episode on both); ``{Pick goal}`` on a cell without a goal only
wastes the step. Goals may be picked in any order. Score = goals picked / goals.

Coordinates are (row, column), counted from 0 at the top-left corner: "up" decreases the row.

GridWorld2 (``tasks/gridworld2``) reuses this module with ``ordered = True``: goals must then be
picked in label order (goal_0, goal_1, ...).
"""

from __future__ import annotations

import random
import re
from collections import deque
from typing import ClassVar

from agentopt.tasks.env import Outcome, TextEnv

Cell = tuple[int, int]  # (row, column) from the top-left corner

# Instance families, as in PROMST: grid size n, number of goals, number of obstacles.
FAMILIES = [
    {"size": 4, "goals": 3, "obstacles": 4},
    {"size": 5, "goals": 4, "obstacles": 6},
    {"size": 6, "goals": 5, "obstacles": 10},
    {"size": 7, "goals": 6, "obstacles": 14},
]

# The window of the "stuck" rule in task.toml (keep in sync; a test checks). Layouts where the
# oracle's route itself walks this many steps between two picks are redrawn, so an efficient
# agent is never cut off as "stuck".
STUCK_WINDOW = 16

MOVES: dict[str, Cell] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
PICK = "pick"

# `{Move up}`, `{ move  UP }`, `{"Pick goal"}`...: braces are required (they are the output
# format the prompt asks for), case, spacing and stray quotes inside them are not.
_ACTION_RE = re.compile(
    r"\{\s*[\"'`]?\s*(?:move\s+(up|down|left|right)|(pick)\s+goal)\s*[\"'`]?\s*\}",
    re.IGNORECASE,
)

# A bound on grid generation attempts; solvable layouts are common, so this is never reached
# in practice, but a bad config must fail loudly rather than loop forever.
_MAX_ATTEMPTS = 10_000


def where(cell: Cell) -> str:
    return f"row {cell[0]}, column {cell[1]}"


class Env(TextEnv):
    """One GridWorld episode. State: robot cell, obstacle cells, goal cells (index = label),
    and the set of picked goal labels."""

    ordered: ClassVar[bool] = False  # GridWorld2: goals must be picked in label order

    size: int
    obstacles: frozenset[Cell]
    goals: list[Cell]
    picked: set[int]
    robot: Cell

    # --- world ---------------------------------------------------------------------------
    @property
    def max_steps(self) -> int:
        return 50 if self.instance.config["size"] >= 7 else 30

    def build(self, rng: random.Random) -> None:
        """Place obstacles, goals and robot; redraw (same rng) until the oracle's route,
        which is also PROMST's solvability check, reaches every goal within the step limit
        (and never walks `STUCK_WINDOW` steps between picks)."""
        config = self.instance.config
        self.size = config["size"]
        cells = [(r, c) for r in range(self.size) for c in range(self.size)]
        n_obstacles, n_goals = config["obstacles"], config["goals"]
        for _ in range(_MAX_ATTEMPTS):
            chosen = rng.sample(cells, n_obstacles + n_goals + 1)
            self.obstacles = frozenset(chosen[:n_obstacles])
            self.goals = chosen[n_obstacles : n_obstacles + n_goals]
            self.robot = chosen[-1]
            self.picked = set()
            plan = self.plan()
            if plan is not None and len(plan) <= self.max_steps and _longest_walk(plan) < STUCK_WINDOW:
                return
        raise RuntimeError(f"no solvable grid found for config {config}")

    def in_grid(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.size and 0 <= cell[1] < self.size

    def goal_at(self, cell: Cell) -> int | None:
        """Label of the unpicked goal on ``cell``, if any."""
        for label, goal in enumerate(self.goals):
            if goal == cell and label not in self.picked:
                return label
        return None

    def remaining(self) -> list[int]:
        return [k for k in range(len(self.goals)) if k not in self.picked]

    def next_label(self) -> int | None:
        left = self.remaining()
        return left[0] if left else None

    # --- text ----------------------------------------------------------------------------
    def render(self) -> str:
        n = self.size
        remaining = self.remaining()
        lines = [
            f"The grid has {n} rows and {n} columns. Rows are numbered 0 to {n - 1} from top to "
            f"bottom and columns 0 to {n - 1} from left to right.",
            f"The robot is at {where(self.robot)}.",
            "Goals still to pick: "
            + ("; ".join(f"goal_{k} at {where(self.goals[k])}" for k in remaining) or "none")
            + ".",
            "Goals already picked: " + (", ".join(f"goal_{k}" for k in sorted(self.picked)) or "none") + ".",
            "Obstacles at: " + ("; ".join(where(c) for c in sorted(self.obstacles)) or "none") + ".",
            "Around the robot: " + "; ".join(self._neighbour(d) for d in MOVES) + ".",
        ]
        if self.ordered and remaining:
            lines.append(f"The next goal to pick is goal_{remaining[0]}.")
        if self.goal_at(self.robot) is not None:
            lines.append(f"The robot is standing on goal_{self.goal_at(self.robot)}.")
        return "\n".join(lines)

    def _neighbour(self, direction: str) -> str:
        dr, dc = MOVES[direction]
        cell = (self.robot[0] + dr, self.robot[1] + dc)
        if not self.in_grid(cell):
            what = "outside the grid"
        elif cell in self.obstacles:
            what = "an obstacle"
        elif (label := self.goal_at(cell)) is not None:
            what = f"goal_{label}"
        else:
            what = "empty"
        return f"{direction} ({where(cell)}) is {what}" if self.in_grid(cell) else f"{direction} is {what}"

    def parse_action(self, text: str) -> str | None:
        """The action in ``{...}`` braces anywhere in ``text``.

        If the text holds several actions (a model thinking aloud: "{Move up} would hit the
        wall, so {Move left}"), the *last* one is taken, since answers put the decision last.
        """
        found = _ACTION_RE.findall(text)
        if not found:
            return None
        direction, pick = found[-1]
        return direction.lower() if direction else PICK

    def format_action(self, action: str) -> str:
        return "{Pick goal}" if action == PICK else "{Move " + action + "}"

    # --- dynamics ------------------------------------------------------------------------
    def apply(self, action: str) -> Outcome:
        if action == PICK:
            return self._pick()
        dr, dc = MOVES[action]
        target = (self.robot[0] + dr, self.robot[1] + dc)
        if not self.in_grid(target):
            return Outcome(
                feedback=f"Moving {action} from {where(self.robot)} leaves the grid; the robot did not move.",
                valid=False,
                events=["out_of_grid"],
            )
        if target in self.obstacles:
            # PROMST labelled this 'Collision' but bucketed 'collision', so its feedback never
            # reached the optimiser; here the event name is the one the rule keys on.
            return Outcome(
                feedback=f"Moving {action} from {where(self.robot)} runs into the obstacle at "
                f"{where(target)}: collision. The robot did not move.",
                valid=False,
                events=["collision"],
            )
        self.robot = target
        feedback = f"The robot moved {action} to {where(target)}."
        if (label := self.goal_at(target)) is not None:
            feedback += f" goal_{label} is here; use {{Pick goal}} to pick it."
        return Outcome(feedback=feedback)

    def _pick(self) -> Outcome:
        label = self.goal_at(self.robot)
        if label is None:
            return Outcome(
                feedback=f"There is no goal to pick at {where(self.robot)}; move onto a goal cell first.",
                valid=False,
                events=["invalid_action"],
            )
        expected = self.next_label()
        if self.ordered and label != expected:
            return Outcome(
                feedback=f"goal_{label} cannot be picked before goal_{expected}; goals must be "
                "picked in label order.",
                valid=False,
                events=["wrong_order"],
            )
        self.picked.add(label)
        return Outcome(feedback=f"Picked goal_{label}. {len(self.remaining())} goal(s) left.")

    def progress(self) -> float:
        return float(len(self.picked))

    def score(self) -> float:
        return len(self.picked) / len(self.goals)

    # --- planning (oracle and solvability check) -----------------------------------------
    def plan(self) -> list[str] | None:
        """Actions that pick every remaining goal, or None if some goal is unreachable.

        Goals are visited nearest-first (by shortest-path length, ties by label), or in label
        order when ``ordered``; each leg is a shortest path around the obstacles.
        """
        pos, left, actions = self.robot, self.remaining(), []
        while left:
            parents = self._bfs(pos)
            reachable = [k for k in left if self.goals[k] in parents]
            if len(reachable) < len(left):
                return None
            if self.ordered:
                target = left[0]
            else:
                target = min(left, key=lambda k: (_path_length(parents, self.goals[k]), k))
            actions += _moves_to(parents, self.goals[target]) + [PICK]
            pos = self.goals[target]
            left.remove(target)
        return actions

    def _bfs(self, start: Cell) -> dict[Cell, Cell | None]:
        """Shortest-path tree from ``start``: each reachable cell -> its predecessor."""
        parents: dict[Cell, Cell | None] = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            for dr, dc in MOVES.values():
                nxt = (cell[0] + dr, cell[1] + dc)
                if self.in_grid(nxt) and nxt not in self.obstacles and nxt not in parents:
                    parents[nxt] = cell
                    queue.append(nxt)
        return parents


def _longest_walk(plan: list[str]) -> int:
    """The most consecutive moves in ``plan`` without a pick."""
    longest = run = 0
    for action in plan:
        run = 0 if action == PICK else run + 1
        longest = max(longest, run)
    return longest


def _path_length(parents: dict[Cell, Cell | None], cell: Cell) -> int:
    steps = 0
    while (prev := parents[cell]) is not None:
        cell, steps = prev, steps + 1
    return steps


def _moves_to(parents: dict[Cell, Cell | None], cell: Cell) -> list[str]:
    """The move names along the BFS tree from its root to ``cell``."""
    by_delta = {delta: name for name, delta in MOVES.items()}
    moves: list[str] = []
    while (prev := parents[cell]) is not None:
        moves.append(by_delta[(cell[0] - prev[0], cell[1] - prev[1])])
        cell = prev
    return moves[::-1]


def oracle(env: Env) -> str:
    """Follow the planned route: nearest goal first (label order in GridWorld2)."""
    plan = env.plan()
    action = plan[0] if plan else PICK
    return f"Heading for the next goal. {env.format_action(action)}"
