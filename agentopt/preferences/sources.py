"""Where pairwise preferences come from: one interface, three sources.

APOHF (Lin et al. 2024, "Prompt Optimization with Human Feedback", arXiv 2405.17346) learns only
from answers to "which of these two is better?". Anything that can answer that question is a
`PreferenceSource`:

- `SimulatedUser`: a latent score per compared item (for task prompts, the prompt's training
  score) and the paper's Bradley-Terry-Luce draw ``y ~ Bernoulli(sigmoid(u(a) - u(b)))``, with
  ``u`` the score z-normalised and multiplied by 10 as in the public code. For benchmarks.
- `LLMJudge`: a model reads a rubric template (``prompts/judge/pairwise.j2``) with both
  responses and answers A, B or tie; asked in both orders so position bias cancels.
- `HumanSource` (in `agentopt.preferences.terminal`): a person at the terminal.

`compare(context, a, b)` answers ``"a"``, ``"b"``, ``"tie"`` or ``"skip"`` (no information); a
source that wants the whole session to end raises `StopFeedback`.
"""

from __future__ import annotations

import math
import random
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel

from agentopt.lm.client import LM
from agentopt.prompts import render_prompt
from agentopt.types import Trajectory

Verdict = Literal["a", "b", "tie", "skip"]
VERDICTS: tuple[Verdict, ...] = ("a", "b", "tie", "skip")


class StopFeedback(Exception):  # noqa: N818 - a request, not an error
    """The source wants the session to end now (a person pressed q)."""


class Shown(BaseModel):
    """One side of a comparison.

    ``text`` is what the source is shown (a response, or a rendered trajectory); ``key`` is the
    thing being compared, the arm (a prompt text for prompt optimisation, the response itself
    for response optimisation): latent scores, the ledger's chosen/rejected and resumption are
    all keyed on it.
    """

    text: str
    key: str
    title: str = ""

    @classmethod
    def of(cls, value: Shown | str) -> Shown:
        return value if isinstance(value, Shown) else cls(text=value, key=value)


