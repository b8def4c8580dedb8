"""APO / ProTeGi: textual gradients from failures, edits along them, beam search with a bandit.

Pryzant et al., "Automatic Prompt Optimization with 'Gradient Descent' and Beam Search",
EMNLP 2023, arXiv 2305.03495. As a baseline for multi-step tasks it follows PROMST (Chen et
al., arXiv 2402.08702): the failures shown to the optimizer model are the last steps of each
failed episode with the environment's replies, *without* the human-designed rule feedback
(that feedback is what PROMST adds).

The search, one round at a time:

1. The beam starts as the human prompt, scored on the train instances.
2. Expansion: for each beam prompt with failed episodes, ``n_gradients`` times, sample
   ``errors_per_gradient`` failures and ask the optimizer model for ``reasons_per_gradient``
   reasons the prompt fails (the "textual gradients"). For each reason, ask for
   ``edits_per_gradient`` prompts edited to fix it; then ``paraphrases_per_edit`` paraphrases
   of each edit (ProTeGi's Monte-Carlo successors). At most ``max_successors`` successors per
   beam prompt are kept, sampled at random.
3. Selection: the candidates are the beam plus its new successors (deduplicated against every
   prompt proposed so far). A UCB1 bandit spends ``bandit_pulls`` pulls; a pull evaluates one
   candidate on a random minibatch of ``minibatch`` train instances (each prompt-instance pair
   is run once and remembered; the runs are memoised in the run journal, so a resumed run
   replays them). The ``beam_width`` candidates with the best mean reward become the beam and
   are scored on the whole train split (for the history and the final selection). If the train
   split is no bigger than a minibatch, the bandit is pointless and every candidate is scored
   on the whole split instead.
4. Stop after ``rounds`` rounds, when no beam prompt has a failure left, when an expansion
   yields nothing new, or on budget.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from agentopt.lm.tokens import CHARS_PER_TOKEN
from agentopt.optimizers.base import OptimizationResult, RunContext, Scored, configure, search_until_budget
from agentopt.optimizers.prompt_text import (
    MIN_PROMPT_CHARS,
    clean_prompt,
    tagged,
    unique_new,
)
from agentopt.prompts import render_prompt
from agentopt.tasks.evaluate import summarize
from agentopt.tasks.rollout import rollout
from agentopt.types import Instance, Prompt, Trajectory, content_hash


class ApoConfig(BaseModel):
    beam_width: int = Field(default=4, ge=1)
    rounds: int = Field(default=6, ge=1)
    n_gradients: int = Field(default=4, ge=1, description="gradient calls per beam prompt")
    errors_per_gradient: int = Field(default=4, ge=1, description="failed episodes shown per gradient call")
    reasons_per_gradient: int = Field(default=1, ge=1, description="reasons asked for per gradient call")
    edits_per_gradient: int = Field(default=1, ge=1, description="edited prompts asked for per reason")
    paraphrases_per_edit: int = Field(default=1, ge=0, description="Monte-Carlo paraphrases of each edit")
    max_successors: int = Field(default=4, ge=1, description="successors kept per beam prompt")
    minibatch: int = Field(default=4, ge=1, description="train instances per bandit pull")
    bandit_pulls: int = Field(default=32, ge=1, description="bandit pulls per round")
    ucb_c: float = Field(default=1.0, ge=0, description="UCB1 exploration weight")
    history_steps: int = Field(default=2, ge=1, description="last steps of a failure shown (PROMST: 2)")
    failure_tokens: int = Field(
        default=600, ge=50,
        description="cap on one failure's text (its start is cut): a few multi-step states would "
                    "otherwise overflow a small model's context",
    )
    temperature: float = Field(default=0.7, ge=0)
    max_tokens: int = Field(default=512, ge=16)
    validate_top: int = Field(default=3, ge=1)


class Apo:
    name = "apo"

    def __init__(self, config: ApoConfig | None = None, **overrides: Any) -> None:
        self.config = configure(ApoConfig, config, overrides)

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        beam: list[Scored] = [ctx.score(human)]
        seen: set[str] = set()
        unique_new([human], seen)
        expansions: dict[str, int] = {}  # prompt id -> times expanded so far
        minibatches = _MinibatchScores(ctx)
        rounds: list[dict[str, Any]] = []
        stop = {"why": "rounds"}

        def one_round() -> bool:
            nonlocal beam
            ctx.round += 1
            parents = [b for b in beam if b.failures()]
            if not parents:
                stop["why"] = "no_failures"
                return False
            successors = []
            for parent in parents:
                successors += self._expand(ctx, parent, expansions, seen)
            for prompt in successors:
                ctx.add_candidate(prompt)
            if not successors:
                stop["why"] = "no_new_candidates"
                return False
            arms = [b.prompt for b in beam] + successors
            chosen, pulls = self._select(ctx, arms, minibatches)
            # With the gate on, a successor displaces its parent only when it is significantly
            # better on validation (`RunContext.gated_beam`).
            beam = chosen if ctx.gate is None else ctx.gated_beam(beam, chosen, cfg.beam_width)
            summary = {
                "round": ctx.round,
                "successors": len(successors),
                "candidates": len(arms),
                "bandit_pulls": pulls,
                "beam": [b.prompt.id for b in beam],
                "best": beam[0].objective,
                "best_overall": ctx.best()[0].objective,
                "calls": ctx.meter.calls,
                **({"gate_refused": ctx.gate_counts["refused"]} if ctx.gate else {}),
            }
            rounds.append(summary)
            ctx.journal.log("round", **summary)
            ctx.on_event("round", summary)
            return ctx.round < cfg.rounds

        if search_until_budget(one_round) == "budget":
            stop["why"] = "budget"
        return ctx.finish(self.name, human, stop["why"], rounds, validate_top=cfg.validate_top)

    # --- expansion: gradients, edits, paraphrases ------------------------------------
    def _expand(
        self, ctx: RunContext, parent: Scored, expansions: dict[str, int], seen: set[str]
    ) -> list[Prompt]:
        cfg = self.config
        pid = parent.prompt.id
        e = expansions.get(pid, 0)  # a prompt kept in the beam is expanded afresh each round
        expansions[pid] = e + 1
        rng = random.Random(f"{ctx.seed}/apo/{pid}/{e}")
        failures = parent.failures()
        params = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}

        gradients: list[tuple[list[str], str]] = []
        for i in range(cfg.n_gradients):
            shown = rng.sample(failures, min(cfg.errors_per_gradient, len(failures)))
            errors = [self._render_failure(t) for t in shown]
            message = render_prompt("apo/gradient", prompt=parent.prompt.text, errors=errors,
                                    n_reasons=cfg.reasons_per_gradient)
            reply = ctx.ask_optimizer(f"apo/gradient/{pid}/{e}/{i}", _user(message),
                                 sample=e * cfg.n_gradients + i, **params)
            reasons = tagged(reply, "reason") or [reply.strip()]
            gradients += [(errors, reason) for reason in reasons[: cfg.reasons_per_gradient] if reason]

        edits: list[Prompt] = []
        for i, (errors, reason) in enumerate(gradients):
            message = render_prompt("apo/edit", prompt=parent.prompt.text, errors=errors, reason=reason,
                                    n_edits=cfg.edits_per_gradient)
            reply = ctx.ask_optimizer(f"apo/edit/{pid}/{e}/{i}", _user(message), sample=e, **params)
            texts = tagged(reply, "prompt") or [reply]
            for text in map(clean_prompt, texts[: cfg.edits_per_gradient]):
                if len(text) >= MIN_PROMPT_CHARS:
                    edits.append(Prompt(text=text, parents=(pid,), operator="apo-edit"))

        successors = list(edits)
        for edit in edits:
            for m in range(cfg.paraphrases_per_edit):
                message = render_prompt("apo/paraphrase", prompt=edit.text)
                reply = ctx.ask_optimizer(f"apo/paraphrase/{edit.id}/{m}", _user(message), sample=m, **params)
                text = clean_prompt(reply)
                if len(text) >= MIN_PROMPT_CHARS:
                    successors.append(Prompt(text=text, parents=(edit.id,), operator="apo-paraphrase"))
        new = unique_new(successors, set(seen))
        if len(new) > cfg.max_successors:
            keep = set(rng.sample(range(len(new)), cfg.max_successors))
            new = [p for j, p in enumerate(new) if j in keep]
        return unique_new(new, seen)  # only the kept ones count as seen

    def _render_failure(self, trajectory: Trajectory) -> str:
        """The last steps of a failed episode with the environment's replies; no rule feedback. Past
        ``failure_tokens`` its start is cut: the last reply and how the episode ended matter most."""
        text = render_prompt("apo/failure", steps=trajectory.steps[-self.config.history_steps:],
                             percent=round(100 * trajectory.score))
        cap = self.config.failure_tokens * CHARS_PER_TOKEN
        return text if len(text) <= cap else "[...]\n" + text[-cap:]

    # --- selection: the bandit ---------------------------------------------------------
    def _select(
        self, ctx: RunContext, arms: list[Prompt], minibatches: _MinibatchScores
    ) -> tuple[list[Scored], int]:
        cfg = self.config
        train = ctx.instances["train"]
        if len(train) <= cfg.minibatch:
            chosen, pulls = arms, 0
        else:
            rng = random.Random(f"{ctx.seed}/apo/bandit/{ctx.round}")

            def pull(prompt: Prompt) -> float:
                return minibatches.mean(prompt, rng.sample(train, cfg.minibatch))

            means, counts = ucb1(arms, pull, cfg.bandit_pulls, cfg.ucb_c, rng)
            for prompt, mean, count in zip(arms, means, counts, strict=True):
                ctx.lineage.nodes[prompt.id].update(bandit_mean=mean, bandit_pulls=count)
            ranked = sorted(range(len(arms)), key=lambda j: (counts[j] == 0, -means[j], arms[j].id))
            chosen, pulls = [arms[j] for j in ranked[: cfg.beam_width]], cfg.bandit_pulls
        scored = [ctx.score(prompt) for prompt in chosen]
        return sorted(scored, key=lambda s: (-s.objective, s.prompt.id))[: cfg.beam_width], pulls


def ucb1(
    arms: Sequence[Any], pull: Callable[[Any], float], pulls: int, c: float, rng: random.Random
) -> tuple[list[float], list[int]]:
    """UCB1 (Auer et al. 2002): play each arm once (in random order), then the arm maximising
    mean + c * sqrt(2 ln t / n). Returns each arm's mean reward and pull count (mean 0 if unpulled)."""
    n = len(arms)
    counts = [0] * n
    sums = [0.0] * n
    untried = rng.sample(range(n), n)
    for t in range(1, pulls + 1):
        if untried:
            j = untried.pop(0)
        else:
            j = max(range(n), key=lambda a: (sums[a] / counts[a] + c * math.sqrt(2 * math.log(t) / counts[a]),
                                             -a))
        sums[j] += pull(arms[j])
        counts[j] += 1
    return [s / k if k else 0.0 for s, k in zip(sums, counts, strict=True)], counts


