"""Warehouse: robots on horizontal tracks pick boxes from the shelves between tracks and carry
them to a target area on the left, without two robots ever sharing a track cell.

Rules follow PROMST's Warehouse (Chen et al., 2024). Tracks ``track_0 .. track_{T-1}`` are rows
of columns ``0 .. C-1``; shelf slots lie between neighbouring tracks, at ``box_{i+0.5}_{j}``
(between track i and i+1, column j), each holding a box with probability p. A robot is either
on a track cell or in the target area, which holds any number of robots. Actions:
``move left`` / ``move right`` (one column, on a track), ``pick box_x_y`` (empty hand, same
column, shelf row 0.5 above or below the track), ``move to target`` (only from column 0; drops
the box carried, which is then delivered) and ``move to track_k`` (from the target, onto column
0 of track k). All robots move at once; if two robots on tracks end the step in the same cell,
that is a collision and the episode ends. Score = delivered boxes / initial boxes.

Differences from PROMST's public code, on purpose:

- collisions are detected on the state after all moves and reported as the event ``collision``,
  ending the episode; the state shown after a step is the state *after* it (PROMST showed the
  one before);
- ``move to track_0`` is a legal move (PROMST flagged it as an error but still executed it);
  a track that does not exist is refused and the robot stays where it is;
- every refused action (unknown robot, a move off the end of a track, picking a box that is not
  there or not next to the robot, a robot given two actions) is reported as ``invalid_action``;
- an instance always has at least one box (PROMST could generate an empty warehouse, whose
  score is undefined);
- the parser accepts the JSON object anywhere in the reply (prose, code fences, single quotes).
"""

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from agentopt.tasks.env import Outcome, TextEnv
from agentopt.tasks.parsing import pairs_json, read_orders

FAMILIES: list[dict[str, Any]] = [
    {"tracks": 3, "columns": 5, "box_prob": 0.5, "agents": 2},
    {"tracks": 4, "columns": 4, "box_prob": 0.3, "agents": 3},
    {"tracks": 4, "columns": 6, "box_prob": 0.3, "agents": 4},
    {"tracks": 5, "columns": 6, "box_prob": 0.3, "agents": 5},
]

Slot = tuple[int, int]  # shelf (i, j): between track i and track i+1, column j
Pos = tuple[int, int]  # track cell (track, column)

# --- the environment -----------------------------------------------------------------------
_AGENT_RE = re.compile(r"^\W*agent\s*_?\s*(\d+)\W*$", re.I)
_PAIR_RE = re.compile(r"""(agent\s*_?\s*\d+)\s*["']?\s*:\s*["']?\s*([a-z][a-z_ 0-9.]*)""", re.I)
_NUM = r"(\d+(?:\.\d+)?)"
_PICK_RE = re.compile(rf"^pick\s+(?:up\s+)?(?:the\s+)?box\s*_?\s*{_NUM}\s*_\s*{_NUM}$")
_TRACK_RE = re.compile(r"^move\s+to\s+(?:the\s+)?track\s*_?\s*(\d+)$")
_SIMPLE = {
    "move left": ("left",),
    "move right": ("right",),
    "move to target": ("target",),
    "move to the target": ("target",),
}

Command = tuple[Any, ...]  # ("left",), ("right",), ("target",), ("track", k), ("pick", x, y)


def _command(value: str) -> Command | None:
    text = " ".join(value.lower().replace("-", " ").split()).strip(" .;")
    if text in _SIMPLE:
        return _SIMPLE[text]
    if m := _TRACK_RE.match(text):
        return ("track", int(m.group(1)))
    if m := _PICK_RE.match(text):
        return ("pick", float(m.group(1)), float(m.group(2)))
    return None


def _command_text(cmd: Command) -> str:
    if cmd[0] in ("left", "right"):
        return f"move {cmd[0]}"
    if cmd[0] == "target":
        return "move to target"
    if cmd[0] == "track":
        return f"move to track_{cmd[1]}"
    return f"pick box_{cmd[1]}_{cmd[2]}"


