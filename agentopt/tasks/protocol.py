"""What agentopt needs of a task, and nothing more.

Every optimiser, agent, benchmark and command reaches a task only through these members, so
anything that has them is a task: a folder loaded by `agentopt.tasks.loader`, a task built in
code (`agentopt.tasks.define`), or a class of your own. ``agentopt tasks check`` (and
`agentopt.tasks.check.check_task`) runs the promises below on one.

The promises that the types cannot say:

- ``instances(split, n)`` gives the first ``n`` instances of the split (all of them when ``n``
  is None), the same ones on every call and every machine, and no instance in two splits;
- ``make_env(instance)`` gives a fresh `TextEnv` whose ``reset()`` always starts that instance
  the same way, and whose ``step(text)`` takes any text without raising (text it cannot read is
  the event ``wrong_format``);
- ``rules`` turn the events an episode reports into the feedback text optimisers learn from.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

from agentopt.tasks.actions import ActionGrammar
from agentopt.tasks.env import TextEnv
from agentopt.tasks.rules import Rule
from agentopt.types import Instance, Split


@runtime_checkable
class SplitSizesLike(Protocol):
    train: int
    validation: int
    test: int


@runtime_checkable
class TaskProtocol(Protocol):
    """A task, as optimisers and agents use it."""

    @property
    def name(self) -> str:
        """Unique, case-insensitive; run directories, caches and instances carry it."""
        ...

    @property
    def initial_prompt(self) -> str:
        """The human-written prompt: where searches start, and the baseline every result is paired with."""
        ...

    @property
    def rules(self) -> list[Rule]:
        """Feedback rules, checked in order after each step."""
        ...

    @property
    def splits(self) -> SplitSizesLike:
        """How many instances each split holds."""
        ...

    @property
    def actions(self) -> ActionGrammar | None:
        """Well-formed actions, for ``--constrain-actions``; None when the task declares none."""
        ...

    @property
    def single_turn(self) -> bool:
        """True for one question, one reply (a dataset task)."""
        ...

    def instances(self, split: Split, n: int | None = None) -> list[Instance]: ...

    def make_env(self, instance: Instance) -> TextEnv: ...


TASK_MEMBERS = (
    "name", "initial_prompt", "rules", "splits", "actions", "single_turn", "instances", "make_env",
)


def missing_members(obj: object) -> list[str]:
    """The members of `TaskProtocol` that ``obj`` lacks. Looked up statically: asking for a
    property would compute it (read a prompt file, build a dataset) just to see it is there."""
    absent = object()
    return [name for name in TASK_MEMBERS if inspect.getattr_static(obj, name, absent) is absent]


def is_task(obj: object) -> bool:
    return not isinstance(obj, (str, bytes)) and not missing_members(obj)
