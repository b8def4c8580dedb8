"""Optimise the instructions of a DSPy program's predictors with agentopt's optimisers.

    from agentopt.integrations.dspy import optimize_program

    result = optimize_program(program, trainset, metric, valset=valset, testset=testset,
                              method="promst", model="openai/gpt-4o-mini", budget_calls=300,
                              run_dir="runs/qa")
    result.program       # a copy of the program with the chosen instructions
    result.vs_original   # its test score minus the original program's, paired, with a p-value

DSPy is an optional dependency: ``pip install 'agentopt[dspy]'``. ``import agentopt`` never
imports it, and this module only does when one of its functions is called.

`AgentoptLM` is the bridge underneath: a DSPy LM whose calls are made by an `agentopt.LM`, so a
DSPy program's model calls are budgeted, cached, journalled and replayed on resume like
agentopt's own. `AgentoptTeleprompter` is DSPy's ``compile(student, trainset)`` style over
`optimize_program`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentopt.errors import UserError, validation_message
from agentopt.lm.client import DEFAULT_MODEL, LM
from agentopt.optimizers.base import OptimizationResult
from agentopt.stats import PairedDifference, paired_difference
from agentopt.tasks.evaluate import Evaluation

if TYPE_CHECKING:
    from agentopt.integrations._dspy_lm import AgentoptLM as AgentoptLM

INSTALL = "pip install 'agentopt[dspy]'"
# Budgets that are split between the predictors, as `RunConfig` names them.
_BUDGETS = ("budget_calls", "budget_tokens", "budget_usd")


def require_dspy() -> None:
    """A one-line UserError unless DSPy can be imported."""
    try:
        import dspy  # noqa: F401
    except ImportError as exc:
        raise UserError(f"agentopt.integrations.dspy needs DSPy ({exc}): {INSTALL}") from None


def __getattr__(name: str) -> Any:
    # AgentoptLM subclasses dspy.LM, so it exists only once DSPy is imported.
    if name == "AgentoptLM":
        require_dspy()
        return importlib.import_module("agentopt.integrations._dspy_lm").AgentoptLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ProgramResult(BaseModel):
    """What `optimize_program` found: the program with the chosen instructions, and one agentopt
    result per optimised predictor (``runs``, in the order they were optimised)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    program: Any = Field(exclude=True, description="a copy of the input program with the chosen instructions")
    predictors: list[str] = Field(description="the predictors optimised, in order")
    instructions: dict[str, str] = Field(description="every predictor's instruction in `program`")
    original_instructions: dict[str, str]
    runs: list[OptimizationResult]
    test: Evaluation = Field(description="the optimised program on the testset")
    original_test: Evaluation = Field(description="the input program on the testset")
    vs_original: PairedDifference | None = Field(
        default=None, description="test score minus the original program's, paired over the test examples")
    lm_calls: int = Field(description="LM calls of the searches (what the budgets cap)")
    total_calls: int = Field(
        description="LM calls of the whole optimisation, validation and test scoring included")


