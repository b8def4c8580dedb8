"""BoxLift: group lifting agents so that each group can carry the box it is sent to.

Rules follow PROMST's BoxLift (Chen et al., 2024): boxes have a volume (shown) and a weight
(hidden, roughly equal to the volume); agents have a lifting capacity (shown). In one step the
planner sends groups of agents to boxes; a box is lifted (and removed) when the group's summed
capacity is at least its weight. Every agent is available again in the next step.
Score = lifted weight / total weight.

Differences from PROMST's public code, on purpose:

- boxes with the same volume are no longer merged into one (PROMST kept a ``volume -> weight``
  dict, so equal volumes collapsed): every box is kept, and a volume shared by several boxes is
  shown with the box's number, e.g. ``box_3[1.5V]`` and ``box_9[1.5V]``; agents with equal
  capacities are numbered the same way (``agent_2[2.5W]``). A bare ``box[1.5V]`` or
  ``agent[2.5W]`` still works and picks the lowest-numbered one not yet used in this step;
- each agent can be used at most once per step (PROMST summed the same agent as often as it was
  listed), and a group naming an agent that does not exist, or one already used in this step, is
  refused as a whole (event ``invalid_action``) instead of counting the phantom capacity;
- the state shown after a step is the state *after* the action (PROMST showed the one before);
- the parser accepts the JSON object anywhere in the reply (prose, code fences, single quotes,
  agents as a list or a comma-separated string).
"""

import bisect
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agentopt.tasks.env import Outcome, TextEnv
from agentopt.tasks.parsing import pairs_json, read_orders

FAMILIES: list[dict[str, Any]] = [
    {"agents": 4, "boxes": 16},
    {"agents": 6, "boxes": 24},
    {"agents": 8, "boxes": 35},
    {"agents": 10, "boxes": 45},
]

# --- the environment -----------------------------------------------------------------------
_NUM = r"(\d+(?:\.\d+)?)"
_BOX_RE = re.compile(rf"box(?:_(\d+))?\s*\[\s*{_NUM}\s*V?\s*\]", re.I)
_AGENT_RE = re.compile(rf"agent(?:_(\d+))?\s*\[\s*{_NUM}\s*W?\s*\]", re.I)
# Fallback for a block that is not JSON: a box key, then everything up to the next box key.
_PAIR_RE = re.compile(
    r"""(box\w*\s*\[[^\]]*\])\s*["']?\s*:\s*(.*?)(?=,?\s*["']?box\w*\s*\[|\}|$)""", re.I | re.S
)
_EPS = 1e-9


@dataclass
class Item:
    """A box (``size`` = volume, ``weight`` hidden) or an agent (``size`` = capacity)."""

    index: int  # 1-based, stable for the whole episode
    size: float
    name: str
    weight: float = 0.0


Ref = tuple[int | None, float]  # (number if given, volume or capacity)


@dataclass(frozen=True)
class Order:
    """One group sent to one box, as written."""

    raw_key: str
    raw_value: str
    box: Ref | None
    agents: tuple[Ref, ...]


def _names(prefix: str, unit: str, sizes: list[float]) -> list[str]:
    counts = Counter(sizes)
    return [
        f"{prefix}[{s}{unit}]" if counts[s] == 1 else f"{prefix}_{i + 1}[{s}{unit}]"
        for i, s in enumerate(sizes)
    ]


def _ref(match: re.Match[str]) -> Ref:
    return (int(match.group(1)) if match.group(1) else None, float(match.group(2)))


def _parse_order(key: str, value: str) -> Order:
    box = _BOX_RE.search(key)
    agents = tuple(_ref(m) for m in _AGENT_RE.finditer(value))
    return Order(key, value, _ref(box) if box else None, agents)


def _ref_text(prefix: str, unit: str, ref: Ref) -> str:
    number = f"_{ref[0]}" if ref[0] is not None else ""
    return f"{prefix}{number}[{ref[1]}{unit}]"


def _weight(volume: float, rng: random.Random) -> float:
    """PROMST's weight model: about the volume, 10% Gaussian noise, 5% chance of a +-50% outlier."""
    noise = rng.gauss(0, volume * 0.1)
    if rng.random() < 0.05:
        noise += rng.choice([-1, 1]) * volume * 0.5
    return round(max(0.1, volume + noise), 1)


