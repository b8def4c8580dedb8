"""Running one optimisation: from a `RunConfig` to a run directory with a result.

The run directory holds everything needed to inspect or continue the run:

    config.json        the RunConfig (no secrets)
    events.jsonl       the append-only event journal (memoised steps, levels, the result)
    cache.sqlite       the LM response cache of this run
    calls.jsonl        every LM call
    trajectories.jsonl every episode, as it finished
    lineage.json       the prompt lineage graph (networkx node-link JSON)
    result.json        the final result

``resume=True`` re-opens the directory and replays the run (see `agentopt.runs.journal`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentopt.errors import UserError
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.lm.cache import ResponseCache
from agentopt.lm.client import DEFAULT_MODEL, LM
from agentopt.lm.journal import CallJournal
from agentopt.optimizers import method_class
from agentopt.optimizers.base import Objective, OptimizationResult, RunContext, SignificanceGate
from agentopt.runs.journal import RunJournal
from agentopt.runs.rundir import RunDir
from agentopt.tasks.loader import Task, load_task
from agentopt.tasks.rollout import Agent, LMAgent
from agentopt.types import Split


class RunConfig(BaseModel):
    """Everything that determines a run's result (with the LM cache)."""

    task: str
    method: str = "promst"
    model: str = DEFAULT_MODEL
    optimizer_model: str | None = Field(default=None, description="defaults to the task model")
    api_base: str | None = None
    seed: int = 0
    n_train: int | None = Field(default=None, ge=1, description="default: the task's train split size")
    n_validation: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)
    budget_calls: int | None = Field(default=None, ge=1, description="LM calls for the search")
    budget_tokens: int | None = Field(default=None, ge=1, description="tokens for the search")
    budget_usd: float | None = Field(default=None, gt=0, description="dollars for the search (priced models)")
    significance_gate: bool | None = Field(
        default=None,
        description="keep a child prompt over its parent only when it is significantly better on "
        "validation (`SignificanceGate`); None: on when the validation split has enough instances",
    )
    gate_alpha: float = Field(default=0.05, gt=0, lt=1)
    step_penalty: float = Field(default=0.0, ge=0)
    agent_max_tokens: int = Field(default=192, ge=8)
    constrain_actions: bool = Field(default=False, description="decode only the task's well-formed actions")
    history_tokens: int = Field(default=1000, ge=0)
    concurrency: int = Field(default=4, ge=1)
    method_config: dict[str, Any] = Field(default_factory=dict)
    tasks_dirs: list[str] = Field(default_factory=list)


def run_optimization(
    config: RunConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    runs_root: str | Path = "runs",
    agent: Agent | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    cache_path: str | Path | None = None,
) -> OptimizationResult:
    """Run (or resume) an optimisation and return its result. ``agent`` overrides the
    built-in LM agent with a user's own ``agent(prompt, instance) -> Trajectory``.

    ``cache_path`` shares one LM response cache between runs (``bench`` does this, so the human
    prompt's episodes are played once per task); the default is the run directory's own. Cached
    answers still count against the run's budget, so sharing saves time, never budget."""
    if resume:
        if run_dir is None or not (Path(run_dir) / "config.json").is_file():
            raise UserError(f"nothing to resume: {run_dir} has no config.json")
        config = RunConfig.model_validate_json((Path(run_dir) / "config.json").read_text())
        rundir = RunDir(run_dir)
    else:
        if run_dir is not None and (Path(run_dir) / "events.jsonl").exists():
            raise UserError(
                f"{run_dir} already holds a run: pass --resume to continue it, or choose another directory"
            )
        rundir = (
            RunDir(run_dir)
            if run_dir is not None
            else RunDir.new(runs_root, f"{config.method}-{config.task}")
        )
        rundir.write_json("config.json", config)

    method = method_class(config.method)
    optimizer = method(**config.method_config)
    task = load_task(config.task, config.tasks_dirs)
    meter = BudgetMeter(Budget(max_calls=config.budget_calls, max_tokens=config.budget_tokens,
                               max_usd=config.budget_usd, count_cache_hits=True))
    cache = ResponseCache(cache_path or rundir.path / "cache.sqlite")
    calls = CallJournal(rundir.path / "calls.jsonl")

    def make_lm(model: str) -> LM:
        return LM(
            model,
            api_base=config.api_base,
            cache=cache,
            journal=calls,
            budget=meter,
            max_concurrency=config.concurrency,
            seed=config.seed,
        )

    task_lm = make_lm(config.model)
    optimizer_lm = (
        task_lm
        if not config.optimizer_model or config.optimizer_model == config.model
        else make_lm(config.optimizer_model)
    )
    validation = task.instances("validation", _within_split(task, "validation", config.n_validation))
    gate = SignificanceGate(alpha=config.gate_alpha)
    gate_on = config.significance_gate
    if gate_on is None:
        gate_on = len(validation) >= gate.min_instances
    ctx = RunContext(
        task=task,
        agent=agent
        or LMAgent(task_lm, task, max_tokens=config.agent_max_tokens, history_tokens=config.history_tokens,
                   constrain_actions=config.constrain_actions, seed=config.seed),
        optimizer_lm=optimizer_lm,
        meter=meter,
        journal=RunJournal(rundir.path / "events.jsonl", meter=meter),
        train=task.instances("train", _within_split(task, "train", config.n_train)),
        validation=validation,
        test=task.instances("test", _within_split(task, "test", config.n_test)),
        seed=config.seed,
        objective=Objective(step_penalty=config.step_penalty),
        rundir=rundir,
        max_concurrency=config.concurrency,
        on_event=on_event,
        gate=gate if gate_on else None,
    )
    ctx.journal.log("start", resume=resume)
    return optimizer.optimize(ctx)


def _within_split(task: Task, split: Split, n: int | None) -> int | None:
    """``n`` capped at the split's size: a bench over tasks of different sizes asks for one
    ``n``, and instances past a split's end are not part of it (the result records the n used)."""
    size = getattr(task.manifest.splits, split)
    return None if n is None else min(n, size)


def load_result(run_dir: str | Path) -> OptimizationResult:
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        raise UserError(f"{run_dir} has no result.json (still running, or killed: try --resume)")
    return OptimizationResult.model_validate(json.loads(path.read_text()))
