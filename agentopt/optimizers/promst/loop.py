"""PROMST: prompt optimisation for multi-step tasks with human feedback and a score model.

Chen et al., "PRompt Optimization in Multi-Step Tasks (PROMST): Integrating Human Feedback and
Heuristic-based Sampling", EMNLP 2024, arXiv 2402.08702.

The search, one level at a time:

1. The human prompt is the root; it is scored on the train instances.
2. For each of the (up to) ``n_expand`` best prompts of the previous level, ``n_children``
   children are written. For each child the parent's failed episodes are shuffled, grouped by
   the feedback rule that ended them, each group is summarised by the optimizer model, and the
   optimizer model rewrites the prompt from those summaries plus the chain of ancestor prompts.
   Different shuffles make different children, as in the paper (which decoded at temperature 0).
3. Once it has seen ``score_model_warmup`` scored prompts, the score model (MiniLM embeddings +
   ridge regression, refit every level) predicts each child's score, and only the
   ``score_model_keep`` most promising (plus any predicted above ``score_model_threshold``) are
   run. Its absolute error on the children that do run is logged per level.
4. The best ``n_expand`` children of the level become the next level's parents.
5. Stop when the level's best score has fallen ``patience`` levels in a row, at ``max_levels``,
   when no parent has failures left to learn from, when the optimizer model writes nothing new,
   or when the budget is spent.

Selection among the best train-scored prompts happens on the validation split; the chosen
prompt and the human prompt are reported on the held-out test split (`RunContext.finish`).
"""

from __future__ import annotations

import random
from typing import Any

import networkx as nx
from pydantic import BaseModel, Field

from agentopt.lm.tokens import CHARS_PER_TOKEN
from agentopt.optimizers.base import OptimizationResult, RunContext, Scored, configure, search_until_budget
from agentopt.optimizers.prompt_text import MIN_PROMPT_CHARS, clean_prompt
from agentopt.optimizers.promst.score_model import PromptScoreModel
from agentopt.prompts import render_prompt
from agentopt.types import Prompt, Trajectory


class PromstConfig(BaseModel):
    n_children: int = Field(default=8, ge=1, description="children written per expanded prompt")
    n_expand: int = Field(default=2, ge=1, description="best children expanded at each level")
    max_levels: int = Field(default=8, ge=1)
    patience: int = Field(
        default=3, ge=1, description="stop after the best score fell this many levels in a row"
    )
    use_score_model: bool = True
    score_model_warmup: int = Field(default=6, ge=1, description="scored prompts needed before filtering")
    score_model_keep: int = Field(
        default=4, ge=1, description="children run per level once the model filters"
    )
    score_model_threshold: float | None = Field(
        default=None, description="also run children predicted above this"
    )
    embedder: str = "minilm"
    feedback_tokens_per_group: int = Field(
        default=1200, ge=100, description="cap on failure examples per rule"
    )
    chain_tokens: int = Field(default=1200, ge=100, description="cap on the ancestor prompts shown")
    history_steps: int = Field(default=2, ge=1, description="last steps of a failure shown (PROMST: 2)")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=512, ge=16)
    validate_top: int = Field(default=3, ge=1)


