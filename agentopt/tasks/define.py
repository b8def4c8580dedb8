"""Tasks built in code, for users whose data and environments live in their own package.

``dataset_task`` makes a single-turn task from examples (a list of dicts, or a JSONL/CSV
file or ``datasets`` folder); ``env_task`` makes a multi-step task from a `TextEnv` subclass.
Either gives the same `Task` a folder gives, so every optimiser, ``bench`` and ``run`` take it
as they take a bundled task. Register it (`agentopt.register_task`) to use it by name, from the
CLI, or when resuming a run in another process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentopt.errors import UserError, validation_message
from agentopt.tasks.actions import ActionGrammar
from agentopt.tasks.dataset import DatasetSpec, distinct_examples, read_labelled_examples
from agentopt.tasks.env import TextEnv
from agentopt.tasks.loader import SplitSizes, Task, TaskManifest
from agentopt.tasks.metrics import Metric
from agentopt.tasks.rules import Rule

# Feedback for a dataset task whose author wrote no rules: it says what went wrong and shows
# the question, the reply and the right answer, which is what PROMST and APO learn from.
DEFAULT_DATASET_RULES = (
    Rule(name="wrong_format", on="event:wrong_format",
         feedback="No answer can be read from the response below: it must end with a line "
                  "\"Answer: ...\" after any working.\n\nQuestion:\n{state}\n\nResponse:\n{response}"),
    Rule(name="wrong_answer", on="event:wrong_answer",
         feedback="The response below answers the question wrongly.\n\nQuestion:\n{state}\n\n"
                  "Response:\n{response}\n\n{env_feedback}"),
)


def dataset_task(
    name: str,
    examples: Sequence[dict[str, Any]] | str | Path,
    *,
    prompt: str,
    input: str = "input",  # noqa: A002 - the field's name in task.toml
    target: str = "target",
    choices: str | None = None,
    template: str = "{input}",
    metric: str | Metric = "exact_match",
    splits: SplitSizes | dict[str, int] | None = None,
    seed: int = 0,
    rules: Iterable[Rule | dict[str, Any]] | None = None,
    title: str = "",
    description: str = "",
) -> Task:
    """A single-turn task: each example is one question, the reply is scored by ``metric``.

    ``examples`` is a list of dicts, or the path of a JSONL/CSV file or ``datasets`` folder.
    ``metric`` is a built-in name (``exact_match``, ``numeric``, ``multiple_choice``, ``f1``),
    ``module:function``, or a function ``(answer, example) -> float`` in [0, 1].
    Examples are de-duplicated, shuffled with ``seed`` and dealt to train, validation and test
    (``splits``; default: a fifth, a fifth and the rest, at most 100/100/all). Without
    ``rules``, the feedback says what went wrong (`DEFAULT_DATASET_RULES`)."""
    prompt_text = _prompt(prompt)
    rule_list = _rules(DEFAULT_DATASET_RULES if rules is None else rules)
    metric_fn = None
    if not isinstance(metric, str):
        if not callable(metric):
            raise UserError(f"metric must be a name or a function (answer, example) -> float, got {metric!r}")
        metric_fn = metric
    labels: list[str] | None = None
    if isinstance(examples, (str, Path)):
        rows, labels = read_labelled_examples(Path(examples))
    elif isinstance(examples, Iterable) and not isinstance(examples, (dict, bytes)):
        rows = list(examples)
    else:
        raise UserError("examples must be a list of dicts or the path of a file, "
                        f"got {type(examples).__name__}")
    spec = _validated(DatasetSpec, "dataset", input=input, target=target, choices=choices, template=template,
                      metric=metric if isinstance(metric, str) else "custom", seed=seed)
    # Checked now, not at the first run: every row a dict with its fields, no question asked
    # twice with two answers; the default split sizes count the distinct examples.
    distinct = distinct_examples(spec, rows, labels)
    sizes = _sizes(splits, len(distinct))
    manifest = _manifest(name, title, description, sizes, rule_list, dataset=spec)
    return Task(manifest=manifest, prompt_text=prompt_text, rows=rows, row_labels=labels, metric_fn=metric_fn)


def env_task(
    name: str,
    env: type[TextEnv],
    *,
    prompt: str,
    families: Sequence[dict[str, Any]] = ({},),
    splits: SplitSizes | dict[str, int] | None = None,
    rules: Iterable[Rule | dict[str, Any]] = (),
    actions: ActionGrammar | dict[str, Any] | None = None,
    oracle: Callable[[TextEnv], str] | None = None,
    title: str = "",
    description: str = "",
) -> Task:
    """A multi-step task: ``env`` (a `TextEnv` subclass) plays each instance, built from
    ``families[index % len(families)]`` (the instance families: each a dict the environment
    reads as ``instance.config``) and a seed derived from the task, split and index.
    ``oracle(env) -> str``, if given, is a policy that solves any instance (``agentopt tasks
    check`` plays it)."""
    if not (isinstance(env, type) and issubclass(env, TextEnv)):
        raise UserError(f"env must be a TextEnv subclass, got {env!r}")
    if isinstance(families, (dict, str, bytes)) or not isinstance(families, Iterable):
        raise UserError("families must be a list of dicts (the instance families), "
                        f"got {type(families).__name__}")
    families = list(families)
    if not families:
        raise UserError("families must hold at least one instance family (a dict; {} for none)")
    for index, family in enumerate(families):
        if not isinstance(family, dict):
            raise UserError(f"families[{index}] is a {type(family).__name__}, not a dict (an instance "
                            "family is a dict the environment reads as instance.config)")
    grammar = actions if actions is None or isinstance(actions, ActionGrammar) else _validated_table(
        ActionGrammar, "actions", actions)
    manifest = _manifest(name, title, description, _sizes(splits, None), rules, actions=grammar)
    return Task(manifest=manifest, prompt_text=_prompt(prompt), env=env,
                instance_families=[dict(f) for f in families], oracle_fn=oracle)


def _manifest(
    name: str, title: str, description: str, sizes: SplitSizes, rules: Iterable[Rule | dict[str, Any]],
    **extra: Any,
) -> TaskManifest:
    return _validated(TaskManifest, "task", name=name, title=title, description=description, splits=sizes,
                      rules=_rules(rules), **extra)


def _rules(rules: Iterable[Rule | dict[str, Any]]) -> list[Rule]:
    return [rule if isinstance(rule, Rule) else _validated_table(Rule, f"rules[{i}]", rule)
            for i, rule in enumerate(rules)]


def _sizes(splits: SplitSizes | dict[str, int] | None, n_examples: int | None) -> SplitSizes:
    if isinstance(splits, SplitSizes):
        return splits
    if splits is not None:
        return _validated_table(SplitSizes, "splits", splits)
    if n_examples is None:
        return SplitSizes()
    # A fifth each for train and validation (enough to search and to choose, never the bulk),
    # at most 100: the rest is test, where more instances buy a tighter comparison.
    fifth = min(100, n_examples // 5)
    return SplitSizes(train=fifth, validation=fifth, test=n_examples - 2 * fifth)


def _prompt(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("a task needs its human-written prompt (prompt='...'): searches start from it")
    return prompt


def _validated_table(model: type, what: str, table: Any) -> Any:
    """``model`` from a dict the caller gave (``splits={...}``, a rule, ``actions={...}``)."""
    if not isinstance(table, dict):
        raise UserError(f"{what} must be a dict (or a {model.__name__}), got {type(table).__name__}")
    if not all(isinstance(key, str) for key in table):
        raise UserError(f"{what}: keys must be strings, got {list(table)!r}")
    return _validated(model, what, **table)


def _validated(model: type, what: str, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise UserError(f"{what}: {validation_message(model, exc)}") from None