def box_name(slot: Slot) -> str:
    return f"box_{slot[0] + 0.5}_{float(slot[1])}"


@dataclass(frozen=True)
class SubAction:
    """One robot's order: ``agent`` is the robot's number and ``command`` what it is told to do,
    each None when that part could not be read."""

    raw_key: str
    raw_value: str
    agent: int | None
    command: Command | None


def _parse_sub(key: str, value: str) -> SubAction:
    m = _AGENT_RE.match(key)
    return SubAction(key, value, int(m.group(1)) if m else None, _command(value))


@dataclass
class Robot:
    pos: Pos | None  # None = in the target area
    carrying: bool = False


class Env(TextEnv):
    tracks: int
    columns: int
    shelves: set[Slot]
    robots: list[Robot]
    initial_boxes: int
    delivered: int

    @property
    def max_steps(self) -> int:
        return 50  # PROMST

    def build(self, rng: random.Random) -> None:
        cfg = self.instance.config
        self.tracks, self.columns = int(cfg["tracks"]), int(cfg["columns"])
        slots = [(i, j) for i in range(self.tracks - 1) for j in range(self.columns)]
        self.shelves = set()
        while not self.shelves:  # an empty warehouse has no score; draw again
            self.shelves = {s for s in slots if rng.random() < float(cfg["box_prob"])}
        # As in PROMST: distinct draws from T*C track cells plus 5 "in the target" slots.
        n_cells = self.tracks * self.columns
        starts = rng.sample(range(n_cells + 5), int(cfg["agents"]))
        self.robots = [Robot(divmod(s, self.columns) if s < n_cells else None) for s in starts]
        self.initial_boxes = len(self.shelves)
        self.delivered = 0

    # --- queries ---------------------------------------------------------------------------
    def reachable_slots(self, pos: Pos) -> list[Slot]:
        """Shelf slots next to a track cell (above and below), whether or not they hold a box."""
        track, col = pos
        return [(i, col) for i in (track - 1, track) if 0 <= i < self.tracks - 1]

    def doable(self, robot: Robot) -> list[str]:
        if robot.pos is None:
            return [f"move to track_{k}" for k in range(self.tracks)]
        track, col = robot.pos
        actions = []
        if col > 0:
            actions.append("move left")
        if col < self.columns - 1:
            actions.append("move right")
        if col == 0:
            actions.append("move to target")
        if not robot.carrying:
            actions += [f"pick {box_name(s)}" for s in self.reachable_slots(robot.pos) if s in self.shelves]
        return actions

    def collisions(self) -> list[Pos]:
        counts = Counter(r.pos for r in self.robots if r.pos is not None)
        return [pos for pos, n in counts.items() if n > 1]

    # --- TextEnv ---------------------------------------------------------------------------
    def render(self) -> str:
        boxes = ", ".join(box_name(s) for s in sorted(self.shelves)) or "none"
        lines = [
            f"The warehouse has tracks track_0 .. track_{self.tracks - 1} with columns 0 .. "
            f"{self.columns - 1}; the target is to the left of column 0 of every track.",
            f"The left boxes and their locations in the warehouse are: {boxes}.",
            f"Boxes delivered to the target so far: {self.delivered} of {self.initial_boxes}.",
        ]
        for i, robot in enumerate(self.robots):
            if robot.pos is None:
                where = "I am in the target now"
            else:
                load = "carrying a box, so I can not pick another" if robot.carrying else "not carrying a box"
                where = f"I am in track_{robot.pos[0]} and column_{robot.pos[1]}, {load}"
            lines.append(f"I am agent{i}, {where}. I can do: {'; '.join(self.doable(robot))}.")
        return "\n".join(lines)

    def parse_action(self, text: str) -> list[SubAction] | None:
        # {"agent0": "move left", "agent1": "pick box_0.5_2", ...}; {} is "nobody acts".
        return read_orders(text, _PAIR_RE, _AGENT_RE, _parse_sub)

    def format_action(self, action: list[SubAction]) -> str:
        return pairs_json(
            [
                (
                    f"agent{s.agent}" if s.agent is not None else s.raw_key,
                    _command_text(s.command) if s.command else s.raw_value,
                )
                for s in action
            ]
        )

    def apply(self, action: list[SubAction]) -> Outcome:
        if not action:
            return Outcome(feedback="No agent was given an action; nothing changed.")
        acted: set[int] = set()
        notes: list[str] = []
        events: list[str] = []
        delivered_before = self.delivered
        for sub in action:
            error = self._apply_sub(sub, acted)
            notes.append(error or f"agent{sub.agent} did {_command_text(sub.command)}.")
            if error and "invalid_action" not in events:
                events.append("invalid_action")
        if self.delivered > delivered_before:
            notes.append(f"{self.delivered - delivered_before} box(es) delivered to the target.")
        crowded = self.collisions()
        if crowded:
            where = ", ".join(f"track_{t} column_{c}" for t, c in crowded)
            notes.append(f"Collision: two agents are in the same position ({where}). The episode ends.")
            events.append("collision")
        return Outcome(
            feedback=" ".join(notes),
            valid="invalid_action" not in events,
            events=events,
            terminated=bool(crowded),
        )

    def _apply_sub(self, sub: SubAction, acted: set[int]) -> str | None:
        """Do one robot's order; return why it was refused, or None when it was done."""
        name = sub.raw_key.strip()
        if sub.agent is None or not 0 <= sub.agent < len(self.robots):
            return f"{name} is not an agent in this warehouse; its action was skipped."
        if sub.agent in acted:
            return f"{name} was given more than one action; only the first was used."
        acted.add(sub.agent)
        robot = self.robots[sub.agent]
        cmd = sub.command
        if cmd is None:
            return (
                f"Your assigned task for {name} ({sub.raw_value.strip()}) is not in the doable action list."
            )
        if cmd[0] == "track" and robot.pos is None and 0 <= cmd[1] < self.tracks:
            robot.pos = (cmd[1], 0)
            return None
        if robot.pos is None:
            return (
                f"{name} is in the target; it can only move to a track (track_0 .. track_{self.tracks - 1})."
            )
        track, col = robot.pos
        if cmd[0] == "left" and col > 0:
            robot.pos = (track, col - 1)
        elif cmd[0] == "right" and col < self.columns - 1:
            robot.pos = (track, col + 1)
        elif cmd[0] == "target" and col == 0:
            robot.pos = None
            self.delivered += int(robot.carrying)
            robot.carrying = False
        elif cmd[0] == "pick" and not robot.carrying and self._pick_slot(cmd, robot.pos) is not None:
            self.shelves.discard(self._pick_slot(cmd, robot.pos))
            robot.carrying = True
        else:
            return (
                f"Your assigned task for {name} ({_command_text(cmd)}) is not in the doable action list; "
                f"it can do: {'; '.join(self.doable(robot))}."
            )
        return None

    def _pick_slot(self, cmd: Command, pos: Pos) -> Slot | None:
        """The shelf slot a pick command names, if it is next to ``pos`` and holds a box."""
        x, y = cmd[1] - 0.5, cmd[2]
        if not (x.is_integer() and y.is_integer()):
            return None
        slot = (int(x), int(y))
        return slot if slot in self.shelves and slot in self.reachable_slots(pos) else None

    def progress(self) -> float:
        # PROMST's stuck counter watches boxes on shelves + boxes carried, which only changes
        # when a box is delivered.
        return float(self.delivered)

    def score(self) -> float:
        return self.delivered / self.initial_boxes