class Promst:
    name = "promst"

    def __init__(self, config: PromstConfig | None = None, **overrides: Any) -> None:
        self.config = configure(PromstConfig, config, overrides)

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        cfg = self.config
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        self._expansions: dict[str, int] = {}  # prompt id -> times expanded so far
        beam: list[Scored] = [ctx.score(human)]
        level_best: list[float] = [beam[0].objective]
        rounds: list[dict[str, Any]] = []
        # The task score is in [0, 1]; a step penalty takes the objective below 0.
        bounds = (0.0, 1.0) if ctx.objective.step_penalty == 0 else None
        score_model = PromptScoreModel(embedder=cfg.embedder, bounds=bounds)
        stop = {"why": "max_levels"}

        def one_level() -> bool:
            nonlocal beam
            ctx.round += 1
            children = self._write_children(ctx, beam)
            if not children:
                # Nothing to learn from, or the optimizer model only repeated known prompts.
                stop["why"] = "no_new_candidates" if any(p.failures() for p in beam) else "no_failures"
                return False
            to_run, predicted = self._filter(ctx, children, score_model)
            scored = [ctx.score(child) for child in to_run]
            error = _mean_abs_error(predicted, scored)
            if cfg.use_score_model:
                texts = [s.prompt.text for s in ctx.train_scores.values()]
                score_model.fit(texts, [s.objective for s in ctx.train_scores.values()])
            level_best.append(max(s.objective for s in scored))
            if ctx.gate is None:
                beam = sorted(scored, key=lambda s: (-s.objective, s.prompt.id))[: cfg.n_expand]
            else:
                # A child replaces its parent only if it is significantly better on validation;
                # a parent that stays is expanded again, with fresh shuffles.
                beam = ctx.gated_beam(beam, scored, cfg.n_expand)
            summary = {
                "level": ctx.round,
                "written": len(children),
                "evaluated": len(scored),
                "best": level_best[-1],
                "best_overall": ctx.best()[0].objective,
                "score_model_abs_error": error,
                "calls": ctx.meter.calls,
                **({"gate_refused": ctx.gate_counts["refused"]} if ctx.gate else {}),
            }
            rounds.append(summary)
            ctx.journal.log("level", **summary)
            ctx.on_event("level", summary)
            if _fell_in_a_row(level_best, cfg.patience):
                stop["why"] = "patience"
                return False
            return ctx.round < cfg.max_levels

        if search_until_budget(one_level) == "budget":
            stop["why"] = "budget"
        return ctx.finish(self.name, human, stop["why"], rounds, validate_top=cfg.validate_top)

    # --- writing children ------------------------------------------------------------
    def _write_children(self, ctx: RunContext, parents: list[Scored]) -> list[Prompt]:
        seen = set(ctx.train_scores)
        children: list[Prompt] = []
        n = self.config.n_children
        for parent in parents:
            if not parent.failures():
                continue
            # A parent the gate kept in the beam is expanded again: children n.. get new shuffles.
            e = self._expansions.get(parent.prompt.id, 0)
            self._expansions[parent.prompt.id] = e + 1
            for k in range(e * n, (e + 1) * n):
                child = self._write_child(ctx, parent, k)
                if child is not None and child.id not in seen:
                    seen.add(child.id)
                    ctx.add_candidate(child)
                    children.append(child)
        return children

    def _write_child(self, ctx: RunContext, parent: Scored, k: int) -> Prompt | None:
        cfg = self.config
        # Each child gets its own shuffle, derived from (seed, parent, k) so that it does not
        # depend on the order children are written in.
        rng = random.Random(f"{ctx.seed}/{parent.prompt.id}/{k}")
        failures = rng.sample(parent.failures(), len(parent.failures()))
        groups = self._group_failures(parent.prompt.text, failures)
        summaries = []
        for rule, examples in groups.items():
            message = render_prompt(
                "promst/summarize", prompt=parent.prompt.text, errors="\n\n".join(examples)
            )
            summaries.append(
                ctx.ask_optimizer(
                    f"promst/summary/{parent.prompt.id}/{k}/{rule}",
                    [{"role": "user", "content": message}],
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                    sample=k,
                )
            )
        message = render_prompt(
            "promst/generate",
            prompt=parent.prompt.text,
            summaries=summaries,
            chain=self._chain(ctx, parent.prompt),
        )
        text = clean_prompt(
            ctx.ask_optimizer(
                f"promst/child/{parent.prompt.id}/{k}",
                [{"role": "user", "content": message}],
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                sample=k,
            )
        )
        if len(text) < MIN_PROMPT_CHARS:
            return None  # the optimizer model produced nothing usable
        return Prompt(text=text, parents=(parent.prompt.id,), operator="promst")

    def _group_failures(self, prompt: str, failures: list[Trajectory]) -> dict[str, list[str]]:
        """Failure examples bucketed by the rule that ended them, each bucket capped."""
        cap = self.config.feedback_tokens_per_group * CHARS_PER_TOKEN
        groups: dict[str, list[str]] = {}
        used: dict[str, int] = {}
        for trajectory in failures:
            rule, text = _rule_and_text(trajectory)
            example = render_prompt(
                "promst/failure",
                rule=rule,
                prompt=prompt,
                response=trajectory.steps[-1].raw_output if trajectory.steps else "",
                steps=trajectory.steps[-self.config.history_steps :],
                feedback=text,
            )
            if groups.get(rule) and used[rule] + len(example) > cap:
                continue
            groups.setdefault(rule, []).append(example[:cap])
            used[rule] = used.get(rule, 0) + len(example)
        return dict(sorted(groups.items()))

    def _chain(self, ctx: RunContext, prompt: Prompt) -> list[str]:
        """Ancestor prompts from the root to ``prompt``, oldest dropped first to fit the cap."""
        ids = [
            *sorted(nx.ancestors(ctx.lineage, prompt.id), key=lambda n: ctx.lineage.nodes[n]["round"]),
            prompt.id,
        ]
        texts = [ctx.lineage.nodes[i]["text"] for i in ids]
        cap = self.config.chain_tokens * CHARS_PER_TOKEN
        while len(texts) > 1 and sum(map(len, texts)) > cap:
            texts.pop(0)
        return texts

    # --- the score model ------------------------------------------------------------
    def _filter(
        self, ctx: RunContext, children: list[Prompt], model: PromptScoreModel
    ) -> tuple[list[Prompt], dict[str, float]]:
        cfg = self.config
        if not cfg.use_score_model or len(ctx.train_scores) < cfg.score_model_warmup:
            return children, {}
        predictions = dict(
            zip((c.id for c in children), model.predict([c.text for c in children]), strict=True)
        )
        order = sorted(children, key=lambda c: (-predictions[c.id], c.id))
        keep = order[: cfg.score_model_keep]
        if cfg.score_model_threshold is not None:
            keep += [
                c for c in order[cfg.score_model_keep :] if predictions[c.id] >= cfg.score_model_threshold
            ]
        for child in children:
            ctx.lineage.nodes[child.id]["predicted"] = float(predictions[child.id])
            ctx.lineage.nodes[child.id]["filtered_out"] = child not in keep
        ctx.journal.log(
            "score_model",
            predictions={k: float(v) for k, v in predictions.items()},
            kept=[c.id for c in keep],
        )
        return keep, {k: float(v) for k, v in predictions.items()}


def _rule_and_text(trajectory: Trajectory) -> tuple[str, str]:
    """The rule that ended the episode (else the first that fired) and its feedback text."""
    rule_feedback = [f for f in trajectory.feedback if f.rule]
    ending = [f for f in rule_feedback if f.rule == trajectory.terminated_by]
    if ending or rule_feedback:
        chosen = (ending or rule_feedback)[0]
        return chosen.rule or "rule", chosen.text
    return "incomplete", f"The task was only {trajectory.score:.0%} complete when the episode ended."


def _mean_abs_error(predicted: dict[str, float], scored: list[Scored]) -> float | None:
    pairs = [(predicted[s.prompt.id], s.objective) for s in scored if s.prompt.id in predicted]
    if not pairs:
        return None
    return sum(abs(p - a) for p, a in pairs) / len(pairs)


def _fell_in_a_row(best: list[float], times: int) -> bool:
    if len(best) < times + 1:
        return False
    tail = best[-(times + 1) :]
    return all(later < earlier for earlier, later in zip(tail, tail[1:], strict=False))
