"""agentopt's tasks as DSPy programs, so DSPy's optimisers work on exactly the same episodes.

`EnvProgram` is one ``dspy.Predict`` (``observation -> response``) whose instruction starts as
the task's human prompt. It plays an episode through agentopt's own `run_episode`, so the
observation at each step is the user message agentopt's agent sees (history included), and the
score and the rule feedback are the ones agentopt computes. A single-turn task is the one-step
case. The metric is the episode's score. GEPA's textual feedback is the task's rule feedback,
the same text PROMST learns from.
"""

from __future__ import annotations

import copy
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentopt.tasks.loader import Task
from agentopt.tasks.rollout import run_episode
from agentopt.types import Instance, Message, Trajectory


class EpisodeLengths:
    """The longest episode, in agent steps, that a program and all its copies have played.

    The peers are stopped before a step that could pass the budget, and what a step costs is
    counted in episodes; this is how many calls an episode of this task has been seen to take."""

    def __init__(self) -> None:
        self.longest = 0

    def add(self, steps: int) -> None:
        self.longest = max(self.longest, steps)


class EnvProgram(dspy.Module):
    def __init__(self, task: Task, history_tokens: int = 1000,
                 lengths: EpisodeLengths | None = None) -> None:
        super().__init__()
        self.task = task
        self.history_tokens = history_tokens
        self.lengths = lengths or EpisodeLengths()
        signature = dspy.Signature("observation -> response", instructions=task.initial_prompt)
        self.act = dspy.Predict(signature)

    def forward(self, episode: dict[str, Any]) -> dspy.Prediction:
        instance = Instance.model_validate(episode)

        def policy(messages: list[Message]) -> tuple[str, int, int]:
            try:
                reply = self.act(observation=messages[-1].content).response
            except AdapterParseError:
                # A reply DSPy cannot parse is the program's failure on this step, as an
                # unparseable action is for agentopt's agent: the environment scores it.
                reply = ""
            return str(reply or ""), 0, 0

        trajectory = run_episode(self.task, instance, "", policy, history_tokens=self.history_tokens)
        self.lengths.add(trajectory.n_steps)
        return dspy.Prediction(
            score=trajectory.score, feedback=feedback_text(trajectory), trajectory=trajectory
        )

    def instruction(self) -> str:
        return str(self.act.signature.instructions)

    def __deepcopy__(self, memo: dict[int, Any]) -> EnvProgram:
        # DSPy copies a program for every candidate. The task (its environment code and data)
        # is shared, not copied: it is not a parameter, and copying it would fail. So are the
        # episode lengths, which must count the episodes of every candidate of the search.
        memo[id(self.task)] = self.task
        memo[id(self.lengths)] = self.lengths
        new = self.__class__.__new__(self.__class__)
        for name, value in self.__dict__.items():
            new.__dict__[name] = copy.deepcopy(value, memo)
        return new


def feedback_text(trajectory: Trajectory) -> str:
    """The task's rule feedback on the episode, as PROMST shows it to its optimiser."""
    if trajectory.success:
        return "The episode succeeded."
    texts = [f.text for f in trajectory.feedback if f.text]
    return "\n".join(texts) or f"The episode scored {trajectory.score:.2f} without any rule firing."


def examples(instances: list[Instance]) -> list[dspy.Example]:
    return [dspy.Example(episode=i.model_dump(mode="json")).with_inputs("episode") for i in instances]


def score_metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
    return float(prediction.score)


def feedback_metric(
    gold: dspy.Example,
    prediction: dspy.Prediction,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> dspy.Prediction:
    return dspy.Prediction(score=float(prediction.score), feedback=prediction.feedback)