# --- scripted policy -----------------------------------------------------------------------
def _cost(robot: Robot, slot: Slot) -> int:
    """Steps until ``robot`` (empty-handed) can pick the box in ``slot``."""
    i, j = slot
    if robot.pos is None:
        return 1 + j + 1
    track, col = robot.pos
    if track in (i, i + 1):
        return abs(col - j) + 1
    return col + 1 + 1 + j + 1


def _claims(env: Env) -> dict[int, Slot]:
    """Pair empty-handed robots with boxes, with the stuck rule (9 steps without a delivery) in
    mind: unless a loaded robot is already on its way, the cheapest pair goes first, so that a
    delivery comes soon; the other robots take the farthest boxes, each its cheapest robot, so
    their long trips overlap the short ones instead of coming last and outlasting the window."""
    idle = [k for k, r in enumerate(env.robots) if not r.carrying]
    claims: dict[int, Slot] = {}
    if not idle or not env.shelves:
        return claims
    if not any(r.carrying for r in env.robots):
        _, first, slot = min((_cost(env.robots[k], s), k, s) for k in idle for s in env.shelves)
        claims[first] = slot
    for slot in sorted((s for s in env.shelves if s not in claims.values()), key=lambda s: (-s[1], s)):
        free = [k for k in idle if k not in claims]
        if not free:
            break
        claims[min(free, key=lambda k: (_cost(env.robots[k], slot), k))] = slot
    return claims


