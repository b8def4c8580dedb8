"""The options of a run, declared once for every command that starts runs (``optimize``, ``bench``).

Each option fills one `RunConfig` field and takes that field's type, default and bounds, and its
help from the field's description unless the command line needs other words. `with_run_options`
adds them all to a command, which receives them as one ``run_settings`` dict keyed by field name,
so a new run setting is one line here and one field in `RunConfig`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import annotated_types
import typer

from agentopt.runs.config import RunConfig


@dataclass(frozen=True)
class RunOption:
    field: str
    flags: tuple[str, ...]
    help: str | None = None  # default: the RunConfig field's description
    param_type: Any = None  # default: the field's type
    default: Any = inspect.Parameter.empty  # default: the field's default


RUN_OPTIONS = (
    RunOption("model", ("--model", "-m"),
              "litellm model string, or local/NAME (`agentopt models` lists them)"),
    RunOption("optimizer_model", ("--optimizer-model",),
              "model that writes prompts (default: the task model)"),
    RunOption("api_base", ("--api-base",), "OpenAI-compatible endpoint URL (self-hosted servers)"),
    RunOption("budget_calls", ("--budget-calls",), "LM calls the search may make"),
    RunOption("budget_tokens", ("--budget-tokens",), "prompt + completion tokens the search may use"),
    RunOption("budget_usd", ("--budget-usd",), "dollars the search may spend (priced models)"),
    RunOption("significance_gate", ("--gate/--no-gate",),
              "keep a child prompt over its parent only when a paired test on validation says it is "
              "better (default: on when the validation split has at least 10 instances)"),
    RunOption("gate_alpha", ("--gate-alpha",), "the gate's significance level"),
    RunOption("n_train", ("--n-train",), "train instances (default: the task's train split)"),
    RunOption("n_validation", ("--n-validation",), "validation instances (default: the whole split)"),
    RunOption("n_test", ("--n-test",), "test instances (default: the whole split)"),
    RunOption("step_penalty", ("--step-penalty",), "score - PENALTY * mean steps"),
    RunOption("agent_max_tokens", ("--agent-max-tokens",), "tokens the agent may write per step"),
    RunOption("constrain_actions", ("--constrain-actions",),
              "decode only well-formed actions (the task's action grammar)"),
    RunOption("history_tokens", ("--history-tokens",), "tokens of past steps the agent sees"),
    RunOption("concurrency", ("--concurrency",), "model calls in flight at once"),
    RunOption("timeout_s", ("--timeout",), "seconds one model call may wait for its answer (default 60)"),
    RunOption("attempts", ("--attempts",), "tries per model call, the first included (default 6)"),
    RunOption("tasks_dirs", ("--tasks-dir",), "extra folder of task folders (also: AGENTOPT_TASKS_PATH)",
              param_type=list[Path] | None, default=None),
)


def _bounds(field: str) -> dict[str, Any]:
    """The field's closed bounds, as click's min/max. An open one (timeout > 0) is left to
    RunConfig, whose refusal is one error line too."""
    bounds: dict[str, Any] = {}
    for rule in RunConfig.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds["min"] = rule.ge
        elif isinstance(rule, annotated_types.Le):
            bounds["max"] = rule.le
    return bounds


def _parameter(option: RunOption) -> inspect.Parameter:
    info = RunConfig.model_fields[option.field]
    param_type = option.param_type if option.param_type is not None else info.annotation
    default = info.default if option.default is inspect.Parameter.empty else option.default
    help_text = option.help or info.description
    annotation = Annotated[param_type, typer.Option(*option.flags, help=help_text, **_bounds(option.field))]
    return inspect.Parameter(option.field, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def with_run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with every run option added to its parameters; it is called with them
    gathered in ``run_settings`` (RunConfig field -> value)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name != "run_settings"]
    added = [_parameter(option) for option in RUN_OPTIONS]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = {option.field: kwargs.pop(option.field) for option in RUN_OPTIONS}
        settings["tasks_dirs"] = [str(p) for p in settings["tasks_dirs"] or []]
        return command(*args, run_settings=settings, **kwargs)

    parameters = own + added
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    # typer resolves annotations through get_type_hints, from this module's globals: hand it
    # the evaluated ones rather than the command's strings.
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