def optimize_program(
    program: Any,
    trainset: Sequence[Any],
    metric: Callable[..., Any],
    *,
    valset: Sequence[Any] | None = None,
    testset: Sequence[Any] | None = None,
    method: str = "promst",
    model: str = DEFAULT_MODEL,
    optimizer_model: str | None = None,
    predictors: Sequence[str] | None = None,
    budget_calls: int | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    method_config: dict[str, Any] | None = None,
    **settings: Any,
) -> ProgramResult:
    """Optimise the instructions of ``program``'s predictors with agentopt's ``method``.

    The data: ``trainset`` is searched on, ``valset`` chooses among the best candidates,
    ``testset`` reports the chosen program against the original (paired, with a p-value) and
    is never seen by the search. All are ``dspy.Example``s with their inputs marked
    (``.with_inputs(...)``). Without a valset the trainset is shuffled with ``seed`` and halved:
    the first half (rounded up) to search on, the rest to choose on. Without a testset nothing
    is reported.

    The episodes: each example is one episode of the program, called with the example's inputs
    on ``model`` through `AgentoptLM` (temperature 0; ``agent_max_tokens`` caps each reply), so
    its calls count against the budget, are cached in the run folder and written to its
    calls.jsonl. A predictor's own LM (``set_lm``) is ignored while optimising: every call goes
    to ``model``. ``metric(example, prediction)`` scores the prediction in [0, 1]: a number, a
    bool, or ``dspy.Prediction(score=..., feedback=...)`` (GEPA's form; a metric taking
    ``trace`` or GEPA's other arguments gets None for them). Below 1, the episode's feedback, which
    PROMST and APO learn from, is the metric's ``feedback`` or "wrong answer: expected X, got Y"
    (the example's labels, the prediction's fields). A reply DSPy cannot parse scores 0; any
    other error stops the run.

    Several predictors are optimised coordinate-wise: one after the other (in ``predictors``'
    order, default all of ``program.named_predictors()``), each with the others fixed at their
    best so far, each an agentopt run of its own with an equal share of the budgets
    (``budget_calls``, and ``budget_tokens``/``budget_usd`` if given).

    The run folder ``run_dir`` (default ``runs/<time>-<method>-dspy-<program class>``) holds one
    agentopt run per predictor, ``01-<name>/``, ``02-<name>/``...; ``resume=True`` with the same
    folder and arguments continues where it stopped, without paying again for calls already made
    (finished predictors are read back, an interrupted one is resumed). Other ``settings`` are
    `RunConfig` fields (``concurrency``, ``agent_max_tokens``, ``significance_gate``...).

    Returns the program with the chosen instructions (a copy: ``program`` is left as it was) and
    agentopt's results (`ProgramResult`).
    """
    require_dspy()
    from agentopt.integrations import _dspy_program as impl
    from agentopt.lm.client import check_models
    from agentopt.optimizers import build_optimizer
    from agentopt.runs.config import RunConfig
    from agentopt.runs.optimize import load_config, load_result, reconcile, run_optimization
    from agentopt.store.rundir import RunDir

    names = impl.predictor_names(program)
    order = _chosen(names, predictors)
    train = impl.checked_examples(trainset, "trainset")
    if valset is None:
        train, validation = impl.split_trainset(train, seed)
    else:
        validation = impl.checked_examples(valset, "valset")
    examples = {"train": train, "validation": validation, "test": impl.checked_examples(testset, "testset")}
    if not train or not validation:
        raise UserError("the trainset and the valset each need at least one example")
    unknown = sorted(k for k in settings if k not in RunConfig.model_fields or k == "task")
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} (RunConfig fields: "
                        f"{', '.join(f for f in RunConfig.model_fields if f != 'task')})")
    budgets = {"budget_calls": budget_calls, **{k: settings.pop(k) for k in _BUDGETS if k in settings}}
    shares = {k: _shares(k, v, len(order)) for k, v in budgets.items()}
    if run_dir is None:
        if resume:
            raise UserError("resume=True needs the run_dir of the run to continue")
        # Checked before the folder is made, so a typo leaves nothing behind.
        build_optimizer(method, method_config or {})
        check_models([model, optimizer_model or None], api_base=settings.get("api_base"))
        run_dir = RunDir.new("runs", f"{method}-dspy-{impl.slug(type(program).__name__)}").path
    root = Path(run_dir)
    if resume and not (root / f"01-{impl.slug(order[0])}" / "config.json").is_file():
        raise UserError(f"nothing to resume: {root} holds no optimisation of {order[0]!r}")

    original = impl.instructions(program)
    chosen = dict(original)
    results: list[OptimizationResult] = []
    for k, name in enumerate(order):
        task = impl.ProgramTask(name, chosen, examples)
        folder = root / f"{k + 1:02d}-{impl.slug(name)}"
        try:
            config = RunConfig(task=task.name, method=method, model=model, optimizer_model=optimizer_model,
                               seed=seed, method_config=method_config or {},
                               **{b: s[k] for b, s in shares.items()}, **settings)
        except ValidationError as exc:
            raise UserError(validation_message(RunConfig, exc)) from None
        started = resume and (folder / "config.json").is_file()
        if resume and (folder / "result.json").is_file():
            # Finished: read back, once its settings are known to be the ones asked for now.
            result = load_result(folder)
            if result.task != task.name:
                raise UserError(f"{folder} is a run of another program or other examples; "
                                "resume it with the same ones, or start a new run elsewhere")
            reconcile(load_config(folder), config, folder)
        else:
            # A resumed run goes on with the settings it was started with.
            played = load_config(folder) if started else config
            base = impl.with_instructions(program, chosen, own_lms=False)

            def make_agent(lm: LM, run_task: Any, base: Any = base, name: str = name,
                           played: Any = played) -> impl.ProgramAgent:
                return impl.ProgramAgent(lm, run_task, program=base, predictor=name, metric=metric,
                                         max_tokens=played.agent_max_tokens, seed=played.seed)

            result = run_optimization(config, folder, resume=started, make_agent=make_agent, task=task)
        chosen[name] = result.best_prompt.text
        results.append(result)

    return ProgramResult(
        program=impl.with_instructions(program, chosen),
        predictors=order,
        instructions=chosen,
        original_instructions=original,
        runs=results,
        test=results[-1].test,
        original_test=results[0].human_test,
        vs_original=_paired(results[-1].test, results[0].human_test),
        lm_calls=sum(r.lm_calls for r in results),
        total_calls=sum(r.total_calls or r.lm_calls for r in results),
    )


