"""BoxNet1: agents on a grid pass coloured boxes between cells and drop them on matching targets.

Rules follow PROMST's BoxNet1 (Chen et al., 2024): one agent per grid cell, named by the cell
centre (``Agent[0.5, 1.5]``); each colour has 1-3 boxes and as many targets, placed in uniformly
random cells. In one step every agent may do one action: move a box in its cell to a
4-neighbour cell, or put a box on a same-colour target in its cell (both disappear). Agents act
in the order the response lists them. Score = boxes matched / initial boxes.

Differences from PROMST's public code, on purpose:

- the state shown after a step is the state *after* the action (the base class renders after
  ``apply``; PROMST showed the state from before it);
- an agent named twice in one response (e.g. ``Agent[0.5,0.5]`` and ``Agent[0.5, 0.5]``) acts
  only once; the repeat is reported as an invalid action;
- nonexistent agents and malformed sub-actions are reported (event ``invalid_action``) instead of
  being silently dropped by the regex, and the doable-action list no longer repeats a move when
  a cell holds two boxes of one colour;
- the parser accepts the JSON object anywhere in the reply (prose, code fences, single quotes).
"""

import itertools
import json
import random
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
Cell = tuple[int, int]

# --- the environment -----------------------------------------------------------------------
# Orders: {"Agent[0.5, 1.5]": "move(box_blue, square[0.5, 2.5])" or "move(box_blue, target_blue)"},
# the agent named by its cell centre, a move's destination by the centre of the square it goes to.
MOVES = BoxMoves("square")


def _square(cell: Cell) -> str:
    return f"[{cell[0] + 0.5}, {cell[1] + 0.5}]"


class Env(TextEnv):
    rows: int
    cols: int
    cells: dict[Cell, list[str]]
    initial_boxes: int

    @property
    def max_steps(self) -> int:
        # PROMST: 30 steps, 40 on the largest (4x8) grid.
        return 40 if self.instance.config["rows"] * self.instance.config["cols"] >= 32 else 30

    def build(self, rng: random.Random) -> None:
        self.rows = int(self.instance.config["rows"])
        self.cols = int(self.instance.config["cols"])
        self.cells = {(r, c): [] for r in range(self.rows) for c in range(self.cols)}
        n_cells = self.rows * self.cols
        for color in COLORS:
            for _ in range(rng.randint(1, 3)):
                box_at = rng.randrange(n_cells)
                target_at = rng.randrange(n_cells)
                self.cells[divmod(box_at, self.cols)].append(f"box_{color}")
                self.cells[divmod(target_at, self.cols)].append(f"target_{color}")
        self.initial_boxes = self.boxes_left()

    # --- queries ---------------------------------------------------------------------------
    def boxes_left(self) -> int:
        return sum(item.startswith("box_") for items in self.cells.values() for item in items)

    def neighbours(self, cell: Cell) -> list[Cell]:
        r, c = cell
        near = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        return [(i, j) for i, j in near if 0 <= i < self.rows and 0 <= j < self.cols]

    def doable(self, cell: Cell) -> list[str]:
        items = self.cells[cell]
        actions: list[str] = []
        for box in dict.fromkeys(i for i in items if i.startswith("box_")):
            actions += [f"move({box}, square{_square(n)})" for n in self.neighbours(cell)]
            if "target_" + box[4:] in items:
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
        for cell, items in self.cells.items():
            seen = ", ".join(items) if items else "nothing"
            can = ", ".join(self.doable(cell)) or "nothing"
            sq = _square(cell)
            lines.append(f"Agent{sq}: I am in square{sq}, I can observe [{seen}], I can do [{can}]")
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
        errors = 0
        for sub in action:
            error = self._apply_sub(sub, acted)
            if error:
                errors += 1
                notes.append(error)
            else:
                notes.append("{} did {}.".format(*MOVES.canonical(sub)))
        events = ["invalid_action"] if errors else []
        return Outcome(feedback=" ".join(notes), valid=not errors, events=events)

    def _apply_sub(self, sub: BoxMove, acted: set[Cell]) -> str | None:
        """Do one agent's order; return why it was refused, or None when it was done."""
        name = sub.raw_key.strip()
        cell = self.cell_of(sub.agent) if sub.agent else None
        if cell is None:
            return f"{name} is not an agent on this grid; its action was skipped."
        if cell in acted:
            return f"{name} was given more than one action; only the first was used."
        acted.add(cell)
        items = self.cells[cell]
        if sub.box is None or sub.box not in items:
            return (
                f"Your assigned task for {name} ({sub.raw_value.strip()}) is not in the doable action list."
            )
        if sub.target is not None:
            if sub.target != "target_" + sub.box[4:] or sub.target not in items:
                return (
                    f"Your assigned task for {name} is not in the doable action list: "
                    f"no target_{sub.box[4:]} in its square."
                )
            items.remove(sub.box)
            items.remove(sub.target)
            return None
        dest = self.cell_of(sub.dest) if sub.dest else None
        if dest is None or dest not in self.neighbours(cell):
            return (
                f"Your assigned task for {name} is not in the doable action list: "
                "a box can only go to a neighbouring square."
            )
        items.remove(sub.box)
        self.cells[dest].append(sub.box)
        return None

    def progress(self) -> float:
        # PROMST's stuck counter resets exactly when a box is matched.
        return float(self.initial_boxes - self.boxes_left())

    def score(self) -> float:
        return (self.initial_boxes - self.boxes_left()) / self.initial_boxes


# --- scripted policy -----------------------------------------------------------------------
def _dist(a: Cell, b: Cell) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _assign(env: Env) -> list[tuple[Cell, str, Cell]]:
    """(box cell, box, target cell) for every box: a min-total-distance matching per colour."""
    plan: list[tuple[Cell, str, Cell]] = []
    for color in COLORS:
        boxes = [cell for cell, items in env.cells.items() for i in items if i == f"box_{color}"]
        targets = [cell for cell, items in env.cells.items() for i in items if i == f"target_{color}"]
        best = min(itertools.permutations(targets), key=lambda p: sum(map(_dist, boxes, p)), default=())
        # Counts match while the episode runs (a match removes one of each); zip guards the rest.
        plan += [(b, f"box_{color}", t) for b, t in zip(boxes, best, strict=False)]
    return plan


def _step_toward(src: Cell, dst: Cell) -> Cell:
    if src[0] != dst[0]:
        return (src[0] + (1 if dst[0] > src[0] else -1), src[1])
    return (src[0], src[1] + (1 if dst[1] > src[1] else -1))


def oracle(env: Env) -> str:
    """Each agent handles the box in its cell that is furthest from its target (critical path
    first); a box already on its target's cell is matched."""
    orders: dict[str, str] = {}
    chosen: dict[Cell, tuple[int, str, Cell]] = {}
    for cell, box, target in _assign(env):
        d = _dist(cell, target)
        if cell not in chosen or d > chosen[cell][0]:
            chosen[cell] = (d, box, target)
    for cell, (d, box, target) in sorted(chosen.items()):
        if d == 0:
            orders[f"Agent{_square(cell)}"] = f"move({box}, target_{box[4:]})"
        else:
            orders[f"Agent{_square(cell)}"] = f"move({box}, square{_square(_step_toward(cell, target))})"
    return json.dumps(orders)
