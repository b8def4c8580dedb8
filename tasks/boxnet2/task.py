"""BoxNet2: agents move coloured boxes between the corners of their cells without collisions.

Rules follow PROMST's BoxNet2 (Chen et al., 2024): one agent per grid cell (``Agent[0.5, 1.5]``).
Boxes sit on cell corners (integer coordinates, ``position[1.0, 2.0]``), targets sit inside
cells. Each colour has one box and one target; a box is put on a free random corner of a random
cell, and a colour whose cell has no free corner is left out. In one step every agent may do one
action: move a box on one of its cell's four corners to another corner of the same cell, or put
it on the same-colour target inside its cell (both disappear). If after the step any corner holds
more than one box, that is a collision and the episode ends. Score = boxes matched / initial boxes.

Differences from PROMST's public code, on purpose:

- a collision is any corner holding two or more boxes after the step (PROMST only looked at the
  destinations of moves it had judged legal, and stopped at the first); it is reported as the
  event ``collision`` and ends the episode, and the state shown is the state after the step,
  collision included, with the score counting any box matched in that step;
- the state shown after a step is the state *after* the action (PROMST showed the one before);
- each agent acts at most once per step, and nonexistent agents / malformed sub-actions are
  reported (event ``invalid_action``) rather than dropped;
- the state lists, per agent, which boxes sit on which of its corners (PROMST listed only the
  targets in the cell, so boxes were visible only through the doable-action list);
- the parser accepts the JSON object anywhere in the reply (prose, code fences, single quotes).
"""

import json
import random
from collections import deque
from typing import Any

from agentopt.tasks.env import Outcome, TextEnv
from agentopt.tasks.parsing import BoxMove, BoxMoves

FAMILIES: list[dict[str, Any]] = [
    {"rows": 2, "cols": 2},
    {"rows": 2, "cols": 4},
    {"rows": 4, "cols": 4},
    {"rows": 4, "cols": 8},
]

COLORS = ("blue", "red", "green", "purple", "orange")
Cell = tuple[int, int]  # (row, col) of a square; its centre is (row + 0.5, col + 0.5)
Corner = tuple[int, int]  # (x, y) integer coordinates of a grid point

# --- the environment -----------------------------------------------------------------------
# Orders: {"Agent[0.5, 1.5]": "move(box_blue, position[1.0, 2.0])" or "move(box_blue, target_blue)"},
# the agent named by its cell centre, a move's destination by the corner the box goes to.
MOVES = BoxMoves("position")


def _square(cell: Cell) -> str:
    return f"[{cell[0] + 0.5}, {cell[1] + 0.5}]"


def _position(corner: Corner) -> str:
    return f"position[{float(corner[0])}, {float(corner[1])}]"


def corners_of(cell: Cell) -> list[Corner]:
    r, c = cell
    return [(r, c), (r, c + 1), (r + 1, c), (r + 1, c + 1)]


