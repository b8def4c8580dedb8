"""Bootstrapped demonstrations: the human prompt plus worked examples that the agent itself got
right, chosen by random search over example sets.

The idea is DSPy's bootstrap few-shot with random search (Khattab et al., "DSPy: Compiling
Declarative Language Model Calls into Self-Improving Pipelines", arXiv 2310.03714): a small
model often follows a few of its own correct replies better than any rewording of the
instruction, and those replies cost nothing to find, since scoring the human prompt plays them.

The search:

1. The human prompt is scored on the train instances.
2. Its *demonstrations* are the replies of the episodes that succeeded. On a multi-step task
   where no episode succeeded, they are instead the steps that raised an episode's score. Each
   is the step's user message, in the task's own frame but without the episode's history (the
   environment is replayed to that step, so a task whose message reads its own state shows
   what the agent saw), and the reply the agent gave. Repeats (same message and reply) are
   kept once, and one whose message and reply are longer than ``max_demo_chars`` is left out:
   it would crowd the context.
3. Candidate ``i`` is the human prompt followed by a random set of demonstrations, of size
   ``max_demos``, ``max_demos - 1``, ..., 1, round-robin (seeded, so a rerun proposes the same
   sets); a set already tried is not drawn again (when one size has no new set left, the next
   size is drawn instead). Each candidate is scored on train.
4. With ``max_labeled`` above 0, each set is then topped up to ``max_labeled`` examples with
   *labeled* ones, as DSPy's ``max_labeled_demos`` does: train instances the set does not
   already show, each with the task's reference reply (its oracle: ``Answer: <target>`` on a
   dataset task), drawn at random per candidate. A small model that answers at once gets
   nothing right to bootstrap from on a hard task, and a handful of questions with their right
   answers is what it can still learn the task's distinctions from. When no reply was right,
   the sets are labeled examples only (a set of the same examples in another order is not new).
   A labeled example is the first message of an episode with the oracle's reply to it, so on a
   multi-step task it shows the first step only. A task without an oracle has none (the run's
   journal says so).
5. Stop after ``n_candidates`` sets, when no new set is left, or on budget. When the agent got
   some train replies right, "no new set" means no new set of those: the search stops when
   they run out even if other labeled top-ups are left. The choice among
   the best ``validate_top`` train candidates and the human prompt is made on validation, and
   reported on test (`RunContext.finish`).

No optimizer-model call is made: the only LM calls are the agent's own episodes. Reference
answers are read from train instances only, never from validation or test.

Train scores of candidates are optimistic: a candidate shows replies to some train instances,
and the agent then tends to answer those instances right because the answer is in front of it.
How much a candidate gains that way depends on which instances it shows, and a larger set gains
more, so the train ranking (which makes the shortlist) leans towards larger sets (labeled
examples most of all: they show every answer, not only the ones the agent found). The choice is
made on validation, whose instances are never shown, and only that choice is reported.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import combinations
from typing import Any

from pydantic import BaseModel, Field

from agentopt.optimizers.base import OptimizationResult, RunContext, Scored, configure, search_until_budget
from agentopt.prompts import render_prompt
from agentopt.types import Instance, Prompt

# Past this many sets of one size, listing the untried ones is not worth it: random draws that
# keep repeating a tried set are then all but impossible.
_ENUMERATE_UP_TO = 100_000
# Draws of a labeled-only set before the search decides that no new one is left.
_LABELED_ATTEMPTS = 20


class DemosConfig(BaseModel):
    n_candidates: int = Field(default=6, ge=1, description="demonstration sets tried")
    max_demos: int = Field(default=3, ge=1, description="demonstrations in the largest set")
    max_demo_chars: int = Field(
        default=2000, ge=1, description="a longer demonstration (message and reply) is left out"
    )
    max_labeled: int = Field(
        default=0, ge=0,
        description="top each set up to this many examples with train instances and their "
                    "reference replies (DSPy's max_labeled_demos); 0: the agent's own replies only",
    )
    validate_top: int = Field(default=3, ge=1)


class Demonstration(BaseModel):
    instance_id: str
    step: int  # 1-based, within its episode
    message: str
    reply: str
    labeled: bool = False  # the task's reference reply, not one the agent gave

    @property
    def label(self) -> str:
        where = self.instance_id if self.step == 1 else f"{self.instance_id} step {self.step}"
        return f"{where} (labeled)" if self.labeled else where


class Demos:
    name = "demos"

    def __init__(self, config: DemosConfig | None = None, **overrides: Any) -> None:
        self.config = configure(DemosConfig, config, overrides)

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        human_scored = ctx.score(human)
        pool, too_long = demonstrations(ctx, human_scored, cfg.max_demo_chars)
        labeled: list[Demonstration] = []
        if cfg.max_labeled:
            labeled, labeled_too_long = labeled_examples(ctx, cfg.max_demo_chars)
            too_long += labeled_too_long
            ctx.journal.log("labeled_examples", available=len(labeled), too_long=labeled_too_long,
                            oracle=getattr(ctx.task, "oracle", None) is not None)
        rounds: list[dict[str, Any]] = []
        stop = {"why": "candidates"}
        tried: set[tuple[int, ...]] = set()
        tried_labeled: set[frozenset[str]] = set()

        def one_candidate() -> bool:
            if not pool and not labeled:
                stop["why"] = "demonstrations_too_long" if too_long else "no_demonstrations"
                return False
            i = len(rounds)
            picked: tuple[int, ...] | None = ()
            if pool:
                picked = _draw(pool, i, cfg.max_demos, random.Random(f"{ctx.seed}/demos/{i}"), tried)
            shown = [pool[k] for k in picked] if picked is not None else []
            # Its own stream, so that the bootstrapped draws are the same with labeled ones or without.
            rng = random.Random(f"{ctx.seed}/demos/{i}/labeled")
            fill = _top_up(shown, labeled, cfg.max_labeled, rng)
            if not pool:  # labeled examples only: draw again while the set is one tried before
                for _ in range(_LABELED_ATTEMPTS):
                    if _ids(fill) not in tried_labeled:
                        break
                    fill = _top_up(shown, labeled, cfg.max_labeled, rng)
            if picked is None or (not pool and _ids(fill) in tried_labeled):
                stop["why"] = "no_new_sets"
                return False
            tried_labeled.add(_ids(fill))
            shown += fill
            ctx.round = i + 1
            text = render_prompt("demos/with_examples", prompt=human.text, demos=shown)
            prompt = Prompt(text=text, parents=(human.id,), operator="demos")
            ctx.add_candidate(prompt)
            scored = ctx.score(prompt)
            summary = {"round": ctx.round, "demos": [d.label for d in shown],
                       "score": scored.objective,
                       "best_overall": ctx.best()[0].objective, "calls": ctx.meter.calls}
            rounds.append(summary)
            ctx.journal.log("round", **summary)
            ctx.on_event("round", summary)
            return len(rounds) < cfg.n_candidates

        if search_until_budget(one_candidate) == "budget":
            stop["why"] = "budget"
        return ctx.finish(self.name, human, stop["why"], rounds, validate_top=cfg.validate_top)


def demonstrations(ctx: RunContext, scored: Scored, max_chars: int) -> tuple[list[Demonstration], int]:
    """The demonstrations in ``scored``'s train episodes (see module docstring), in train order,
    and how many were left out for being longer than ``max_chars``."""
    order = {instance.id: k for k, instance in enumerate(ctx.instances["train"])}
    episodes = sorted(scored.trajectories, key=lambda t: order.get(t.instance.id, len(order)))
    succeeded = [t for t in episodes if t.success]
    multi_step = any(len(t.steps) > 1 for t in episodes)
    # A partly right single reply (F1 0.3, say) is not an example to follow; on a multi-step
    # task nobody solves, a step that made progress is the best example there is.
    chosen = succeeded or (episodes if multi_step else [])
    pool: list[Demonstration] = []
    seen: set[tuple[str, str]] = set()
    too_long = 0
    for trajectory in chosen:
        env = ctx.task.make_env(trajectory.instance)
        env.reset()
        for number, step in enumerate(trajectory.steps, 1):
            message = env.turn_message([], step.observation, 0)
            reply = step.raw_output.strip()
            env.step(step.raw_output)  # replayed, so the next step's message sees its state
            if step.reward <= 0 or (message, reply) in seen:
                continue
            if len(message) + len(reply) > max_chars:
                too_long += 1
                continue
            seen.add((message, reply))
            pool.append(Demonstration(instance_id=trajectory.instance.id, step=number, message=message,
                                      reply=reply))
    return pool, too_long


def labeled_examples(ctx: RunContext, max_chars: int) -> tuple[list[Demonstration], int]:
    """Each train instance's first message with the task's reference reply, in train order (none
    when the task has no oracle), and how many were left out for being longer than ``max_chars``."""
    oracle = getattr(ctx.task, "oracle", None)
    if oracle is None:
        return [], 0
    examples, too_long = [], 0
    for instance in ctx.instances["train"]:
        example = labeled_example(ctx.task, instance, oracle)
        if not example.reply:
            continue
        if len(example.message) + len(example.reply) > max_chars:
            too_long += 1
            continue
        examples.append(example)
    return examples, too_long


def labeled_example(task: Any, instance: Instance, oracle: Callable[[Any], str]) -> Demonstration:
    """An episode's first message, as the agent would see it, with ``oracle``'s reply to it."""
    env = task.make_env(instance)
    observation, _ = env.reset()
    return Demonstration(instance_id=instance.id, step=1, message=env.turn_message([], observation, 0),
                         reply=str(oracle(env)).strip(), labeled=True)


def _top_up(shown: list[Demonstration], labeled: list[Demonstration], max_labeled: int,
            rng: random.Random) -> list[Demonstration]:
    """The labeled examples that top ``shown`` up to ``max_labeled``: drawn at random, in the
    drawn order, from instances ``shown`` does not show already."""
    showing = _ids(shown)
    rest = [d for d in labeled if d.instance_id not in showing]
    return rng.sample(rest, min(max(0, max_labeled - len(shown)), len(rest)))


def _ids(demos: list[Demonstration]) -> frozenset[str]:
    """The instances a set of demonstrations shows (a set: their order does not make it new)."""
    return frozenset(d.instance_id for d in demos)


def _draw(pool: list[Demonstration], i: int, max_demos: int, rng: random.Random,
          tried: set[tuple[int, ...]], attempts: int = 20) -> tuple[int, ...] | None:
    """Candidate ``i``'s set of demonstrations (indices into ``pool``), not tried before.

    Its size is ``max_demos - i % max_demos`` (at most the pool's). When random draws of that size
    keep repeating tried sets, an untried one is picked from the list of all of them; when there
    is none, the next size down the cycle is drawn instead. None when no size has a new set."""
    n = len(pool)
    for offset in range(max_demos):
        size = min(max_demos - (i + offset) % max_demos, n)
        for _ in range(attempts):
            picked = tuple(sorted(rng.sample(range(n), size)))
            if picked not in tried:
                tried.add(picked)
                return picked
        if math.comb(n, size) <= _ENUMERATE_UP_TO:
            untried = [c for c in combinations(range(n), size) if c not in tried]
            if untried:
                picked = rng.choice(untried)
                tried.add(picked)
                return picked
    return None
