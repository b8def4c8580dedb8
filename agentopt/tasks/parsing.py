"""Reading actions out of chatty model output, and writing them back, for the bundled tasks.

Each task keeps its own rules and its own action vocabulary in its ``task.py``; what several
tasks read the same way is here:

- JSON-ish order objects (BoxNet1/2, BoxLift, Warehouse): the reply holds one object mapping
  agents (or boxes) to orders; models wrap it in prose and code fences, use single or curly
  quotes, or leave values unquoted. `extract_pairs` finds the object anyway, `read_orders`
  turns its pairs into a task's orders, and `pairs_json` writes them back.
- BoxNet moves: `BoxMoves` (``Agent[x, y]`` keys, ``move(box_c, ...)`` values) and `BoxMove`,
  one agent's order.
- Plan phrases (BlocksWorld, Logistics): `last_phrase`, the action phrase that comes last in
  the reply, so reasoning before the final answer is ignored; `english_list` writes lists of
  facts and names the way those tasks' states and feedback do.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_MAX_BLOCKS = 32  # bounded work on adversarial input with thousands of braces

T = TypeVar("T")


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


def read_orders(
    text: str, pair_re: re.Pattern[str], key_re: re.Pattern[str], make: Callable[[str, str], T]
) -> list[T] | None:
    """The orders in a reply: ``make(key, value)`` for each pair of its order object.

    The order object is the latest ``{...}`` block (see `extract_pairs`, which reads a block
    that is not JSON with ``pair_re``) that is empty, an explicit "nobody acts", or has a key in
    which ``key_re`` finds what the task's orders are addressed to (an agent; a box in BoxLift).
    None when the reply has no such block. ``make`` should not raise: a key or value it cannot
    read becomes an order the task refuses when it is applied.
    """

    def accept(pairs: list[tuple[str, str]]) -> bool:
        return not pairs or any(key_re.search(key) for key, _ in pairs)

    pairs = extract_pairs(text, pair_re, accept)
    if pairs is None:
        return None
    return [make(key, value) for key, value in pairs]


# --- BoxNet moves ----------------------------------------------------------------------------
_COORD = r"(-?\d+(?:\.\d+)?)"
# An agent named by the centre of its grid cell: ``Agent[0.5, 1.5]``.
AGENT_CELL_RE = re.compile(rf"agent\s*\[\s*{_COORD}\s*,\s*{_COORD}\s*\]", re.I)
# A pair in a block that is not JSON: an agent key, then a ``move(...)`` value.
_MOVE_PAIR_RE = re.compile(r"""(agent\s*\[[^\]]*\])\s*["']?\s*:\s*["']?\s*(move\s*\([^)]*\))""", re.I)


@dataclass(frozen=True)
class BoxMove:
    """One agent's order in a BoxNet task, as read from the reply.

    ``raw_key``/``raw_value`` are the pair as written; ``agent`` is the agent's cell centre and
    ``box`` the box it moves (``box_<colour>``), each None when that part could not be read. The
    move goes onto ``target`` (``target_<colour>``, a match) or else to ``dest`` (the
    destination's coordinates: a cell centre in BoxNet1, a corner in BoxNet2).
    """

    raw_key: str
    raw_value: str
    agent: tuple[float, float] | None
    box: str | None = None
    target: str | None = None
    dest: tuple[float, float] | None = None


def _coord(x: float) -> str:
    return str(float(x))


class BoxMoves:
    """The order vocabulary of a BoxNet task: ``{"Agent[x, y]": "move(box_<colour>, ...)"}``.

    The second argument of ``move`` is ``target_<colour>`` (put the box on its target) or a
    destination written ``<place>[x, y]``, where ``place`` is the task's word for it
    (``square`` in BoxNet1, ``position`` in BoxNet2). Keys, box and target names are read
    case-insensitively and written back the way the task's state writes them.
    """

    def __init__(self, place: str) -> None:
        self.place = place
        self.move_re = re.compile(
            rf"move\s*\(\s*(box_[a-z]+)\s*,\s*(?:(target_[a-z]+)|{re.escape(place)}\s*\[\s*{_COORD}\s*,"
            rf"\s*{_COORD}\s*\])\s*\)",
            re.I,
        )

    def read(self, text: str) -> list[BoxMove] | None:
        """The moves in a reply (see `read_orders`), in the order it lists them; None when it
        has no order object addressed to agents."""
        return read_orders(text, _MOVE_PAIR_RE, AGENT_CELL_RE, self.parse)

    def parse(self, key: str, value: str) -> BoxMove:
        """One pair of the order object as a `BoxMove`; what cannot be read is left None."""
        agent_m = AGENT_CELL_RE.search(key)
        agent = (float(agent_m.group(1)), float(agent_m.group(2))) if agent_m else None
        move_m = self.move_re.search(value)
        if move_m is None:
            return BoxMove(key, value, agent)
        box, target, x, y = move_m.groups()
        dest = (float(x), float(y)) if x is not None else None
        return BoxMove(key, value, agent, box.lower(), target.lower() if target else None, dest)

    def canonical(self, move: BoxMove) -> tuple[str, str]:
        """(agent, order) as the state writes them; the raw text for parts that could not be read."""
        agent = move.agent
        key = f"Agent[{_coord(agent[0])}, {_coord(agent[1])}]" if agent else move.raw_key.strip()
        if move.box and move.target:
            return key, f"move({move.box}, {move.target})"
        if move.box and move.dest:
            return key, f"move({move.box}, {self.place}[{_coord(move.dest[0])}, {_coord(move.dest[1])}])"
        return key, move.raw_value.strip()

    def text(self, moves: list[BoxMove]) -> str:
        """The moves written back as one JSON object, in their order (repeats kept)."""
        return pairs_json([self.canonical(move) for move in moves])


# --- plan phrases ----------------------------------------------------------------------------
def last_phrase(
    text: str, patterns: Mapping[str, re.Pattern[str]], build: Callable[[str, re.Match[str]], T]
) -> T | None:
    """The action of the phrase that starts last in ``text``, so reasoning and earlier steps
    written before the final answer are ignored; None when no pattern matches.

    ``patterns`` maps each kind of action to the phrases that spell it; ``build(kind, match)``
    makes the action from the winning match. Of two phrases starting at the same place, the
    kind listed first wins.
    """
    best: tuple[int, str, re.Match[str]] | None = None
    for kind, pattern in patterns.items():
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                best = (match.start(), kind, match)
    return build(best[1], best[2]) if best else None


def english_list(parts: list[str]) -> str:
    """An English list: "a", "a and b", "a, b and c"; "none" when there is nothing."""
    if len(parts) <= 1:
        return "".join(parts) or "none"
    return ", ".join(parts[:-1]) + " and " + parts[-1]