class Env(TextEnv):
    boxes: list[Item]  # remaining boxes
    agents: list[Item]
    total_weight: float
    lifted_weight: float

    @property
    def max_steps(self) -> int:
        # PROMST: 20 steps, 25 with 10 agents.
        return 25 if self.instance.config["agents"] >= 10 else 20

    def build(self, rng: random.Random) -> None:
        n_boxes = int(self.instance.config["boxes"])
        n_agents = int(self.instance.config["agents"])
        volumes = [rng.randint(2, 20) / 2 for _ in range(n_boxes)]
        weights = [_weight(v, rng) for v in volumes]
        capacities = [rng.randint(1, 15) / 2 for _ in range(n_agents)]
        # As in PROMST, all agents together must be able to lift the heaviest box.
        while sum(capacities) < max(weights):
            capacities = [c + 0.5 for c in capacities]
        box_names = _names("box", "V", volumes)
        agent_names = _names("agent", "W", capacities)
        self.boxes = [
            Item(i + 1, v, box_names[i], w) for i, (v, w) in enumerate(zip(volumes, weights, strict=True))
        ]
        self.agents = [Item(i + 1, c, agent_names[i]) for i, c in enumerate(capacities)]
        self.total_weight = sum(weights)
        self.lifted_weight = 0.0

    # --- TextEnv ---------------------------------------------------------------------------
    def render(self) -> str:
        boxes = ", ".join(b.name for b in self.boxes) or "none"
        agents = ", ".join(a.name for a in self.agents)
        return (
            f"The left boxes in the warehouse are: {boxes}.\n"
            f"The available lifting agents in the warehouse are: {agents}."
        )

    def parse_action(self, text: str) -> list[Order] | None:
        # {"box[1.5V]": "agent[2.5W], agent_2[1.0W]", ...}: orders are keyed by box; {} lifts nothing.
        return read_orders(text, _PAIR_RE, _BOX_RE, _parse_order)

    def format_action(self, action: list[Order]) -> str:
        out: list[tuple[str, str]] = []
        for order in action:
            key = _ref_text("box", "V", order.box) if order.box else order.raw_key
            out.append((key, ", ".join(_ref_text("agent", "W", a) for a in order.agents) or order.raw_value))
        return pairs_json(out)

    def apply(self, action: list[Order]) -> Outcome:
        if not action:
            return Outcome(feedback="No box was assigned any agents; nothing changed.")
        used: set[int] = set()  # agent indices already sent somewhere in this step
        targeted: set[int] = set()  # box indices already addressed in this step
        notes: list[str] = []
        invalid = False
        for order in action:
            note, ok = self._apply_order(order, used, targeted)
            notes.append(note)
            invalid = invalid or not ok
        return Outcome(
            feedback=" ".join(notes), valid=not invalid, events=["invalid_action"] if invalid else []
        )

    def _apply_order(self, order: Order, used: set[int], targeted: set[int]) -> tuple[str, bool]:
        """Try one group on one box; (what happened, whether the order was legal)."""
        key = order.raw_key.strip()
        box = self._find(self.boxes, order.box, targeted) if order.box else None
        if box is None:
            return (
                f"{key} is not in the current field (or was already addressed in this step); skipped.",
                False,
            )
        if not order.agents:
            return f"No agents were given for {box.name}; skipped.", False
        group: list[Item] = []
        for ref in order.agents:
            agent = self._find(self.agents, ref, used | {a.index for a in group})
            if agent is None:
                what = _ref_text("agent", "W", ref)
                exists = self._find(self.agents, ref, set()) is not None
                why = "is already used in this step" if exists else "is not in the current field"
                return f"{what} {why}, so the group for {box.name} was not sent.", False
            group.append(agent)
        targeted.add(box.index)
        used.update(a.index for a in group)
        names = " and ".join(a.name for a in group)
        if sum(a.size for a in group) + _EPS >= box.weight:
            self.boxes.remove(box)
            self.lifted_weight += box.weight
            return f"{box.name} was lifted by {names}.", True
        return (
            f"The weight of {box.name} is higher than the summation of lifting capability of {names}, "
            "so it can not be lifted.",
            True,
        )

    @staticmethod
    def _find(items: list[Item], ref: Ref, taken: set[int]) -> Item | None:
        """The item a reference means: by number if given, else the first free one of that size."""
        number, size = ref
        for item in items:
            if abs(item.size - size) < _EPS and item.index not in taken and number in (None, item.index):
                return item
        return None

    def progress(self) -> float:
        # PROMST's stuck counter resets exactly when a box is lifted.
        return self.lifted_weight

    def score(self) -> float:
        if not self.boxes:  # exactly 1.0, whatever the float rounding of the running sum
            return 1.0
        return min(1.0, self.lifted_weight / self.total_weight)

    def is_success(self) -> bool:
        return not self.boxes


# --- scripted policy -----------------------------------------------------------------------
def oracle(env: Env) -> str:
    """Knows the hidden weights. Heaviest box first, each gets the free group of agents with the
    smallest total capacity that still lifts it (ties: fewer agents)."""
    agents = env.agents
    subsets = sorted(
        (sum(a.size for i, a in enumerate(agents) if mask >> i & 1), bin(mask).count("1"), mask)
        for mask in range(1, 1 << len(agents))
    )
    sums = [s[0] for s in subsets]
    used = 0
    orders: dict[str, str] = {}
    for box in sorted(env.boxes, key=lambda b: (-b.weight, b.index)):
        start = bisect.bisect_left(sums, box.weight - _EPS)
        mask = next((m for _, _, m in subsets[start:] if not m & used), None)
        if mask is None:
            continue
        used |= mask
        orders[box.name] = ", ".join(a.name for i, a in enumerate(agents) if mask >> i & 1)
    return json.dumps(orders)
