"""What every prompt optimiser shares: the run context, scoring, lineage and the final report.

An optimiser is constructed with hyperparameters only and does its work in
``optimize(ctx) -> OptimizationResult``. The `RunContext` gives it:

- ``score(prompt)``: the prompt's mean score on the *train* instances, with the trajectories
  (for feedback), memoised in the run journal so a resumed run replays it;
- ``ask_optimizer(key, messages)``: one call of ``optimizer_lm``, the model that writes
  prompts, memoised in the journal under ``key``; ``rng``: the run's seeded randomness;
- ``add_candidate``: records a prompt in the lineage graph;
- ``finish``: picks the best candidates by train score, re-scores the top few on the
  *validation* split to choose one, then reports it and the human prompt on the held-out *test*
  split (PROMST's public code selected on test; selection here never sees it). It is the one
  way a result is made and recorded: an optimiser that chooses by itself (APOHF, Reflexion)
  passes its choice and what it measured instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import networkx as nx
from pydantic import BaseModel, Field, ValidationError

from agentopt.errors import BudgetExceeded, UserError
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.lm.client import LM
from agentopt.stats import MeanCI, PairedDifference, paired_difference
from agentopt.store.journal import RunJournal
from agentopt.store.rundir import RunDir
from agentopt.tasks.evaluate import Evaluation, evaluate
from agentopt.tasks.loader import Task
from agentopt.tasks.rollout import Agent
from agentopt.types import Instance, Prompt, Split, Trajectory

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def configure(schema: type[ConfigT], config: ConfigT | None, overrides: dict[str, Any]) -> ConfigT:
    """An optimiser's hyperparameters: ``config`` (or the defaults) with ``overrides`` applied,
    validated, so a typo in ``--set`` or ``--config`` is an error rather than silently ignored."""
    known = set(schema.model_fields)
    for info in schema.model_fields.values():
        alias = info.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        known.update(c for c in choices if isinstance(c, str))
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(
            f"unknown {schema.__name__} option(s): {', '.join(unknown)} "
            f"(known: {', '.join(schema.model_fields)})"
        )
    base = (config or schema()).model_dump()
    try:
        return schema.model_validate({**base, **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise UserError(f"{schema.__name__}.{where}: {first['msg']}") from exc


class Objective(BaseModel):
    """The number optimisers maximise: mean completion ratio, optionally minus a step cost
    (PROMST's preference alignment: score - 0.1 * steps)."""

    step_penalty: float = Field(default=0.0, ge=0)

    def __call__(self, evaluation: Evaluation) -> float:
        return evaluation.score.mean - self.step_penalty * evaluation.mean_steps

    def per_instance(self, evaluation: Evaluation) -> dict[str, float]:
        """The objective on each instance (what a paired comparison of two prompts compares)."""
        return {k: s - self.step_penalty * evaluation.steps.get(k, 0) for k, s in evaluation.scores.items()}


class SignificanceGate(BaseModel):
    """Keep a child prompt over its parent only when it is better on the validation split by a
    paired test, so a search cannot climb on the noise of a small train split.

    A child that beat its parent on train is scored, with its parent, on the validation
    instances; it is kept over the parent only when the mean paired difference is positive and
    its two-sided p-value (`agentopt.stats.paired_difference`) is below ``alpha``. Those
    validation episodes are search calls, charged to the budget. The same test decides, at the
    end, whether the chosen prompt is reported over the human prompt.
    """

    alpha: float = Field(default=0.05, ge=0, le=1)
    min_instances: int = Field(
        default=10, ge=1,
        description="the gate is on by default only from this many validation instances: with 8 "
        "or fewer, one lost instance is enough to put p < 0.05 out of reach (7 wins and 1 loss "
        "give p = 0.07), so the search would stand still",
    )


class Scored(BaseModel):
    """A prompt's evaluation on one split, as stored in the journal."""

    prompt: Prompt
    split: Split
    objective: float
    evaluation: Evaluation
    trajectories: list[Trajectory] = Field(default_factory=list)
    calls_so_far: int = 0

    def failures(self) -> list[Trajectory]:
        return [t for t in self.trajectories if not t.success]


class HistoryPoint(BaseModel):
    """One evaluation in the order it happened: what a score-vs-calls plot draws."""

    calls: int
    prompt_id: str
    score: float
    best_so_far: float
    round: int


class OptimizationResult(BaseModel):
    method: str
    task: str
    seed: int
    best_prompt: Prompt
    best_train: float
    validation: Evaluation
    test: Evaluation
    human_validation: Evaluation
    human_test: Evaluation
    vs_human: PairedDifference | None = Field(
        default=None, description="test score minus the human prompt's, paired over the test instances"
    )
    history: list[HistoryPoint]
    rounds: list[dict[str, Any]] = Field(default_factory=list)
    n_candidates: int
    lm_calls: int = Field(description="LM calls of the search, the number budgets are compared on")
    total_calls: int | None = Field(
        default=None, description="LM calls of the whole run: the search plus validation and test scoring"
    )
    pass_at_k: Evaluation | None = Field(
        default=None,
        description="for a method that retries an instance until the environment says it succeeded "
        "(Reflexion): the best of `attempts` trials per test instance. Not one attempt: `test` holds "
        "the single-attempt score, and only `test` is ever compared with other methods",
    )
    attempts: int = Field(default=1, ge=1, description="trials per test instance behind `pass_at_k`")
    gate: dict[str, Any] | None = Field(
        default=None,
        description="the significance gate, when it was on: alpha, children checked and refused "
        "in the search, and whether the final choice was refused in favour of the human prompt",
    )
    stopped_by: str
    run_dir: str | None = None


class RunContext:
    """Everything an optimiser needs for one run (see module docstring)."""

    def __init__(
        self,
        *,
        task: Task,
        agent: Agent,
        optimizer_lm: LM,
        meter: BudgetMeter,
        journal: RunJournal,
        train: Sequence[Instance],
        validation: Sequence[Instance],
        test: Sequence[Instance],
        seed: int = 0,
        objective: Objective | None = None,
        rundir: RunDir | None = None,
        max_concurrency: int = 4,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        gate: SignificanceGate | None = None,
    ) -> None:
        self.task = task
        self.gate = gate
        self.gate_counts = {"checked": 0, "refused": 0}
        self.agent = agent
        self.optimizer_lm = optimizer_lm
        self.meter = meter
        self.journal = journal
        self.instances: dict[Split, list[Instance]] = {
            "train": list(train),
            "validation": list(validation),
            "test": list(test),
        }
        self.seed = seed
        self.rng = random.Random(seed)
        self.objective = objective or Objective()
        self.rundir = rundir
        self.max_concurrency = max_concurrency
        self.on_event = on_event or (lambda kind, data: None)
        self.lineage: nx.DiGraph = nx.DiGraph()
        self.train_scores: dict[str, Scored] = {}
        self.history: list[HistoryPoint] = []
        self.round = 0
        self.search_calls: int | None = None  # set when the search ends (`end_search`)

    # --- candidates and scores ---------------------------------------------------------
    def add_candidate(self, prompt: Prompt, **attrs: Any) -> None:
        self.lineage.add_node(
            prompt.id, text=prompt.text, operator=prompt.operator, round=self.round, **attrs
        )
        for parent in prompt.parents:
            self.lineage.add_edge(parent, prompt.id)

    def score(
        self, prompt: Prompt, split: Split = "train", *, agent: Agent | None = None, tag: str | None = None
    ) -> Scored:
        """Evaluate ``prompt`` on a split (memoised in the journal; repeated prompts are free).

        ``agent`` replaces the run's agent for this evaluation (e.g. Reflexion's wrapper); give
        it a ``tag`` so its scores are journalled apart from the plain agent's and kept out of
        the candidates."""
        if agent is not None and tag is None:
            raise ValueError("scoring with another agent needs a tag")
        if tag is None and split == "train" and prompt.id in self.train_scores:
            return self.train_scores[prompt.id]
        key = f"score/{split}/{prompt.id}" if tag is None else f"score/{tag}/{split}/{prompt.id}"

        def compute() -> dict[str, Any]:
            def done(t: Trajectory) -> None:
                if self.rundir is not None:
                    record = {"split": split, **({"tag": tag} if tag else {}), **t.model_dump(mode="json")}
                    # Keyed by step and instance: a resumed run that plays this step again
                    # writes only the episodes the killed one did not.
                    self.rundir.append_jsonl("trajectories.jsonl", record, key=f"{key}/{t.instance.id}")
                self.on_event("trajectory", {"split": split, "tag": tag})

            evaluation, trajectories = evaluate(
                agent or self.agent,
                self.task,
                prompt.text,
                self.instances[split],
                max_concurrency=self.max_concurrency,
                on_done=done,
                split=split,
            )
            keep = trajectories if split == "train" else []
            return Scored(
                prompt=prompt,
                split=split,
                objective=self.objective(evaluation),
                evaluation=evaluation,
                trajectories=keep,
                calls_so_far=self.meter.calls,
            ).model_dump(mode="json")

        scored = Scored.model_validate(self.journal.memo(key, compute))
        # Lineage metadata (parents, operator) belongs to this run's prompt, not the memo.
        scored = scored.model_copy(update={"prompt": prompt})
        if split == "train" and tag is None:
            self.train_scores[prompt.id] = scored
            best = max(s.objective for s in self.train_scores.values())
            self.history.append(
                HistoryPoint(
                    calls=scored.calls_so_far,
                    prompt_id=prompt.id,
                    score=scored.objective,
                    best_so_far=best,
                    round=self.round,
                )
            )
            if prompt.id in self.lineage:
                self.lineage.nodes[prompt.id]["train_score"] = scored.objective
            self.on_event("scored", {"prompt_id": prompt.id, "score": scored.objective})
        return scored

    def best(self, n: int = 1) -> list[Scored]:
        """The ``n`` best prompts by train objective, leaving out children the gate refused."""
        ranked = sorted(
            (s for s in self.train_scores.values()
             if self.lineage.nodes.get(s.prompt.id, {}).get("gate", {}).get("kept", True)),
            key=lambda s: (-s.objective, s.prompt.id),
        )
        return ranked[:n]

    def keeps_over_parent(self, child: Scored) -> bool:
        """Whether ``child`` may replace its parent in a search (see `SignificanceGate`).

        Without a gate: whenever it scored higher on train. With one: only when it also beats
        the parent significantly on validation. The decision is kept in the lineage graph."""
        parent = self._scored_ancestor(child.prompt)
        if parent is None or child.objective <= parent.objective:
            return False
        if self.gate is None:
            return True
        node = self.lineage.nodes[child.prompt.id]
        if "gate" not in node:
            node["gate"] = self._gate_verdict(child.prompt, parent.prompt, "search")
        return bool(node["gate"]["kept"])

    def gated_beam(self, old: Sequence[Scored], new: Sequence[Scored], width: int) -> list[Scored]:
        """The next beam of a search with the gate on: the ``width`` best of the old beam and
        the new prompts the gate keeps over their parents (a refused child leaves its parent)."""
        old_ids = {s.prompt.id for s in old}
        pool = {s.prompt.id: s for s in old}
        for s in new:
            if s.prompt.id in old_ids or self.keeps_over_parent(s):
                pool[s.prompt.id] = s
        return sorted(pool.values(), key=lambda s: (-s.objective, s.prompt.id))[:width]

    def _scored_ancestor(self, prompt: Prompt) -> Scored | None:
        """The nearest ancestor scored on train (an APO paraphrase's parent is an unscored edit)."""
        frontier = list(prompt.parents)
        seen: set[str] = set()
        while frontier:
            pid = frontier.pop(0)
            if pid in self.train_scores:
                return self.train_scores[pid]
            if pid in seen or pid not in self.lineage:
                continue
            seen.add(pid)
            frontier += list(self.lineage.predecessors(pid))
        return None

    def _gate_verdict(self, challenger: Prompt, incumbent: Prompt, where: str) -> dict[str, Any]:
        assert self.gate is not None
        mine = self.objective.per_instance(self.score(challenger, "validation").evaluation)
        theirs = self.objective.per_instance(self.score(incumbent, "validation").evaluation)
        diff = paired_difference(mine, theirs)
        kept = diff.mean > 0 and diff.p_value < self.gate.alpha
        if where == "search":
            self.gate_counts["checked"] += 1
            self.gate_counts["refused"] += not kept
        verdict = {"kept": kept, "over": incumbent.id, "mean": diff.mean, "p_value": diff.p_value,
                   "n": diff.n}
        self.journal.log("gate", prompt_id=challenger.id, where=where, **verdict)
        return verdict

    def ask_optimizer(
        self, key: str, messages: list[dict[str, str]], *, sample: int = 0, **params: Any
    ) -> str:
        """One optimizer-model call, memoised in the journal under ``key``.

        Its sample is named by the run's seed and ``sample`` (the optimiser's index among
        repeated proposals), so two seeds draw independent proposals even through one shared
        cache. An empty reply comes back as '' for the optimiser to discard."""
        return self.journal.memo(key, lambda: self.optimizer_lm.chat(
            messages, sample=f"seed{self.seed}/{sample}", allow_empty=True, **params).text)

    # --- the end of a run -------------------------------------------------------------
    def end_search(self) -> None:
        """The search is over: count its calls (the result's ``lm_calls``) and drop its limits,
        since reporting must not be cut short (usage is still counted). `finish` calls it; an
        optimiser that must score more after its search, outside the budget, calls it first."""
        if self.search_calls is None:
            self.search_calls = self.meter.calls
        self.meter.budget = Budget(count_cache_hits=self.meter.budget.count_cache_hits)

    def finish(
        self,
        method: str,
        human: Prompt,
        stopped_by: str,
        rounds: list[dict[str, Any]],
        validate_top: int = 3,
        *,
        chosen: Prompt | None = None,
        best_train: float | None = None,
        history: list[HistoryPoint] | None = None,
        n_candidates: int | None = None,
        retrying_agent: Agent | None = None,
        attempts: int = 1,
    ) -> OptimizationResult:
        """End the search and report on it: every optimiser's result is made and recorded here.

        By default the choice is made on validation among the ``validate_top`` best train
        candidates and the human prompt (the significance gate, when on, may keep the human
        prompt), and the choice and the human prompt are reported on test. An optimiser whose
        search makes its own choice says so:

        - ``chosen``: the prompt it reports (APOHF: the one its duels settled on; Reflexion: the
          human prompt). It is scored on validation and test beside the human prompt, with no
          choice on validation and no gate.
        - ``best_train``, ``history``, ``n_candidates``: for a search whose candidates are not
          train-scored prompts (APOHF's latent scores per round). By default: the chosen
          prompt's train objective (0.0 if it has none), every train evaluation in order, and
          how many prompts were scored on train.
        - ``retrying_agent``: an agent that retries an instance, up to ``attempts`` times, until
          the environment says it succeeded (Reflexion's wrapper). It plays the chosen prompt on
          test as well; that best of k is reported as ``pass_at_k``, never as ``test``.

        The result then gets its paired comparison with the human prompt (``test`` is one
        attempt per instance for every method) and the run's total calls, and is written with
        the prompt lineage to the run directory (``result.json``, ``lineage.json``).
        """
        self.end_search()  # final scoring is outside the search budget
        if chosen is None:
            shortlist = [s.prompt for s in self.best(validate_top)]
            if human.id not in {p.id for p in shortlist}:
                shortlist.append(human)
        else:
            shortlist = [chosen] if chosen.id == human.id else [chosen, human]
        self.on_event("phase", {"phase": "validation", "prompts": len(shortlist),
                                "instances": len(self.instances["validation"])})
        validated = [self.score(p, "validation") for p in shortlist]
        human_val = next(s for s in validated if s.prompt.id == human.id)
        final_refused = False
        if chosen is None:
            winner = max(validated, key=lambda s: (s.objective, s.prompt.id == human.id))
            # The last climb, from the human prompt to the chosen one, passes the same test.
            if (self.gate is not None and winner.prompt.id != human.id
                    and not self._gate_verdict(winner.prompt, human, "final")["kept"]):
                winner, final_refused = human_val, True
        else:
            winner = validated[0]
        self.on_event("phase", {"phase": "test", "prompts": 1 if winner.prompt.id == human.id else 2,
                                "instances": len(self.instances["test"])})
        test = self.score(winner.prompt, "test")
        human_test = self.score(human, "test")
        pass_at_k = None
        if retrying_agent is not None:
            pass_at_k = self.score(winner.prompt, "test", agent=retrying_agent, tag=method).evaluation
        if best_train is None:
            scored = self.train_scores.get(winner.prompt.id)
            best_train = scored.objective if scored is not None else 0.0
        result = OptimizationResult(
            method=method,
            task=self.task.name,
            seed=self.seed,
            best_prompt=winner.prompt,
            best_train=best_train,
            validation=winner.evaluation,
            test=test.evaluation,
            human_validation=human_val.evaluation,
            human_test=human_test.evaluation,
            vs_human=paired_difference(test.evaluation.scores, human_test.evaluation.scores)
            if set(test.evaluation.scores) & set(human_test.evaluation.scores) else None,
            pass_at_k=pass_at_k,
            attempts=attempts,
            history=self.history if history is None else history,
            rounds=rounds,
            n_candidates=len(self.train_scores) if n_candidates is None else n_candidates,
            lm_calls=self.search_calls,
            total_calls=self.meter.calls,
            stopped_by=stopped_by,
            run_dir=str(self.rundir.path) if self.rundir else None,
            gate=None if self.gate is None or chosen is not None else {
                "alpha": self.gate.alpha, **self.gate_counts, "final_refused": final_refused},
        )
        if self.rundir is not None:
            self.rundir.write_json("lineage.json", nx.node_link_data(self.lineage, edges="edges"))
            self.rundir.write_json("result.json", result)
        self.journal.log("result", best_prompt_id=result.best_prompt.id, test=result.test.score.mean)
        return result

def initial_state(ctx: RunContext, instance: Instance) -> str:
    """The observation an episode of ``instance`` starts from (no model call)."""
    observation, _ = ctx.task.make_env(instance).reset()
    return observation


def search_until_budget(step: Callable[[], bool]) -> str:
    """Run ``step`` until it returns False; say why the search stopped."""
    try:
        while step():
            pass
    except BudgetExceeded:
        return "budget"
    return "converged"


__all__ = ["MeanCI", "Objective", "OptimizationResult", "RunContext", "Scored", "SignificanceGate",
           "initial_state", "search_until_budget"]
