"""Bootstrapped demonstrations: the human prompt plus worked examples that the agent itself got
right, chosen by random search over example sets.

The idea is DSPy's bootstrap few-shot with random search (Khattab et al., "DSPy: Compiling
Declarative Language Model Calls into Self-Improving Pipelines", arXiv 2310.03714): a small
model often follows a few of its own correct replies better than any rewording of the
instruction, and those replies cost nothing to find, since scoring the human prompt plays them.

The search:

1. The human prompt is scored on the train instances.
2. Its *demonstrations* are the steps that raised an episode's score, taken from the episodes
   that succeeded (from any episode with progress when none succeeded, as on hard multi-step
   tasks), each as the user message of that step (in the task's frame, without the episode's
   history) and the reply the agent gave. A step whose message
   and reply are longer than ``max_demo_chars`` is left out: it would crowd the context.
3. Candidate ``i`` is the human prompt followed by a random set of demonstrations, of size
   ``max_demos``, ``max_demos - 1``, ..., 1, round-robin (seeded, so a rerun proposes the same
   sets); a set already tried is not drawn again (the next size is drawn instead when one size
   has no new set left). Each candidate is scored on train.
4. Stop after ``n_candidates`` sets, when no new set can be drawn, or on budget. The choice
   among the best train candidates and the human prompt is made on validation, and reported on
   test (`RunContext.finish`).

No optimizer-model call is made: the only LM calls are the agent's own episodes.

Train scores of candidates are optimistic: a candidate shows replies to some train instances,
and the agent then answers those instances with the answer in front of it. Only the ranking on
train is affected (every set of one size gains alike); the choice is made on validation, whose
instances are never shown.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, Field

from agentopt.optimizers.base import OptimizationResult, RunContext, Scored, configure, search_until_budget
from agentopt.prompts import render_prompt
from agentopt.types import Prompt, Trajectory


class DemosConfig(BaseModel):
    n_candidates: int = Field(default=6, ge=1, description="demonstration sets tried")
    max_demos: int = Field(default=3, ge=1, description="demonstrations in the largest set")
    max_demo_chars: int = Field(
        default=2000, ge=1, description="a longer demonstration (message and reply) is left out"
    )
    validate_top: int = Field(default=3, ge=1)


class Demonstration(BaseModel):
    instance_id: str
    message: str
    reply: str


class Demos:
    name = "demos"

    def __init__(self, config: DemosConfig | None = None, **overrides: Any) -> None:
        self.config = configure(DemosConfig, config, overrides)

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        human_scored = ctx.score(human)
        pool = demonstrations(ctx, human_scored, cfg.max_demo_chars)
        rounds: list[dict[str, Any]] = []
        stop = {"why": "candidates"}
        tried: set[tuple[int, ...]] = set()

        def one_candidate() -> bool:
            if not pool:
                stop["why"] = "no_demonstrations"
                return False
            i = len(rounds)
            picked = _draw(pool, i, cfg.max_demos, random.Random(f"{ctx.seed}/demos/{i}"), tried)
            if picked is None:
                stop["why"] = "no_new_sets"
                return False
            ctx.round = i + 1
            text = render_prompt("demos/with_examples", prompt=human.text, demos=[pool[k] for k in picked])
            prompt = Prompt(text=text, parents=(human.id,), operator="demos")
            ctx.add_candidate(prompt)
            scored = ctx.score(prompt)
            summary = {"round": ctx.round, "demos": [pool[k].instance_id for k in picked],
                       "score": scored.objective, "calls": ctx.meter.calls}
            rounds.append(summary)
            ctx.journal.log("round", **summary)
            ctx.on_event("round", summary)
            return len(rounds) < cfg.n_candidates

        if search_until_budget(one_candidate) == "budget":
            stop["why"] = "budget"
        return ctx.finish(self.name, human, stop["why"], rounds, validate_top=cfg.validate_top)


def demonstrations(ctx: RunContext, scored: Scored, max_chars: int) -> list[Demonstration]:
    """The progress-making steps of ``scored``'s train episodes, in instance order (see module
    docstring): from the successful episodes, or from any episode when none succeeded."""
    episodes: list[Trajectory] = sorted(scored.trajectories, key=lambda t: t.instance.id)
    chosen = [t for t in episodes if t.success] or episodes
    pool = []
    for trajectory in chosen:
        env = ctx.task.make_env(trajectory.instance)
        for step in trajectory.steps:
            # The step's message in the task's own frame, without the episode's history: the
            # state and the reply are what the example teaches.
            message = env.turn_message([], step.observation, 0)
            reply = step.raw_output.strip()
            if step.reward > 0 and len(message) + len(reply) <= max_chars:
                pool.append(Demonstration(instance_id=trajectory.instance.id, message=message, reply=reply))
    return pool


def _draw(pool: list[Demonstration], i: int, max_demos: int, rng: random.Random,
          tried: set[tuple[int, ...]], attempts: int = 20) -> tuple[int, ...] | None:
    """Candidate ``i``'s set of demonstrations (indices into ``pool``), not tried before.

    Its size is ``max_demos - i % max_demos`` (at most the pool's); when every draw of that size
    repeats a set already tried, the next size down the cycle is drawn instead. None when no
    size gives a new set."""
    for offset in range(max_demos):
        size = min(max_demos - (i + offset) % max_demos, len(pool))
        for _ in range(attempts):
            picked = tuple(sorted(rng.sample(range(len(pool)), size)))
            if picked not in tried:
                tried.add(picked)
                return picked
    return None
