"""A scripted world for Reflexion tests, on the linewalk fixture task.

The actor moves right K times and then left, where K is the largest "move right K times" in its
system prompt (0 without memory, so trial 1 walks straight into the pit). The reflector writes
"move right 2T times" after trial T, but only when it is shown the task's rule feedback (or the
evaluator's "task only N% complete" line); otherwise its lesson is useless. So the score can
rise across trials only if rule feedback reaches the reflector and lessons reach the actor.

Linewalk's train goals are 4, 7, 2, 6: instance 2 is solved at trial 2, instance 0 at trial 3,
instance 3 at trial 4 and instance 1 at trial 5.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from agentopt.lm import register_script
from agentopt.types import Instance, Step, Trajectory

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
MARKS = ("walked into the pit", "No progress for 3 steps", "task only")


def lesson_k(system_prompt: str) -> int:
    return max((int(k) for k in re.findall(r"move right (\d+) times", system_prompt)), default=0)


class World:
    """Scripts plus a record of every first-step system prompt the actor saw."""

    def __init__(self) -> None:
        self.first_prompts: list[tuple[str, str]] = []  # (observation, system prompt)
        self.reflection_inputs: list[str] = []
        self._lock = threading.Lock()

    def actor(self, messages, params) -> str:
        system, user = messages[0].content, messages[-1].content
        step = user.count("Action ")
        if step == 0:
            state = user.split("State 1:\n", 1)[1].split("\n", 1)[0]
            with self._lock:
                self.first_prompts.append((state, system))
        return "{right}" if step < lesson_k(system) else "{left}"

    def reflector(self, messages, params) -> str:
        text = messages[-1].content
        with self._lock:
            self.reflection_inputs.append(text)
        trial = int(re.search(r"Your attempt \(trial (\d+)\)", text).group(1))
        if any(mark in text for mark in MARKS):
            return f"New plan: move right {2 * trial} times before anything else."
        return "New plan: I am not sure what went wrong."

    def both(self, messages, params) -> str:
        """One model for the CLI test: reflection requests end with 'New plan:'."""
        if messages[-1].content.rstrip().endswith("New plan:"):
            return self.reflector(messages, params)
        return self.actor(messages, params)

    def register(self, name: str) -> tuple[str, str, str]:
        return (register_script(f"{name}-actor", self.actor),
                register_script(f"{name}-reflector", self.reflector),
                register_script(f"{name}-both", self.both))


def plain_agent(prompt: str, instance: Instance) -> Trajectory:
    """A user's own agent, no LM and no task env: it reaches 'goal 3' by K steps right."""
    k = lesson_k(prompt)
    score = min(1.0, k / 3)
    steps = [Step(observation="at 0 of 3", raw_output=f"walk right {k} then stop", action=f"right*{k}",
                  valid=True)]
    return Trajectory(instance=instance, steps=steps, score=score, success=score >= 1.0)


class FakeLedger:
    """Stands in for the preference ledger: ``add`` dedups by preference id."""

    def __init__(self) -> None:
        self.rows: dict[str, object] = {}

    def add(self, preference) -> bool:
        if preference.id in self.rows:
            return False
        self.rows[preference.id] = preference
        return True
