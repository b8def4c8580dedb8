"""Scoring a prompt on a split: rollouts, per-instance scores, mean with a confidence interval."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, Field

from agentopt.stats import MeanCI, mean_ci
from agentopt.tasks.loader import Task
from agentopt.tasks.rollout import Agent, rollout
from agentopt.types import Instance, Prompt, Split, Trajectory


class Evaluation(BaseModel):
    task: str
    split: Split
    prompt_id: str
    scores: dict[str, float]
    steps: dict[str, int] = Field(default_factory=dict, description="steps per instance")
    score: MeanCI
    success_rate: float
    mean_steps: float
    prompt_tokens: int
    completion_tokens: int
    rules_fired: dict[str, int]


def summarize(task: Task, split: Split, prompt: str, trajectories: Sequence[Trajectory]) -> Evaluation:
    n = max(1, len(trajectories))
    fired: dict[str, int] = {}
    for t in trajectories:
        for fb in t.feedback:
            if fb.rule:
                fired[fb.rule] = fired.get(fb.rule, 0) + 1
    return Evaluation(
        task=task.name,
        split=split,
        prompt_id=Prompt(text=prompt).id,
        scores={t.instance.id: t.score for t in trajectories},
        steps={t.instance.id: t.n_steps for t in trajectories},
        score=mean_ci([t.score for t in trajectories]),
        success_rate=sum(t.success for t in trajectories) / n,
        mean_steps=sum(t.n_steps for t in trajectories) / n,
        prompt_tokens=sum(t.prompt_tokens for t in trajectories),
        completion_tokens=sum(t.completion_tokens for t in trajectories),
        rules_fired=dict(sorted(fired.items())),
    )


def evaluate(
    agent: Agent,
    task: Task,
    prompt: str,
    instances: Sequence[Instance],
    *,
    max_concurrency: int = 4,
    on_done: Callable[[Trajectory], None] | None = None,
    split: Split | None = None,
) -> tuple[Evaluation, list[Trajectory]]:
    """``prompt`` played on ``instances``; ``split`` names them when there are none (an empty
    test split), so the evaluation says which split scored nothing rather than guessing."""
    split = split or (instances[0].split if instances else "test")
    trajectories = rollout(
        agent, prompt, instances, task=task, max_concurrency=max_concurrency, on_done=on_done
    )
    return summarize(task, split, prompt, trajectories), trajectories