class AgentoptTeleprompter:
    """DSPy's optimiser interface over `optimize_program`:
    ``AgentoptTeleprompter(metric, method=..., model=..., run_dir=...).compile(student, trainset)``
    returns the optimised program; ``.result`` keeps the whole `ProgramResult`."""

    def __init__(self, metric: Callable[..., Any], **options: Any) -> None:
        self.metric = metric
        self.options = options
        self.result: ProgramResult | None = None

    def compile(self, student: Any, trainset: Sequence[Any], valset: Sequence[Any] | None = None, *,
                testset: Sequence[Any] | None = None) -> Any:
        self.result = optimize_program(student, trainset, self.metric, valset=valset, testset=testset,
                                       **self.options)
        return self.result.program


def _chosen(names: list[str], predictors: Sequence[str] | None) -> list[str]:
    if predictors is None:
        return names
    order = list(dict.fromkeys(predictors))
    missing = [p for p in order if p not in names]
    if missing or not order:
        raise UserError(f"no predictor named {', '.join(missing) or '(none given)'} "
                        f"(the program's: {', '.join(names)})")
    return order


def _shares(name: str, total: float | None, n: int) -> list[Any]:
    """``total`` split evenly over ``n`` runs (whole calls and tokens; the first runs get the
    remainder)."""
    if total is None:
        return [None] * n
    if name == "budget_usd":
        return [float(total) / n] * n
    whole, extra = divmod(int(total), n)
    if whole < 1:
        raise UserError(f"{name}={total} cannot be shared by {n} predictors")
    return [whole + (1 if i < extra else 0) for i in range(n)]


def _paired(optimised: Evaluation, original: Evaluation) -> PairedDifference | None:
    """The two test evaluations compared example by example (each run names its instances after
    its own task, so they are matched by split and index)."""
    a, b = _by_example(optimised), _by_example(original)
    return paired_difference(a, b) if set(a) & set(b) else None


def _by_example(evaluation: Evaluation) -> dict[str, float]:
    return {"/".join(key.rsplit("/", 2)[-2:]): score for key, score in evaluation.scores.items()}


__all__ = ["AgentoptLM", "AgentoptTeleprompter", "ProgramResult", "optimize_program", "require_dspy"]
