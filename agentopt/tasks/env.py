"""The environment contract every task implements.

It follows Gymnasium's Env API (``reset(seed) -> (obs, info)``, ``step(action) -> (obs, reward,
terminated, truncated, info)``) with text observations and text actions. The action handed to
``step`` is the model's raw output: the task parses it itself, because only the task knows what a
legal action looks like, and a parse failure is itself an event the feedback rules react to.

Every ``step`` reports, in ``info``:

- ``events``: names of things that happened that feedback rules may key on (``wrong_format``,
  ``invalid_action``, ``collision``, ``out_of_grid``, ``wrong_order``, ``wrong_object``, ...).
- ``progress``: a number that goes up when the task advances; an unchanged value for N steps is
  what the "stuck" rule detects.
- ``score``: the completion ratio so far, in [0, 1].
- ``success``: whether the task is fully solved.
- ``action``: the canonical form of the parsed action, or None when parsing failed.
- ``valid``: whether the action was legal and applied.
- ``feedback``: the environment's reply to the action, shown to the agent next turn.

The observation returned by ``step`` describes the state *after* the action (PROMST's public
code showed the state from before it in four tasks; we don't).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentopt.types import Instance


@dataclass
class Outcome:
    """What applying one parsed action did. Returned by ``TextEnv.apply``."""

    feedback: str
    valid: bool = True
    events: list[str] = field(default_factory=list)
    terminated: bool = False


class TextEnv(ABC):
    """Base class for a text environment built from one `Instance`.

    Subclasses implement ``build`` (make the world from the instance config and an RNG),
    ``render`` (state as text), ``parse_action``, ``apply``, ``progress`` and ``score``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.steps_taken = 0
        self._built = False

    # --- Gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Build the world. The instance's own seed is used unless one is given."""
        rng = random.Random(self.instance.seed if seed is None else seed)
        self.build(rng)
        self._built = True
        self.steps_taken = 0
        return self.render(), self._info(events=[], action=None, valid=True, feedback="")

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not self._built:
            raise RuntimeError("call reset() before step()")
        self.steps_taken += 1
        before = self.score()
        parsed = self.parse_action(action)
        if parsed is None:
            outcome = Outcome(
                feedback="Your response is in the wrong format; no action was taken.",
                valid=False,
                events=["wrong_format"],
            )
            canonical = None
        else:
            outcome = self.apply(parsed)
            canonical = self.format_action(parsed)
        success = self.is_success()
        terminated = outcome.terminated or success
        truncated = not terminated and self.steps_taken >= self.max_steps
        reward = self.score() - before
        info = self._info(
            events=outcome.events, action=canonical, valid=outcome.valid, feedback=outcome.feedback
        )
        return self.render(), reward, terminated, truncated, info

    def _info(
        self, *, events: list[str], action: str | None, valid: bool, feedback: str
    ) -> dict[str, Any]:
        return {
            "events": list(events),
            "progress": self.progress(),
            "score": self.score(),
            "success": self.is_success(),
            "action": action,
            "valid": valid,
            "feedback": feedback,
        }

    def turn_message(self, history: list[Any], observation: str, history_tokens: int) -> str:
        """The user message of one step. PROMST's frame (past steps, then the current state);
        a task whose agent should see something else overrides it (single-turn tasks)."""
        from agentopt.tasks.rollout import render_turn

        return render_turn(history, observation, history_tokens)

    # --- what a task implements ----------------------------------------------------------
    @property
    @abstractmethod
    def max_steps(self) -> int:
        """Step limit for this instance."""

    @abstractmethod
    def build(self, rng: random.Random) -> None:
        """Create the world for ``self.instance`` using only ``rng`` for randomness."""

    @abstractmethod
    def render(self) -> str:
        """The current state as the text the agent sees."""

    @abstractmethod
    def parse_action(self, text: str) -> Any | None:
        """Extract an action from model output (tolerating chatter); None if there is none."""

    @abstractmethod
    def format_action(self, action: Any) -> str:
        """Canonical text of a parsed action (what the trajectory records)."""

    @abstractmethod
    def apply(self, action: Any) -> Outcome:
        """Apply a parsed action to the world."""

    @abstractmethod
    def progress(self) -> float:
        """A monotone measure of task progress (unchanged for N steps = stuck)."""

    @abstractmethod
    def score(self) -> float:
        """Completion ratio in [0, 1]."""

    def is_success(self) -> bool:
        return self.score() >= 1.0 - 1e-9