class Env(TextEnv):
    rows: int
    cols: int
    boxes: dict[Corner, list[str]]  # a list so that a collision can be represented and shown
    targets: dict[Cell, list[str]]
    initial_boxes: int

    @property
    def max_steps(self) -> int:
        # PROMST: 30 steps, 40 on the largest (4x8) grid.
        return 40 if self.instance.config["rows"] * self.instance.config["cols"] >= 32 else 30

    def build(self, rng: random.Random) -> None:
        self.rows = int(self.instance.config["rows"])
        self.cols = int(self.instance.config["cols"])
        self.boxes = {(x, y): [] for x in range(self.rows + 1) for y in range(self.cols + 1)}
        self.targets = {(r, c): [] for r in range(self.rows) for c in range(self.cols)}
        n_cells = self.rows * self.cols
        for color in COLORS:
            box_cell = divmod(rng.randrange(n_cells), self.cols)
            target_cell = divmod(rng.randrange(n_cells), self.cols)
            corners = corners_of(box_cell)
            rng.shuffle(corners)
            free = [k for k in corners if not self.boxes[k]]
            if free:  # as in PROMST, a colour whose cell is full is left out
                self.boxes[free[0]].append(f"box_{color}")
                self.targets[target_cell].append(f"target_{color}")
        self.initial_boxes = self.boxes_left()

    # --- queries ---------------------------------------------------------------------------
    def boxes_left(self) -> int:
        return sum(len(b) for b in self.boxes.values())

    def box_corner(self, box: str, cell: Cell) -> Corner | None:
        """The corner of ``cell`` that holds ``box``, if any."""
        return next((k for k in corners_of(cell) if box in self.boxes[k]), None)

    def collisions(self) -> list[Corner]:
        return [k for k, b in self.boxes.items() if len(b) > 1]

    def doable(self, cell: Cell) -> list[str]:
        actions: list[str] = []
        for corner in corners_of(cell):
            for box in self.boxes[corner]:
                actions += [f"move({box}, {_position(k)})" for k in corners_of(cell) if k != corner]
                if "target_" + box[4:] in self.targets[cell]:
                    actions.append(f"move({box}, target_{box[4:]})")
        return actions

    def cell_of(self, agent: tuple[float, float]) -> Cell | None:
        r, c = agent[0] - 0.5, agent[1] - 0.5
        if r.is_integer() and c.is_integer() and 0 <= r < self.rows and 0 <= c < self.cols:
            return int(r), int(c)
        return None

    # --- TextEnv ---------------------------------------------------------------------------
    def render(self) -> str:
        lines = []
        for cell, targets in self.targets.items():
            seen = list(targets) + [
                f"{box} at {_position(k)}" for k in corners_of(cell) for box in self.boxes[k]
            ]
            can = ", ".join(self.doable(cell)) or "nothing"
            sq = _square(cell)
            lines.append(
                f"Agent{sq}: I am in square{sq}, I can observe [{', '.join(seen) or 'nothing'}], "
                f"I can do [{can}]"
            )
        return "\n".join(lines)

    def parse_action(self, text: str) -> list[BoxMove] | None:
        return MOVES.read(text)

    def format_action(self, action: list[BoxMove]) -> str:
        return MOVES.text(action)

    def apply(self, action: list[BoxMove]) -> Outcome:
        if not action:
            return Outcome(feedback="No agent was given an action; nothing changed.")
        acted: set[Cell] = set()
        notes: list[str] = []
        events: list[str] = []
        for sub in action:
            error = self._apply_sub(sub, acted)
            notes.append(error or "{} did {}.".format(*MOVES.canonical(sub)))
            if error and "invalid_action" not in events:
                events.append("invalid_action")
        crowded = self.collisions()
        if crowded:
            where = "; ".join(f"{' and '.join(self.boxes[k])} on {_position(k)}" for k in crowded)
            notes.append(f"Collision: more than one box on one corner ({where}). The episode ends.")
            events.append("collision")
        return Outcome(
            feedback=" ".join(notes),
            valid="invalid_action" not in events,
            events=events,
            terminated=bool(crowded),
        )

    def _apply_sub(self, sub: BoxMove, acted: set[Cell]) -> str | None:
        """Do one agent's order; return why it was refused, or None when it was done."""
        name = sub.raw_key.strip()
        cell = self.cell_of(sub.agent) if sub.agent else None
        if cell is None:
            return f"{name} is not an agent on this grid; its action was skipped."
        if cell in acted:
            return f"{name} was given more than one action; only the first was used."
        acted.add(cell)
        here = self.box_corner(sub.box, cell) if sub.box else None
        if here is None:
            return (
                f"Your assigned task for {name} ({sub.raw_value.strip()}) is not in the doable action "
                "list: that box is not on a corner of its square."
            )
        if sub.target is not None:
            if sub.target != "target_" + sub.box[4:] or sub.target not in self.targets[cell]:
                return (
                    f"Your assigned task for {name} is not in the doable action list: "
                    f"no target_{sub.box[4:]} in its square."
                )
            self.boxes[here].remove(sub.box)
            self.targets[cell].remove(sub.target)
            return None
        dest = self._corner(sub.dest) if sub.dest else None
        if dest is None or dest == here or dest not in corners_of(cell):
            return (
                f"Your assigned task for {name} is not in the doable action list: a box can only "
                "go to another corner of the agent's own square."
            )
        self.boxes[here].remove(sub.box)
        self.boxes[dest].append(sub.box)
        return None

    def _corner(self, pos: tuple[float, float]) -> Corner | None:
        x, y = pos
        if x.is_integer() and y.is_integer() and (int(x), int(y)) in self.boxes:
            return int(x), int(y)
        return None

    def progress(self) -> float:
        # PROMST's stuck counter resets exactly when a box is matched.
        return float(self.initial_boxes - self.boxes_left())

    def score(self) -> float:
        return (self.initial_boxes - self.boxes_left()) / self.initial_boxes


# --- scripted policy -----------------------------------------------------------------------
def _shared_cells(env: Env, a: Corner, b: Corner) -> list[Cell]:
    """Squares having both corners (so their agent can move a box from a to b), row-major."""
    cells = [(r, c) for r in (a[0] - 1, a[0]) for c in (a[1] - 1, a[1])]
    return [cell for cell in cells if cell in env.targets and b in corners_of(cell)]


def _next_corner(env: Env, start: Corner, goals: set[Corner], blocked: set[Corner]) -> Corner | None:
    """First corner on a shortest king-move path from start to a goal corner, avoiding blocked."""
    parent: dict[Corner, Corner] = {start: start}
    queue = deque([start])
    while queue:
        here = queue.popleft()
        if here in goals:
            while parent[here] != start:
                here = parent[here]
            return here
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                nxt = (here[0] + dx, here[1] + dy)
                if nxt in env.boxes and nxt not in parent and nxt not in blocked:
                    parent[nxt] = here
                    queue.append(nxt)
    return None


def oracle(env: Env) -> str:
    """Route each box one corner per step along a shortest path that avoids the other boxes'
    corners (their current ones, or their next ones once planned), then match it."""
    where = {box: k for k, boxes in env.boxes.items() for box in boxes}
    target_cell = {t: cell for cell, ts in env.targets.items() for t in ts}
    busy: set[Cell] = set()
    orders: dict[Cell, str] = {}
    waiting: list[str] = []
    for box in sorted(where):  # matches first, so they get their square's agent
        goal_cell = target_cell["target_" + box[4:]]
        if where[box] not in corners_of(goal_cell):
            waiting.append(box)
        elif goal_cell not in busy:
            busy.add(goal_cell)
            orders[goal_cell] = f"move({box}, target_{box[4:]})"
    for box in waiting:
        goal_cell = target_cell["target_" + box[4:]]
        here = where[box]
        blocked = {k for b, k in where.items() if b != box}
        step = _next_corner(env, here, set(corners_of(goal_cell)), blocked)
        free = [cell for cell in _shared_cells(env, here, step) if cell not in busy] if step else []
        if step is None or not free:
            continue
        busy.add(free[0])
        orders[free[0]] = f"move({box}, {_position(step)})"
        where[box] = step  # later boxes must avoid where this one is going
    return json.dumps({f"Agent{_square(cell)}": order for cell, order in sorted(orders.items())})
