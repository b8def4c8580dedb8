"""Reading an answer out of a model's reply, and scoring it against the target.

A reply is expected to end with a line ``Answer: X`` (the bundled prompts ask for it). When no
such line exists, the last ``\\boxed{X}`` counts, then a reply that is one short line is taken
as the answer itself; anything else is *wrong format*, which the feedback rules and the
optimisers treat apart from a wrong answer.

Metrics take ``(answer, example)`` and return a score in [0, 1]:

- ``exact_match``: equal after lower-casing and dropping punctuation and extra spaces;
- ``numeric``: the last number in the answer equals the target's (relative tolerance 1e-6);
- ``multiple_choice``: the chosen option letter, or the option's text, is the target;
- ``f1``: token-level F1 (SQuAD style), for free-form answers;
- ``module:function`` or ``file.py:function`` (relative to the task folder): the user's own.
"""

from __future__ import annotations

import importlib
import math
import re
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.tasks.modules import import_file

Metric = Callable[[str, dict[str, Any]], float]

# A line that starts with "Answer:" is a commitment; "the answer is X" inside prose is one only
# when no such line exists ("I hope this answer is helpful" must not override "Answer: 12").
_ANSWER_START = re.compile(r"^[\s*#>_`-]*(?:final\s+)?answer\s*[:=]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_ANSWER_LINE = re.compile(r"\banswer\s*(?::|=|is\b:?)\s*(.+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_SHORT_REPLY = 60  # characters: a bare reply this short, on one line, is read as the answer
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_answer(reply: str) -> str | None:
    """The answer a reply commits to, or None when it commits to none (wrong format)."""
    matches = _ANSWER_START.findall(reply) or _ANSWER_LINE.findall(reply)
    if matches:
        answer = _strip_markup(matches[-1])
        return answer or None
    boxed = _BOXED.findall(reply)
    if boxed:  # the LaTeX convention math-tuned models fall back on
        return boxed[-1].strip() or None
    lines = [line for line in reply.strip().splitlines() if line.strip()]
    if len(lines) == 1 and len(lines[0]) <= _SHORT_REPLY:
        return _strip_markup(lines[0]) or None
    return None


def _strip_markup(text: str) -> str:
    text = text.strip().strip("*`_ ").rstrip(".").strip("*`_ ").strip()
    return re.sub(r"^\\boxed\{(.*)\}$", r"\1", text).strip()


def normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch if ch not in string.punctuation else " " for ch in text)
    return " ".join(text.split())


def exact_match(answer: str, example: dict[str, Any]) -> float:
    return float(normalize(answer) == normalize(str(example["target"])))


def _last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric(answer: str, example: dict[str, Any]) -> float:
    got, want = _last_number(answer), _last_number(str(example["target"]))
    if got is None or want is None:
        return 0.0
    return float(math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9))


_OPTION = re.compile(r"^\(?([A-Za-z])\)?(?:[\s.:)]|$)")


def multiple_choice(answer: str, example: dict[str, Any]) -> float:
    """``example["target"]`` is the option letter; ``example["choices"]`` (optional) the option
    texts in letter order, so an answer naming the option's text also counts."""
    target = str(example["target"]).strip().strip("()").upper()
    choices = example.get("choices") or []
    # The option's own text first: "A dog" names the option "A dog", not option A.
    for i, choice in enumerate(choices):
        if normalize(str(choice)) == normalize(answer):
            return float(string.ascii_uppercase[i] == target)
    found = _OPTION.match(answer.strip())
    if found:
        return float(found.group(1).upper() == target)
    return 0.0


def f1(answer: str, example: dict[str, Any]) -> float:
    got, want = normalize(answer).split(), normalize(str(example["target"])).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


BUILTIN: dict[str, Metric] = {
    "exact_match": exact_match,
    "numeric": numeric,
    "multiple_choice": multiple_choice,
    "f1": f1,
}


def load_metric(spec: str, folder: Path | None = None) -> Metric:
    """A built-in metric by name, or ``module:function`` / ``file.py:function``."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" not in spec:
        raise UserError(
            f"unknown metric {spec!r}: use {', '.join(BUILTIN)}, module:function or file.py:function"
        )
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where) if Path(where).is_absolute() or folder is None else folder / where
        if not path.is_file():
            raise UserError(f"metric file not found: {path}")
        module = import_file(path, f"agentopt_metric_{abs(hash(str(path.resolve()))):x}")
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UserError(f"cannot import metric module {where!r}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"metric {spec!r}: {where} has no function {name!r}")
    return fn
