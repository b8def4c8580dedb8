"""The Python entry points most users need, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentopt.lm.client import DEFAULT_MODEL
from agentopt.optimizers.base import OptimizationResult
from agentopt.runs.optimize import MakeAgent, RunConfig, run_optimization
from agentopt.tasks.rollout import Agent


def optimize(
    task: str,
    *,
    method: str = "promst",
    model: str = DEFAULT_MODEL,
    optimizer_model: str | None = None,
    agent: Agent | None = None,
    make_agent: MakeAgent | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    **settings: Any,
) -> OptimizationResult:
    """Optimise ``task``'s prompt and return the result (best prompt, validation/test scores).

    ``agent`` plugs in your own ``agent(prompt, instance) -> Trajectory`` (or an async one);
    ``make_agent(lm, task)`` builds it on the run's model ``model`` instead, so its calls are
    counted, cached and journalled with the run's (docs/your-own-agent.md). With neither, the
    task model plays the task. Other ``settings`` are `RunConfig` fields (``budget_calls``,
    ``n_train``, ``seed``, ``api_base``, ``method_config``...).
    """
    config = RunConfig(task=task, method=method, model=model, optimizer_model=optimizer_model, **settings)
    return run_optimization(config, run_dir, resume=resume, agent=agent, make_agent=make_agent)
