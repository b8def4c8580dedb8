"""OPRO: the optimizer model reads past prompts with their scores and writes better ones.

Yang et al., "Large Language Models as Optimizers", ICLR 2024, arXiv 2309.03409.

The search, one step at a time:

1. The human prompt is scored on the train instances.
2. The meta-prompt lists up to ``max_history`` of the best prompts scored so far, in *ascending*
   order of score (the best last, nearest the instruction, as in the paper), each with its train
   score as an integer from 0 to 100, followed by ``n_examples`` task examples (the initial
   states of train instances, resampled every step) and the request for a new prompt that
   differs from all of them and scores higher.
3. ``n_per_step`` prompts are sampled from the same meta-prompt (different sample indices, at
   temperature 1.0 as in the paper); new ones (whitespace and case do not count) are scored.
4. Repeat for ``steps`` steps, or until the budget is spent.

Differences from the paper: OPRO's exemplars are (question, answer) pairs of a single-step task;
an episode has no single answer, so the examples show the states an episode starts from. In the
lineage graph a candidate's parent is the best prompt its meta-prompt showed.
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
from agentopt.optimizers.prompt_text import MIN_PROMPT_CHARS, clean_prompt, tagged, unique_new
from agentopt.prompts import render_prompt
from agentopt.types import Prompt


class OproConfig(BaseModel):
    steps: int = Field(default=10, ge=1)
    n_per_step: int = Field(default=8, ge=1, description="prompts sampled from each meta-prompt")
    max_history: int = Field(default=20, ge=1, description="best past prompts shown in the meta-prompt")
    n_examples: int = Field(default=3, ge=0, description="task examples shown in the meta-prompt")
    temperature: float = Field(default=1.0, ge=0)
    max_tokens: int = Field(default=512, ge=16)
    validate_top: int = Field(default=3, ge=1)


class Opro:
    name = "opro"

    def __init__(self, config: OproConfig | None = None, **overrides: Any) -> None:
        self.config = configure(OproConfig, config, overrides)

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        ctx.score(human)
        seen: set[str] = set()
        for scored in ctx.train_scores.values():
            unique_new([scored.prompt], seen)
        rounds: list[dict[str, Any]] = []
        stop = {"why": "steps"}

        def one_step() -> bool:
            ctx.round += 1
            shown = self._history(ctx)
            message = render_prompt(
                "opro/meta",
                history=[{"text": s.prompt.text, "score": round(100 * s.objective)} for s in shown],
                examples=self._examples(ctx),
            )
            proposals = []
            for k in range(cfg.n_per_step):
                sample = (ctx.round - 1) * cfg.n_per_step + k  # fresh samples even if the meta-prompt repeats
                text = _extract(ctx.ask_optimizer(
                    f"opro/step{ctx.round}/{k}",
                    [{"role": "user", "content": message}],
                    temperature=cfg.temperature, max_tokens=cfg.max_tokens, sample=sample,
                ))
                if len(text) >= MIN_PROMPT_CHARS:
                    proposals.append(Prompt(text=text, parents=(shown[-1].prompt.id,), operator="opro"))
            new = unique_new(proposals, seen)
            for prompt in new:
                ctx.add_candidate(prompt)
            scored = [ctx.score(prompt) for prompt in new]
            summary = {
                "step": ctx.round,
                "shown": len(shown),
                "proposed": len(proposals),
                "new": len(new),
                "best": max((s.objective for s in scored), default=None),
                "best_overall": ctx.best()[0].objective,
                "calls": ctx.meter.calls,
            }
            rounds.append(summary)
            ctx.journal.log("round", **summary)
            ctx.on_event("round", summary)
            return ctx.round < cfg.steps

        if search_until_budget(one_step) == "budget":
            stop["why"] = "budget"
        return ctx.finish(self.name, human, stop["why"], rounds, validate_top=cfg.validate_top)

    def _history(self, ctx: RunContext) -> list[Scored]:
        """The ``max_history`` best prompts so far, worst first (the best ends the list)."""
        return list(reversed(ctx.best(self.config.max_history)))

    def _examples(self, ctx: RunContext) -> list[str]:
        train = ctx.instances["train"]
        rng = random.Random(f"{ctx.seed}/opro/examples/{ctx.round}")
        shown = rng.sample(train, min(self.config.n_examples, len(train)))
        return [initial_state(ctx, inst) for inst in shown]


def _extract(text: str) -> str:
    """The prompt between <prompt> tags, or the whole cleaned reply if there are none."""
    found = tagged(text, "prompt")
    return clean_prompt(found[0] if found else text)