class PreferenceSource(ABC):
    """Anything that answers "which of these two is better?"."""

    #: the ledger's ``source`` column for the preferences this source produces
    name: str = "source"
    #: False when the source judges the arms themselves (a latent score), so the caller may skip
    #: producing responses for it
    needs_responses: bool = True

    def prepare(self, keys: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Called once with every arm before the first comparison (e.g. to normalise scores)."""

    @abstractmethod
    def compare(self, context: str, a: Shown | str, b: Shown | str) -> Verdict:
        """``"a"`` or ``"b"`` for the preferred side, ``"tie"``, or ``"skip"`` for no answer."""

    def latent(self, key: str) -> float | None:
        """The hidden score of an arm, when the source has one (a simulated user); else None."""
        return None


# --- simulated user ------------------------------------------------------------------------
class SimulatedUser(PreferenceSource):
    """A Bradley-Terry-Luce user over a known latent score (APOHF's simulated human).

    Args:
        score: the latent score of an arm (called at most once per arm, then cached), or a
            mapping from arm to score.
        scale: the BTL temperature's inverse: utilities are ``scale * z`` (10 in the paper).
        normalize: z-normalise scores with the mean and standard deviation of a reference set,
            by default up to ``n_reference`` arms drawn from those given to `prepare` (the paper
            uses 50 random prompts). Without it utilities are ``scale * score``.
        seed: the seed of the Bernoulli draws (and of the reference sample).
    """

    needs_responses = False

    def __init__(
        self,
        score: Callable[[str], float] | Mapping[str, float],
        *,
        scale: float = 10.0,
        normalize: bool = True,
        n_reference: int = 50,
        seed: int = 0,
        name: str = "simulated",
    ) -> None:
        self._score_fn = score.__getitem__ if isinstance(score, Mapping) else score
        self.scale = scale
        self.normalize = normalize
        self.n_reference = n_reference
        self.name = name
        self.rng = random.Random(seed)
        self._reference_rng = random.Random(f"reference/{seed}")
        self._cache: dict[str, float] = {}
        self._lock = threading.Lock()
        self.mean = 0.0
        self.std = 1.0
        self.prepared = False

    def prepare(self, keys: Sequence[str]) -> None:
        if not self.normalize or self.prepared or not keys:
            return
        keys = list(dict.fromkeys(keys))
        reference = (
            keys if len(keys) <= self.n_reference else self._reference_rng.sample(keys, self.n_reference)
        )
        scores = [self.latent(k) for k in reference]
        self.mean = sum(scores) / len(scores)
        var = sum((s - self.mean) ** 2 for s in scores) / len(scores)
        # All-equal scores carry no signal; std 1 keeps the draw a fair coin instead of 0/0.
        self.std = math.sqrt(var) if var > 1e-12 else 1.0
        self.prepared = True

    def latent(self, key: str) -> float:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = float(self._score_fn(key))  # outside the lock: it may run rollouts
        with self._lock:
            return self._cache.setdefault(key, value)

    def utility(self, key: str) -> float:
        return self.scale * (self.latent(key) - self.mean) / self.std

    def probability(self, a: str, b: str) -> float:
        """P(a is preferred to b) = sigmoid(u(a) - u(b))."""
        diff = self.utility(a) - self.utility(b)
        return 1.0 / (1.0 + math.exp(-diff)) if diff > -700 else 0.0

    def compare(self, context: str, a: Shown | str, b: Shown | str) -> Verdict:
        p = self.probability(Shown.of(a).key, Shown.of(b).key)
        with self._lock:
            return "a" if self.rng.random() < p else "b"


# --- LLM judge -------------------------------------------------------------------------------
DEFAULT_RUBRIC = (
    "Which response better serves the user: more helpful, correct and relevant, with the "
    "required format followed? Prefer substance over length."
)

TASK_RUBRIC = (
    "Each response is the record of an agent's episode on the task described in the context. "
    "Which agent did better: it made more progress toward the goal, chose valid actions in the "
    "required format, avoided mistakes the environment reported, and wasted fewer steps?"
)

_BRACKETED = re.compile(r"\[\[\s*(a|b|tie|draw|equal)\s*\]\]", re.IGNORECASE)
_LABELLED = re.compile(
    r"(?:verdict|answer|winner|decision|choice|better\s+response|preferred\s+response)\**"
    r"\s*(?:is|:|=|-)\s*[\"'*(\[]*\s*(?:response|assistant|option)?\s*(a|b|tie|draw|neither)\b",
    re.IGNORECASE,
)
_CLAIM = re.compile(
    r"\b(?:response|assistant|option)\s+(a|b)\s+is\s+(?:better|preferred|superior)", re.IGNORECASE
)


def parse_verdict(text: str) -> Literal["a", "b", "tie"] | None:
    """The verdict in a judge's reply, or None if it gave none.

    Tries, in order: the template's ``[[A]]``/``[[B]]``/``[[tie]]`` (the last one wins, since
    models restate the options before answering), a labelled answer ("Verdict: B"), a claim
    ("Response A is better"), and a reply that is only the letter.
    """

    def norm(token: str) -> Literal["a", "b", "tie"]:
        token = token.lower()
        return token if token in ("a", "b") else "tie"  # type: ignore[return-value]

    found = _BRACKETED.findall(text)
    if found:
        return norm(found[-1])
    found = _LABELLED.findall(text)
    if found:
        return norm(found[-1])
    found = _CLAIM.findall(text)
    if found:
        return norm(found[-1])
    bare = text.strip().strip(".*\"'()[] ").lower()
    if bare in ("a", "b", "tie", "response a", "response b"):
        return norm(bare.rsplit(" ", 1)[-1])
    return None


class LLMJudge(PreferenceSource):
    """A model as the source of preferences.

    The rubric template is rendered with the context and the two responses; the judge answers
    with ``[[A]]``, ``[[B]]`` or ``[[tie]]``. With ``both_orders`` (the default) it is asked
    twice, with the responses swapped the second time: a verdict that flips with the order is
    position bias, not preference, and counts as a tie.
    """

    def __init__(
        self,
        lm: LM,
        *,
        rubric: str = DEFAULT_RUBRIC,
        template: str = "judge/pairwise",
        both_orders: bool = True,
        temperature: float = 0.0,
        max_tokens: int = 384,
        name: str | None = None,
    ) -> None:
        self.lm = lm
        self.rubric = rubric
        self.template = template
        self.both_orders = both_orders
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.name = name or f"judge:{lm.model}"
        self.replies: list[str] = []  # raw judge replies, for inspection

    def message(self, context: str, first: str, second: str) -> str:
        return render_prompt(
            self.template, rubric=self.rubric, context=context, response_a=first, response_b=second
        )

    def ask(self, context: str, first: str, second: str) -> Literal["a", "b", "tie"] | None:
        """One judgement with ``first`` shown as A."""
        reply = self.lm.chat(
            [{"role": "user", "content": self.message(context, first, second)}],
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        ).text
        self.replies.append(reply)
        return parse_verdict(reply)

    def compare(self, context: str, a: Shown | str, b: Shown | str) -> Verdict:
        a_text, b_text = Shown.of(a).text, Shown.of(b).text
        forward = self.ask(context, a_text, b_text)
        if not self.both_orders:
            return forward or "skip"
        swapped = self.ask(context, b_text, a_text)
        backward = {"a": "b", "b": "a"}.get(swapped, swapped) if swapped else None
        return combine_verdicts(forward, backward)


def combine_verdicts(first: str | None, second: str | None) -> Verdict:
    """Two judgements of the same pair (already in the same orientation) -> one verdict."""
    if first is None and second is None:
        return "skip"
    if first is None or second is None:
        return first or second  # type: ignore[return-value]
    return first if first == second else "tie"  # type: ignore[return-value]


# --- showing a trajectory --------------------------------------------------------------------
def render_trajectory(trajectory: Trajectory, *, max_output_chars: int = 300) -> str:
    """An episode as a judge or a person reads it: each step's output, action and the
    environment's reply, then how it ended. The score is left out: judging it is the point."""
    lines: list[str] = []
    for i, step in enumerate(trajectory.steps, 1):
        output = " ".join(step.raw_output.split())
        if len(output) > max_output_chars:
            output = output[:max_output_chars] + " ..."
        action = step.action if step.valid and step.action is not None else "(invalid)"
        lines.append(f"Step {i}: {output}\n  action: {action}\n  environment: {step.env_feedback}")
    if trajectory.success:
        ending = "reached the goal"
    elif trajectory.error:
        ending = f"failed: {trajectory.error}"
    else:
        ending = f"stopped ({trajectory.terminated_by or 'unfinished'})"
    lines.append(f"Episode {ending} after {trajectory.n_steps} steps.")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_RUBRIC",
    "TASK_RUBRIC",
    "VERDICTS",
    "LLMJudge",
    "PreferenceSource",
    "Shown",
    "SimulatedUser",
    "StopFeedback",
    "Verdict",
    "combine_verdicts",
    "parse_verdict",
    "render_trajectory",
]
