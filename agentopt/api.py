"""The Python entry points most users need, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentopt.errors import UserError
from agentopt.lm.client import DEFAULT_MODEL
from agentopt.optimizers.base import OptimizationResult
from agentopt.runs.optimize import MakeAgent, RunConfig, run_optimization
from agentopt.tasks.protocol import TaskProtocol, is_task
from agentopt.tasks.rollout import Agent

TaskRef = str | TaskProtocol
"""A task's name, folder path or ``module:attribute``, or a task object."""


def optimize(
    task: TaskRef,
    *,
    method: str | None = None,
    model: str | None = None,
    optimizer_model: str | None = None,
    agent: Agent | None = None,
    make_agent: MakeAgent | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    **settings: Any,
) -> OptimizationResult:
    """Optimise ``task``'s prompt and return the result (best prompt, validation/test scores).

    ``task`` is a name, a folder, ``module:attribute`` or a task object (`agentopt.dataset_task`,
    `agentopt.env_task`, or your own class with `TaskProtocol`'s members). The run records the
    task's name and a fingerprint of its prompt, rules and instances; to resume it, pass the
    same task again (or its name, once `agentopt.register_task` has registered it): a task that
    has changed since is refused. ``agent`` plugs in your own
    ``agent(prompt, instance) -> Trajectory`` (or an async one); ``make_agent(lm, task)`` builds
    it on the run's model ``model`` instead, so its calls are counted, cached and journalled with
    the run's (docs/your-own-agent.md). With neither, the task model ``model`` plays the
    task. Other ``settings`` are `RunConfig` fields (``budget_calls``, ``n_train``, ``seed``,
    ``api_base``, ``method_config``...). ``method`` defaults to ``promst`` and ``model`` to the
    embedded default; a resume continues with the run's own, and any setting given must agree.
    """
    asked = {"method": method, "model": model, "optimizer_model": optimizer_model}
    task_object = task if is_task(task) else None
    name = task_object.name if task_object is not None else task
    if not isinstance(name, str):
        raise UserError(f"task must be a name, a folder, module:attribute or a task object, "
                        f"got {type(task).__name__}")
    config = run_config(task=name, **{k: v for k, v in asked.items() if v is not None}, **settings)
    return run_optimization(config, run_dir, resume=resume, agent=agent, make_agent=make_agent,
                            task=task_object)


def bench(
    tasks: Sequence[TaskRef],
    methods: Sequence[str],
    out: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    reference: str | None = None,
    model: str = DEFAULT_MODEL,
    **settings: Any,
) -> list[OptimizationResult]:
    """Every method on every task and seed, each paired with the human prompt on the same test
    instances (``OUT/results.md``, ``results.csv``, plots); see `agentopt.runs.bench`.
    ``settings`` are `RunConfig` fields shared by every run; ``method_config`` maps a method to
    its options. Interrupted, it continues where it stopped."""
    from agentopt.runs.bench import run_bench

    for what, given in (("tasks", tasks), ("methods", methods)):
        if isinstance(given, str) or is_task(given):
            shown = repr(given) if isinstance(given, str) else given.name
            raise UserError(f"bench {what} is a list: pass [{shown}], not {shown}")
    tasks, methods = list(tasks), list(methods)
    if not tasks or not methods:
        raise UserError("bench needs at least one task and one method")
    first = tasks[0].name if is_task(tasks[0]) else tasks[0]
    base = run_config(task=first, model=model, **settings)
    return run_bench(base, tasks, methods, Path(out), seeds=seeds, reference=reference)


def run_config(**fields: Any) -> RunConfig:
    """A RunConfig from keyword settings; a misspelt or invalid one is a UserError naming it."""
    try:
        return RunConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(x) for x in first["loc"])
        if first["type"] == "extra_forbidden":
            known = ", ".join(sorted(set(RunConfig.model_fields) - {"task"}))
            raise UserError(f"unknown setting {name!r} (settings: {known})") from None
        raise UserError(f"setting {name}: {first['msg']}") from None
