"""Running one optimisation: from a `RunConfig` to a run directory with a result.

The run directory holds everything needed to inspect or continue the run:

    run.lock           held by the one process working on the run (`RunDir.lock`)
    config.json        the RunConfig (no secrets)
    task.json          the task's name and fingerprint (a resume refuses a task that changed)
    events.jsonl       the append-only event journal (memoised steps, levels, the result)
    cache.sqlite       the LM response cache of this run
    calls.jsonl        every LM call
    trajectories.jsonl every episode, as it finished
    lineage.json       the prompt lineage graph (networkx node-link JSON)
    result.json        the final result

``resume=True`` re-opens the directory and replays the run (see `agentopt.store.journal`); it
may change how the run reaches its model (`TRANSPORT_FIELDS`), and nothing that changes the result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentopt.errors import UserError, validation_message
from agentopt.files import read_text
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.lm.cache import ResponseCache
from agentopt.lm.client import LM, check_models
from agentopt.lm.journal import CallJournal
from agentopt.lm.retry import retry_policy
from agentopt.optimizers import UnknownMethod, build_optimizer
from agentopt.optimizers.base import Objective, OptimizationResult, RunContext, SignificanceGate
from agentopt.runs.config import TRANSPORT_FIELDS, RunConfig
from agentopt.store.journal import RunJournal
from agentopt.store.rundir import RunDir
from agentopt.tasks.loader import SPLIT_NAMES as SPLITS
from agentopt.tasks.loader import Task, load_task
from agentopt.tasks.protocol import is_task
from agentopt.tasks.rollout import Agent, LMAgent
from agentopt.types import Split

MakeAgent = Callable[[LM, Task], Agent]
"""Builds a user's agent from the run's task model and task: ``make_agent(lm, task)``, as
``LMAgent(lm, task)`` does. The agent's calls then share the run's budget, cache and journal."""




def run_optimization(
    config: RunConfig | None,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    runs_root: str | Path = "runs",
    agent: Agent | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    cache_path: str | Path | None = None,
    make_agent: MakeAgent | None = None,
    task: Any = None,
) -> OptimizationResult:
    """Run (or resume) an optimisation and return its result. ``agent`` overrides the
    built-in LM agent with a user's own ``agent(prompt, instance) -> Trajectory`` (sync or
    async), which calls models of its own; ``make_agent(lm, task)`` builds one on the run's
    task model instead, so its calls count against the run's budget, are cached in the run's
    cache (a resume replays them) and journalled in its calls.jsonl.

    Everything is checked (method and its settings, task, models, endpoint) before the run
    directory is made, so a mistake leaves nothing behind. The directory is locked for the
    run (`RunDir.lock`): a second process on it is refused.

    ``resume=True`` continues the run in ``run_dir`` from its ``config.json``. ``config`` may
    then be None, or name the settings the caller asked for (its ``model_fields_set``): any of
    them that contradicts the run (task, method, seed, model, budgets...) is a UserError, and
    the transport ones (`TRANSPORT_FIELDS`) replace the stored ones.

    ``cache_path`` shares one LM response cache between runs (``bench`` does this, so the human
    prompt's episodes are played once per task); the default is the run directory's own. Cached
    answers still count against the run's budget, so sharing saves time, never budget.

    ``task`` is the task object itself (one made in code), when ``config.task`` names it rather
    than a task agentopt can find by name. Nothing is registered: a resume passes it again.
    A run records a fingerprint of its task (`task_fingerprint`) and a resume refuses a task
    that has changed since: another prompt, other rules or other instances would mix two tasks
    in one run."""
    if agent is not None and make_agent is not None:
        raise UserError("give an agent or a way to make one (make_agent), not both")
    if agent is not None and not callable(agent):
        raise UserError(f"agent must be callable as agent(prompt, instance), got {type(agent).__name__}")
    if make_agent is not None and not callable(make_agent):
        raise UserError("make_agent must be callable as make_agent(lm, task), got "
                        f"{type(make_agent).__name__}")
    if resume:
        rundir, config, changed = _reopen(run_dir, config, task)
    else:
        if config is None:
            raise ValueError("a new run needs its RunConfig")
        config = _gate_decided(config, task)
        rundir = _create(config, run_dir, runs_root, task)
        changed = {}
    try:
        return _run(config, rundir, resume=resume, changed=changed, agent=agent, on_event=on_event,
                    cache_path=cache_path, make_agent=make_agent, task=task)
    finally:
        rundir.unlock()


def _task_of(config: RunConfig, task: Any = None) -> Any:
    """The run's task: the object the caller gave, else the one ``config.task`` names."""
    if task is None:
        return load_task(config.task, config.tasks_dirs)
    if not is_task(task):
        raise UserError(f"task must be a task object (see agentopt.TaskProtocol), got {type(task).__name__}")
    if task.name.lower() != config.task.lower():
        raise UserError(f"the run's task is {config.task!r} but the task object given is {task.name!r}")
    return task


def task_fingerprint(task: Any, config: RunConfig) -> str:
    """A digest of what the run plays: the task's prompt, rules, action grammar and the
    instances of each split it uses. Code is not in it (an environment's logic cannot be read
    reliably); data, prompt and rules are."""
    sizes = {split: _within_split(task, split, getattr(config, f"n_{split}")) for split in SPLITS}
    payload = {
        "name": task.name,
        "prompt": task.initial_prompt,
        "rules": [rule.model_dump(mode="json") if hasattr(rule, "model_dump") else repr(rule)
                  for rule in task.rules],
        "actions": task.actions.model_dump(mode="json") if getattr(task, "actions", None) else None,
        "instances": {split: [[i.id, i.seed, i.config] for i in task.instances(split, n)]
                      for split, n in sizes.items()},
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _create(config: RunConfig, run_dir: str | Path | None, runs_root: str | Path, task: Any) -> RunDir:
    """Check the config, then make and lock the run directory and write config.json and the
    task's fingerprint (task.json)."""
    fingerprint = _check(config, task)
    if run_dir is None:
        rundir = RunDir.new(runs_root, f"{config.method}-{config.task}").lock()
    else:
        rundir = RunDir(run_dir).lock()
        if (rundir.path / "events.jsonl").exists():
            rundir.unlock()
            raise UserError(
                f"{run_dir} already holds a run: resume it (--resume, or resume=True), or choose "
                "another directory"
            )
    rundir.write_json("config.json", config)
    rundir.write_json("task.json", {"task": config.task, "fingerprint": fingerprint})
    return rundir


def _reopen(
    run_dir: str | Path | None, asked: RunConfig | None, task: Any
) -> tuple[RunDir, RunConfig, dict[str, Any]]:
    """Lock the run directory and read its config; reconcile it with what the caller asked."""
    if run_dir is None or not (Path(run_dir) / "config.json").is_file():
        raise UserError(f"nothing to resume: {run_dir} has no config.json")
    rundir = RunDir(run_dir, create=False).lock()
    try:
        stored = load_config(rundir.path)
        config, changed = reconcile(stored, asked, rundir.path)
        try:
            fingerprint = _check(config, task)
        except UnknownMethod:
            raise UserError(
                f"{rundir.path} is a run of method {config.method!r}, which is not known in this "
                "process: an optimiser registered in code? register it before resuming "
                "(agentopt.register_optimizer); a plugin? install it again"
            ) from None
        check_same_task(rundir.path, config.task, fingerprint)
        if changed:
            rundir.write_json("config.json", config)
    except BaseException:
        rundir.unlock()
        raise
    return rundir, config, changed


def check_same_task(run_dir: Path, name: str, fingerprint: str, *, advice: str | None = None) -> None:
    """Refuse to go on with (resume, or report) a run whose task is not the one it began with.
    A run made before fingerprints were kept (no task.json) is taken as it is."""
    path = run_dir / "task.json"
    if not path.is_file():
        return
    try:
        recorded = json.loads(read_text(path, "run task record")).get("fingerprint")
    except (json.JSONDecodeError, AttributeError):
        raise UserError(f"{path} is damaged; it says which task the run plays") from None
    if recorded != fingerprint:
        raise UserError(
            f"{run_dir} began on another version of the task {name!r} (its prompt, rules or instances "
            "differ from the task found now): "
            + (advice or "resume it with the task as it was, or start a new run"))


def load_config(run_dir: str | Path) -> RunConfig:
    """A run's config.json; a UserError when it is damaged."""
    path = Path(run_dir) / "config.json"
    text = read_text(path, "run config")
    try:
        return RunConfig.model_validate_json(text)
    except ValidationError as exc:
        raise UserError(f"{path} is not a run config ({validation_message(RunConfig, exc)})") from None


def reconcile(stored: RunConfig, asked: RunConfig | None, where: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The config a resumed run continues with: the stored one, with the transport settings
    the caller asked for. Any other setting asked for must equal the stored one."""
    if asked is None:
        return stored, {}
    clashes = [name for name in sorted(asked.model_fields_set - TRANSPORT_FIELDS)
               if not _same(name, getattr(asked, name), getattr(stored, name), stored)
               and not _left_to_the_run(name, getattr(asked, name))]
    if clashes:
        was = ", ".join(f"{n}={getattr(stored, n)!r}" for n in clashes)
        now = ", ".join(f"{n}={getattr(asked, n)!r}" for n in clashes)
        raise UserError(f"{where} is a run with {was}; it cannot be resumed as {now} "
                        "(leave those out to continue it, or start a new run elsewhere)")
    changed = {name: getattr(asked, name) for name in sorted(asked.model_fields_set & TRANSPORT_FIELDS)
               if getattr(asked, name) != getattr(stored, name)}
    return stored.model_copy(update=changed), changed


def _left_to_the_run(name: str, asked: Any) -> bool:
    """A setting asked as "decide for me" (the gate's None) agrees with what the run decided;
    ``bench`` passes its whole config on every resume, such settings included."""
    return name == "significance_gate" and asked is None


def _same(name: str, asked: Any, stored: Any, config: RunConfig) -> bool:
    if asked == stored:
        return True
    if name == "task":  # a name, a folder path or a module:attribute may all be the run's task
        if str(asked).lower() == str(stored).lower():
            return True
        try:
            return load_task(asked, config.tasks_dirs).name == load_task(stored, config.tasks_dirs).name
        except UserError:
            return False
    return False


def _check(config: RunConfig, task: Any = None) -> str:
    """Everything a run needs that a user can get wrong, checked before anything is created:
    the method and its settings, the task (its prompt, its instances and its environment, so a
    broken data file or metric is found now), the models. Returns the task's fingerprint."""
    build_optimizer(config.method, config.method_config)
    task = _task_of(config, task)
    if not task.initial_prompt.strip():
        raise UserError(f"task {task.name}'s human-written prompt is empty: every search starts from it")
    # A search needs train instances and a choice needs validation ones; an empty test split
    # is allowed (the DSPy bridge without a testset), and its evaluation says n = 0.
    for split in SPLITS:
        instances = task.instances(split, _within_split(task, split, getattr(config, f"n_{split}")))
        if not instances and split != "test":
            raise UserError(f"task {task.name} has no {split} instances: a run needs at least one "
                            "train and one validation instance")
        if instances:
            task.make_env(instances[0]).reset()
    check_models([config.model, config.optimizer_model or None], api_base=config.api_base)
    return task_fingerprint(task, config)


def _gate_decided(config: RunConfig, task: Any = None) -> RunConfig:
    """The config with the significance gate's default resolved (on when the validation split
    has `SignificanceGate.min_instances`), so config.json says what the run did and a resume
    does the same."""
    if config.significance_gate is not None:
        return config
    task = _task_of(config, task)
    n_validation = _within_split(task, "validation", config.n_validation) or task.splits.validation
    on = n_validation >= SignificanceGate().min_instances
    return config.model_copy(update={"significance_gate": on})


def _run(
    config: RunConfig,
    rundir: RunDir,
    *,
    resume: bool,
    changed: dict[str, Any],
    agent: Agent | None,
    on_event: Callable[[str, dict[str, Any]], None] | None,
    cache_path: str | Path | None,
    make_agent: MakeAgent | None = None,
    task: Any = None,
) -> OptimizationResult:
    optimizer = build_optimizer(config.method, config.method_config)
    task = _task_of(config, task)
    meter = BudgetMeter(Budget(max_calls=config.budget_calls, max_tokens=config.budget_tokens,
                               max_usd=config.budget_usd, count_cache_hits=True))
    cache = ResponseCache(cache_path or rundir.path / "cache.sqlite")
    calls = CallJournal(rundir.path / "calls.jsonl")
    journal = RunJournal(rundir.path / "events.jsonl", meter=meter)
    retry = retry_policy(config.timeout_s, config.attempts)

    def make_lm(model: str) -> LM:
        return LM(
            model,
            api_base=config.api_base,
            cache=cache,
            journal=calls,
            budget=meter,
            retry=retry,
            max_concurrency=config.concurrency,
            jitter_seed=config.seed,
        )

    task_lm = make_lm(config.model)
    optimizer_lm = (
        task_lm
        if not config.optimizer_model or config.optimizer_model == config.model
        else make_lm(config.optimizer_model)
    )
    validation = task.instances("validation", _within_split(task, "validation", config.n_validation))
    gate = SignificanceGate(alpha=config.gate_alpha)
    # A config.json without the setting was written before the gate existed: it ran without one.
    gate_on = bool(config.significance_gate)
    if make_agent is not None:
        agent = make_agent(task_lm, task)
        if not callable(agent):
            raise UserError(f"make_agent returned {type(agent).__name__}, not an agent(prompt, instance)")
    if agent is None:
        agent = LMAgent(task_lm, task, max_tokens=config.agent_max_tokens,
                        history_tokens=config.history_tokens, constrain_actions=config.constrain_actions,
                        seed=config.seed)
    ctx = RunContext(
        task=task,
        agent=agent,
        optimizer_lm=optimizer_lm,
        meter=meter,
        journal=journal,
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
    ctx.journal.log("start")
    if resume:
        # One line per resume (not a repeat: each is its own), with what it changed.
        ctx.journal.log("resumed", once=False, steps_on_file=journal.memo_count,
                        changed=sorted(changed))
    result = optimizer.optimize(ctx)
    if not isinstance(result, OptimizationResult) or not (rundir.path / "result.json").is_file():
        raise UserError(f"the optimiser {config.method!r} returned {type(result).__name__}: an optimiser "
                        "must end with `return ctx.finish(...)`, which writes and returns the run's result")
    if result.method != config.method:
        raise UserError(f"the optimiser {config.method!r} reported its result as method {result.method!r}: "
                        "pass its own name to ctx.finish")
    return result


def _within_split(task: Task, split: Split, n: int | None) -> int | None:
    """``n`` capped at the split's size: a bench over tasks of different sizes asks for one
    ``n``, and instances past a split's end are not part of it (the result records the n used)."""
    size = getattr(task.splits, split)
    return None if n is None else min(n, size)


def load_result(run_dir: str | Path) -> OptimizationResult:
    folder = Path(run_dir)
    path = folder / "result.json"
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise UserError(f"{run_dir} {what}: give a run folder (runs/<time>-<task>-<method>)")
    if not path.is_file():
        raise UserError(f"{run_dir} has no result.json (still running, or killed: try --resume)")
    text = read_text(path, "run result")
    try:
        return OptimizationResult.model_validate_json(text)
    except ValidationError as exc:
        why = validation_message(OptimizationResult, exc)
        raise UserError(f"{path} is not a run result ({why})") from None
