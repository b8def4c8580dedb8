"""Human-designed feedback rules (PROMST section 3.1).

A rule is data: a name, a trigger, and the feedback text an optimiser is given when it fires.
Tasks declare their rules in ``task.toml``; this module watches an episode step by step and
reports the rule that fires, which (as in PROMST) ends the episode unless the rule says
``terminates = false``.

Triggers:

- ``event:NAME`` fires when the environment reports event NAME for the step
  (``wrong_format``, ``invalid_action``, ``collision``...).
- ``stuck`` fires when the environment's ``progress`` has not changed for ``steps`` steps.
- ``step_limit`` fires when the episode is truncated by the task's step limit.
"""

from __future__ import annotations

import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key (terminate) is an error, not a default

    name: str
    on: str
    feedback: str
    terminates: bool = True
    steps: int = Field(default=5, ge=1, description="window for the `stuck` trigger")

    @field_validator("on")
    @classmethod
    def _known_trigger(cls, value: str) -> str:
        if value in ("stuck", "step_limit") or (value.startswith("event:") and len(value) > 6):
            return value
        raise ValueError(f"unknown rule trigger {value!r} (use event:NAME, stuck or step_limit)")

    def render(self, **fields: Any) -> str:
        """The feedback text with ``{response}``, ``{action}``, ``{env_feedback}``... filled in.

        Unknown placeholders are left as they are, so a typo in a task file never crashes a run.
        """
        return string.Formatter().vformat(self.feedback, (), _KeepMissing(fields))


class _KeepMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class RuleMonitor:
    """Watches one episode and says which rule, if any, fires at each step."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._last_progress: float | None = None
        self._unchanged = 0

    def reset(self, progress: float) -> None:
        self._last_progress = progress
        self._unchanged = 0

    def check(self, *, events: list[str], progress: float, truncated: bool) -> Rule | None:
        """Update with one step's outcome; return the rule that fires, if any.

        When several fire, the first terminating one (in file order) wins, so a rule that only
        records (``terminates = false``) never hides one that ends the episode.
        """
        if self._last_progress is not None and progress == self._last_progress:
            self._unchanged += 1
        else:
            self._unchanged = 0
        self._last_progress = progress
        fired = [rule for rule in self.rules if self._fires(rule, events, truncated)]
        return next((r for r in fired if r.terminates), fired[0] if fired else None)

    def _fires(self, rule: Rule, events: list[str], truncated: bool) -> bool:
        if rule.on.startswith("event:"):
            return rule.on[6:] in events
        if rule.on == "stuck":
            return self._unchanged >= rule.steps
        return truncated  # step_limit