class _MinibatchScores:
    """Per-(prompt, instance) objectives on train: each pair is run at most once per run.

    New pairs are rolled out inside ``ctx.journal.memo`` so a resumed run replays them; pairs
    already run by a full ``ctx.score`` are read from its trajectories instead of rerun.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.known: dict[str, dict[str, float]] = {}

    def mean(self, prompt: Prompt, instances: list[Instance]) -> float:
        ctx = self.ctx
        known = self.known.setdefault(prompt.id, {})
        if prompt.id in ctx.train_scores:
            full = ctx.train_scores[prompt.id].trajectories
            known.update({t.instance.id: self._objective(prompt, t) for t in full})
        missing = [inst for inst in instances if inst.id not in known]
        if missing:
            key = f"apo/minibatch/{prompt.id}/{content_hash([i.id for i in missing])}"
            known.update(ctx.journal.memo(key, lambda: self._run(prompt, missing, key)))
        return sum(known[inst.id] for inst in instances) / len(instances)

    def _run(self, prompt: Prompt, instances: list[Instance], key: str) -> dict[str, float]:
        ctx = self.ctx

        def done(t: Trajectory) -> None:
            if ctx.rundir is not None:
                ctx.rundir.append_jsonl("trajectories.jsonl",
                                        {"split": "train", "minibatch": True, **t.model_dump(mode="json")},
                                        key=f"{key}/{t.instance.id}")
            ctx.on_event("trajectory", {"split": "train"})

        trajectories = rollout(ctx.agent, prompt.text, instances, task=ctx.task,
                               max_concurrency=ctx.max_concurrency, on_done=done)
        return {t.instance.id: self._objective(prompt, t) for t in trajectories}

    def _objective(self, prompt: Prompt, trajectory: Trajectory) -> float:
        return self.ctx.objective(summarize(self.ctx.task, "train", prompt.text, [trajectory]))


def _user(message: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": message}]
