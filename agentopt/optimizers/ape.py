"""APE: the optimizer model proposes instructions from demonstrations, then resamples the best.

Zhou et al., "Large Language Models Are Human-Level Prompt Engineers", ICLR 2023,
arXiv 2211.01910. As a baseline for multi-step tasks it follows PROMST (Chen et al., arXiv
2402.08702), whose APE asks the optimizer model for "a variation of the prompt that keeps its
semantic meaning".

The search, one round at a time:

1. The human prompt is scored on the train instances.
2. Round 1 (proposal): ``n_induced`` instructions are *induced* (APE's forward generation): each
   call sees the human prompt and a few demonstrations, i.e. the initial states of sampled
   train instances and, where the human prompt made progress there, the responses that did.
   Each call samples its own demonstrations. The rest of the round's ``n_candidates`` are
   variations of the human prompt (PROMST's APE).
3. Later rounds (APE's iterative Monte-Carlo search): ``n_candidates`` variations are written
   around the ``top_k`` best prompts so far, round-robin.
4. Candidates are deduplicated (whitespace and case do not count) against each other and
   everything proposed before, then scored on the train instances.
5. Stop after ``rounds`` rounds, when a round proposes nothing new, when the best prompt has no
   failed episode left (PROMST ran APE only while some episode failed), or on budget.

Differences from the paper: APE scores candidates on random subsets and filters adaptively;
train sets of multi-step tasks are small, so every candidate here is scored on the whole split.
Selection then happens on validation, and reporting on test (`RunContext.finish`).
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, Field

from agentopt.optimizers.base import (
    OptimizationResult,
    RunContext,
    Scored,
    configure,
    initial_state,
    search_until_budget,
)
from agentopt.optimizers.prompt_text import MIN_PROMPT_CHARS, clean_prompt, dedupe_key, unique_new
from agentopt.prompts import render_prompt
from agentopt.types import Instance, Prompt, Trajectory


class ApeConfig(BaseModel):
    n_candidates: int = Field(default=8, ge=1, description="candidates proposed per round")
    n_induced: int = Field(default=4, ge=0, description="round 1: how many are induced from demonstrations")
    top_k: int = Field(default=2, ge=1, description="best prompts resampled around in later rounds")
    rounds: int = Field(default=4, ge=1, description="round 1 proposes, later rounds resample")
    demos_per_induction: int = Field(default=3, ge=1, description="train instances shown per induction call")
    actions_per_demo: int = Field(default=4, ge=0, description="progress-making responses shown per demo")
    temperature: float = Field(default=0.7, ge=0)
    max_tokens: int = Field(default=512, ge=16)
    validate_top: int = Field(default=3, ge=1)


class Ape:
    name = "ape"

    def __init__(self, config: ApeConfig | None = None, **overrides: Any) -> None:
        self.config = configure(ApeConfig, config, overrides)

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        human_scored = ctx.score(human)
        seen = {dedupe_key(human.text)}
        variations_of: dict[str, int] = {}  # prompt id -> variations written so far
        rounds: list[dict[str, Any]] = []
        stop = {"why": "rounds"}

        def one_round() -> bool:
            ctx.round += 1
            if ctx.round == 1:
                n_induced = min(cfg.n_induced, cfg.n_candidates)
                proposals = self._induce(ctx, human_scored, n_induced)
                proposals += self._vary(ctx, [human_scored], cfg.n_candidates - n_induced, variations_of)
            else:
                proposals = self._vary(ctx, ctx.best(cfg.top_k), cfg.n_candidates, variations_of)
            new = unique_new(proposals, seen)
            for prompt in new:
                ctx.add_candidate(prompt)
            scored = [ctx.score(prompt) for prompt in new]
            best = ctx.best()[0]
            summary = {
                "round": ctx.round,
                "proposed": len(proposals),
                "new": len(new),
                "best": max((s.objective for s in scored), default=None),
                "best_overall": best.objective,
                "calls": ctx.meter.calls,
            }
            rounds.append(summary)
            ctx.journal.log("round", **summary)
            ctx.on_event("round", summary)
            if not new:
                stop["why"] = "no_new_candidates"
                return False
            if not best.failures():
                stop["why"] = "no_failures"
                return False
            return ctx.round < cfg.rounds

        if search_until_budget(one_round) == "budget":
            stop["why"] = "budget"
        return ctx.finish(self.name, human, stop["why"], rounds, validate_top=cfg.validate_top)

    # --- proposing ---------------------------------------------------------------------
    def _induce(self, ctx: RunContext, human: Scored, n: int) -> list[Prompt]:
        """APE's forward generation: instructions inferred from demonstrations."""
        cfg = self.config
        by_instance = {t.instance.id: t for t in human.trajectories}
        prompts = []
        for k in range(n):
            rng = random.Random(f"{ctx.seed}/ape/induce/{k}")
            train = ctx.instances["train"]
            sample = rng.sample(train, min(cfg.demos_per_induction, len(train)))
            demos = [_demonstration(ctx, inst, by_instance.get(inst.id), cfg.actions_per_demo)
                     for inst in sample]
            message = render_prompt("ape/induce", prompt=human.prompt.text, demos=demos,
                                    any_actions=any(d["actions"] for d in demos))
            text = clean_prompt(ctx.ask_optimizer(
                f"ape/induce/{human.prompt.id}/{k}",
                [{"role": "user", "content": message}],
                temperature=cfg.temperature, max_tokens=cfg.max_tokens, sample=k,
            ))
            if len(text) >= MIN_PROMPT_CHARS:
                prompts.append(Prompt(text=text, parents=(human.prompt.id,), operator="ape-induce"))
        return prompts

    def _vary(self, ctx: RunContext, parents: list[Scored], n: int, counts: dict[str, int]) -> list[Prompt]:
        """Monte-Carlo resampling: ``n`` variations spread round-robin over ``parents``."""
        cfg = self.config
        prompts = []
        for j in range(n):
            parent = parents[j % len(parents)].prompt
            i = counts.get(parent.id, 0)  # a new sample index each time: never a cached repeat
            counts[parent.id] = i + 1
            message = render_prompt("ape/variation", prompt=parent.text)
            text = clean_prompt(ctx.ask_optimizer(
                f"ape/variation/{parent.id}/{i}",
                [{"role": "user", "content": message}],
                temperature=cfg.temperature, max_tokens=cfg.max_tokens, sample=i,
            ))
            if len(text) >= MIN_PROMPT_CHARS:
                prompts.append(Prompt(text=text, parents=(parent.id,), operator="ape-variation"))
        return prompts


def _demonstration(
    ctx: RunContext, instance: Instance, trajectory: Trajectory | None, max_actions: int
) -> dict[str, Any]:
    """An instance's initial state and the responses that raised its score (if any)."""
    actions = []
    if trajectory is not None:
        actions = [{"state": s.observation, "response": s.raw_output.strip()}
                   for s in trajectory.steps if s.reward > 0][:max_actions]
    return {"state": initial_state(ctx, instance), "actions": actions}