def _wish(env: Env, k: int, goal: Slot | None) -> Command | None:
    """What robot k would do next ignoring the others; None = stay put."""
    robot = env.robots[k]
    if robot.pos is None:
        # Enter a track next to the box (the one whose entry cell is free, if either is).
        if goal is None:
            return None
        free = [t for t in (goal[0], goal[0] + 1) if all(r.pos != (t, 0) for r in env.robots)]
        return ("track", (free or [goal[0]])[0])
    track, col = robot.pos
    on_line = goal is not None and track in (goal[0], goal[0] + 1)
    if robot.carrying or not on_line:
        return ("target",) if col == 0 else ("left",)  # deliver, or leave by the target
    assert goal is not None
    if col == goal[1]:
        return ("pick", goal[0] + 0.5, float(goal[1]))
    return ("right",) if goal[1] > col else ("left",)


def _after(robot: Robot, cmd: Command | None) -> Pos | None:
    """Where a robot ends up after ``cmd``."""
    if cmd is None or (robot.pos is None and cmd[0] != "track"):
        return robot.pos
    if cmd[0] == "track":
        return (cmd[1], 0)
    if cmd[0] == "target":
        return None
    track, col = robot.pos  # type: ignore[misc]
    return {"left": (track, col - 1), "right": (track, col + 1)}.get(cmd[0], robot.pos)


def oracle(env: Env) -> str:
    """Each empty robot goes for the nearest unclaimed box (via the target if it is on another
    track); loaded robots head for the target. Of all ways to let some robots do what they want
    and the rest wait, take a collision-free one that favours loaded robots, then lower numbers
    (at most 2^5 subsets, so just try them all)."""
    claims = _claims(env)
    wishes = {k: _wish(env, k, claims.get(k)) for k in range(len(env.robots))}
    movers = sorted(
        (k for k, cmd in wishes.items() if cmd is not None),
        key=lambda k: (not env.robots[k].carrying, k),
    )
    best: tuple[int, ...] = ()
    best_value = -1
    for mask in range(1 << len(movers)):
        chosen = tuple(k for b, k in enumerate(movers) if mask >> b & 1)
        ends = [_after(r, wishes[k]) if k in chosen else r.pos for k, r in enumerate(env.robots)]
        on_track = [e for e in ends if e is not None]
        if len(on_track) != len(set(on_track)):
            continue
        value = sum(1 << (len(movers) - b) for b, k in enumerate(movers) if k in chosen)
        if value > best_value:
            best, best_value = chosen, value
    orders = {f"agent{k}": _command_text(wishes[k]) for k in sorted(best)}  # type: ignore[arg-type]
    return json.dumps(orders)
