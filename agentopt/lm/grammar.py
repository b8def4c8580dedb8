"""A regex as a GBNF grammar, for llama.cpp's constrained decoding (local models, and the
``grammar`` field of a llama.cpp server). Tasks declare their actions as regexes
(`agentopt.tasks.actions`); the backends translate them here."""

from __future__ import annotations

import json
import re
from typing import Any

from agentopt.errors import UserError


def regex_to_gbnf(pattern: str) -> str:
    """A GBNF grammar whose language is the strings ``re.fullmatch(pattern, s)`` accepts.

    Covers what action formats use: literals, classes, ``.``, groups, alternation and
    quantifiers. Anchors are dropped (the whole reply must match anyway); lookarounds and
    backreferences have no grammar equivalent and are refused.
    """
    from re import _parser as sre_parse  # the stdlib's own regex parser: no second dialect

    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise UserError(f"action regex does not compile: {exc}") from exc
    if parsed.state.flags & ~(re.UNICODE | re.NOFLAG):
        # (?i) and friends would make the grammar and a vLLM guided_regex accept different text.
        raise UserError(f"action regex {pattern!r} uses inline flags; spell the cases out instead")
    return f"root ::= {_sequence(list(parsed))}\n"


def _sequence(items: list[tuple[Any, Any]]) -> str:
    from re import _constants as c

    parts: list[str] = []
    run = ""  # consecutive literal characters become one string literal
    for op, av in items:
        if op is c.LITERAL:
            run += chr(av)
            continue
        if run:
            parts.append(json.dumps(run))
            run = ""
        if part := _item(op, av):
            parts.append(part)
    if run:
        parts.append(json.dumps(run))
    if not parts:
        return '""'
    return parts[0] if len(parts) == 1 else "(" + " ".join(parts) + ")"


def _item(op: Any, av: Any) -> str:
    from re import _constants as c

    if op is c.LITERAL:
        return json.dumps(chr(av))
    if op is c.NOT_LITERAL:
        return f"[^{_class_char(chr(av))}]"
    if op is c.ANY:
        return "[^\\n]"
    if op is c.IN:
        return _char_class(av)
    if op is c.BRANCH:
        return "(" + " | ".join(_sequence(list(seq)) for seq in av[1]) + ")"
    if op is c.SUBPATTERN:
        return _sequence(list(av[-1]))
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
        low, high, inner = av
        base = _sequence(list(inner))
        if (low, high) == (0, 1):
            return f"{base}?"
        if high is c.MAXREPEAT:
            return f"{base}*" if low == 0 else f"{base}+" if low == 1 else f"{base}{{{low},}}"
        return f"{base}{{{low},{high}}}"
    if op is c.AT:
        return ""
    if op is c.CATEGORY:
        return _category(av)
    raise UserError(f"action regex uses {op} which has no grammar equivalent")


def _char_class(items: list[tuple[Any, Any]]) -> str:
    from re import _constants as c

    negate = False
    body = []
    for op, av in items:
        if op is c.NEGATE:
            negate = True
        elif op is c.LITERAL:
            body.append(_class_char(chr(av)))
        elif op is c.RANGE:
            body.append(f"{_class_char(chr(av[0]))}-{_class_char(chr(av[1]))}")
        elif op is c.CATEGORY:
            body.append(_category(av)[1:-1])
        else:
            raise UserError(f"action regex class uses {op} which has no grammar equivalent")
    return "[" + ("^" if negate else "") + "".join(body) + "]"


def _category(av: Any) -> str:
    name = str(av).rsplit("_", 1)[-1].lower()
    negated = "_not_" in str(av).lower()
    body = {"digit": "0-9", "space": " \\t\\n\\r", "word": "a-zA-Z0-9_"}.get(name)
    if body is None:
        raise UserError(f"action regex uses category {av} which has no grammar equivalent")
    return f"[{'^' if negated else ''}{body}]"


def _class_char(ch: str) -> str:
    if ch in "]\\^-[":
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    return ch
