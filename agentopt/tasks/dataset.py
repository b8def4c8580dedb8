"""Single-turn tasks: a dataset of (input, target) examples, a prompt template and a metric.

Most prompt-optimisation users have a dataset, not an environment. A dataset task is an
ordinary task (same optimisers, rollout, rules, run directories) whose environment lasts one
step: the observation is the example rendered through the template, the action is the model's
reply, and the score is the metric of the answer read out of it (`agentopt.tasks.metrics`).

Examples come from one of:

- ``path``: a JSONL or CSV file, or a Hugging Face ``datasets`` folder saved with
  ``save_to_disk`` (relative to the task folder);
- ``generator``: a function of ``task.py``, ``generate(rng) -> dict``, called with one seeded
  ``random.Random`` until the splits are full (the bundled reasoning tasks).

Examples are de-duplicated on their rendered input, shuffled with ``seed`` and dealt to train,
validation and test in that order, so no example is in two splits.

Each step reports the event ``wrong_format`` (no answer found in the reply) or ``wrong_answer``
(an answer scoring below 1), which the task's feedback rules turn into feedback text.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentopt.errors import UserError
from agentopt.tasks.env import Outcome, TextEnv
from agentopt.tasks.metrics import Metric, extract_answer, load_metric
from agentopt.types import Split

SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# How many draws a generator may take per example it must deliver before we call it stuck
# (a generator that keeps repeating itself cannot fill the splits).
_MAX_DRAWS_PER_EXAMPLE = 50


class DatasetSpec(BaseModel):
    """The ``[dataset]`` table of a task.toml."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a default

    path: str | None = Field(default=None, description="JSONL, CSV or a datasets folder")
    generator: str | None = Field(default=None, description="function of task.py: generate(rng) -> dict")
    input: str = Field(default="input", description="field holding the question")
    target: str = Field(default="target", description="field holding the reference answer")
    choices: str | None = Field(default=None, description="field holding the options (multiple choice)")
    template: str = Field(default="{input}", description="the user message; {field} per example field")
    metric: str = "exact_match"
    seed: int = Field(default=0, description="shuffle seed for dealing examples to splits")

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        # Neither is allowed here: a task built in code hands its examples over directly.
        if self.path is not None and self.generator is not None:
            raise ValueError("give only one of dataset.path or dataset.generator")
        return self


def read_examples(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV file, or of a ``datasets`` folder (its first split if a DatasetDict)."""
    return read_labelled_examples(path)[0]


def read_labelled_examples(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """`read_examples`, with where each row is (``file:line``, or ``folder row N``) for errors."""
    if path.is_dir():
        try:
            import datasets
        except ImportError as exc:
            raise UserError(f"{path} is a datasets folder: reading it needs `pip install datasets`") from exc
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(f"{path} is not a folder written by datasets' save_to_disk: {exc}") from exc
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded[next(iter(loaded))]
        found = [dict(row) for row in loaded]
        return found, [f"{path} row {number}" for number in range(1, len(found) + 1)]
    if not path.is_file():
        raise UserError(f"dataset file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text") from exc
    if path.suffix.lower() == ".csv":
        # newline="" keeps line breaks inside quoted fields.
        reader = csv.DictReader(io.StringIO(text, newline=""))
        found, labels = [], []
        for row in reader:
            found.append(dict(row))
            labels.append(f"{path}:{reader.line_num}")  # the row's last line (a field may span lines)
        return found, labels
    rows, labels = [], []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object")
        rows.append(row)
        labels.append(f"{path}:{number}")
    return rows, labels


class SingleTurnEnv(TextEnv):
    """One question, one reply. ``spec`` and ``metric`` are bound per task (see `DatasetTask`)."""

    spec: ClassVar[DatasetSpec]
    metric: ClassVar[Metric]
    metric_name: ClassVar[str] = "metric"

    @property
    def max_steps(self) -> int:
        return 1

    def build(self, rng: random.Random) -> None:
        self._score = 0.0
        self._answered = False

    @cached_property
    def question(self) -> str:
        return render_example(self.spec, self.instance.config)

    def render(self) -> str:
        return self.question

    def turn_message(self, history: list[Any], observation: str, history_tokens: int) -> str:
        return observation  # no "current state / plan the next step" frame for a question

    def parse_action(self, text: str) -> str | None:
        return extract_answer(text)

    def format_action(self, action: str) -> str:
        return action

    def apply(self, action: str) -> Outcome:
        self._score = self._scored(action)
        self._answered = True
        if self._score >= 1.0:
            return Outcome(feedback="Correct.", terminated=True)
        target = self.instance.config.get(self.spec.target)
        return Outcome(
            feedback=f"The answer {action!r} is wrong; the correct answer is {target!r}.",
            events=["wrong_answer"],
            terminated=True,
        )

    def _scored(self, action: str) -> float:
        """The metric's score of ``action``, clipped to [0, 1]. A metric that raises, or gives
        no number, is a bug for its author to fix (scoring 0 would hide it): one error line
        naming the metric, the instance and the answer."""
        where = f"the metric {self.metric_name!r} on {self.instance.id} (answer {action!r})"
        try:
            raw = self.metric(action, self.instance.config)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{where} raised {type(exc).__name__}: {' '.join(str(exc).split())}") from None
        try:
            score = float(raw)
        except (TypeError, ValueError):
            raise UserError(f"{where} returned {raw!r}, not a number in [0, 1]") from None
        if math.isnan(score):
            raise UserError(f"{where} returned NaN, not a number in [0, 1]")
        return max(0.0, min(1.0, score))

    def progress(self) -> float:
        return float(self._answered)

    def score(self) -> float:
        return self._score


def render_example(spec: DatasetSpec, example: dict[str, Any]) -> str:
    fields = dict(example)
    options = ""
    if spec.choices and isinstance(fields.get(spec.choices), list):
        options = "\n".join(f"({chr(65 + i)}) {choice}" for i, choice in enumerate(fields[spec.choices]))
        fields[spec.choices] = options
    try:
        text = spec.template.format(**fields)
        # Options the template does not place itself go after it: a question is never shown
        # without them.
        named = "{" + spec.choices + "}" in spec.template if spec.choices else True
        return text if named or not options else f"{text}\n{options}"
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"dataset template {spec.template!r} names a field the examples lack: {exc}") from exc


def build_examples(
    spec: DatasetSpec,
    sizes: dict[Split, int],
    *,
    folder: Path | None,
    generator: Callable[[random.Random], dict[str, Any]] | None = None,
    rows: Sequence[dict[str, Any]] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[Split, list[dict[str, Any]]]:
    """Deal distinct examples to the splits (train, then validation, then test). They come
    from ``rows`` (given in code; ``labels`` say where each one is, for errors), the spec's
    file, or ``generator``."""
    needed = sum(sizes.values())
    if rows is not None or spec.path is not None:
        if rows is None:
            rows, labels = read_labelled_examples(Path(spec.path) if folder is None else folder / spec.path)
        unique = distinct_examples(spec, rows, labels)
        random.Random(spec.seed).shuffle(unique)
    else:
        if generator is None:
            where = f"task.py has no function {spec.generator!r}" if spec.generator else "no examples given"
            raise UserError(f"{where} to generate examples")
        rng = random.Random(spec.seed)
        unique, seen = [], set()
        for _ in range(needed * _MAX_DRAWS_PER_EXAMPLE):
            if len(unique) == needed:
                break
            example = canonical_example(spec, generator(rng))
            key = render_example(spec, example)
            if key not in seen:
                seen.add(key)
                unique.append(example)
    if len(unique) < needed:
        raise UserError(
            f"the dataset has {len(unique)} distinct examples but the splits need {needed} "
            f"({', '.join(f'{s} {n}' for s, n in sizes.items())}); lower the split sizes"
        )
    dealt: dict[Split, list[dict[str, Any]]] = {}
    start = 0
    for split in SPLITS:
        dealt[split] = unique[start : start + sizes[split]]
        start += sizes[split]
    return dealt


def canonical_example(spec: DatasetSpec, row: dict[str, Any]) -> dict[str, Any]:
    """The row with ``input``, ``target`` (and ``choices``) under the names the template's
    default and the metrics read, whatever the dataset calls them."""
    missing = [f for f in (spec.input, spec.target) if f not in row]
    if missing:
        raise UserError(f"an example has no {missing[0]!r} field (fields: {', '.join(map(str, row))})")
    row = {**row, "input": row[spec.input], "target": row[spec.target]}
    if spec.choices:
        row["choices"] = row.get(spec.choices)
    return row


def distinct_examples(
    spec: DatasetSpec, rows: Sequence[Any], labels: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The rows as examples, in order, each question (its rendered input) once. ``labels`` say
    where each row is (``file:line``); rows given in code are ``examples[i]``. The same
    question twice with the same answer is a duplicate, dropped; with different answers it is
    an error naming both rows, since either answer would be scored wrong half the time."""
    unique: list[dict[str, Any]] = []
    seen: dict[str, tuple[str, Any]] = {}
    for index, row in enumerate(rows):
        label = labels[index] if labels is not None else f"examples[{index}]"
        if not isinstance(row, dict):
            raise UserError(f"{label} is a {type(row).__name__}, not a dict of fields (an example is "
                            "a dict such as {'input': ..., 'target': ...})")
        for field in (spec.input, spec.target):
            if field not in row or row[field] is None or str(row[field]).strip() == "":
                raise UserError(f"{label} has no {field!r} field (columns: {', '.join(map(str, row))})")
        row = canonical_example(spec, dict(row))
        key = render_example(spec, row)
        if key not in seen:
            seen[key] = (label, row["target"])
            unique.append(row)
            continue
        first, answer = seen[key]
        if str(answer).strip() != str(row["target"]).strip():
            question = key if len(key) <= 80 else key[:77] + "..."
            raise UserError(f"{first} and {label} ask the same question ({question!r}) with different "
                            f"answers ({answer!r} and {row['target']!r}): fix or remove one")
    return unique


def env_class_for(
    name: str, spec: DatasetSpec, folder: Path | None, *, metric: Metric | None = None
) -> type[SingleTurnEnv]:
    """A `SingleTurnEnv` subclass bound to one task's spec and metric (``metric`` when given in
    code, else the spec's)."""
    metric_name = spec.metric if metric is None else _function_name(metric)
    metric = metric or load_metric(spec.metric, folder)
    return type(
        f"{name.title().replace('_', '')}Env",
        (SingleTurnEnv,),
        {"spec": spec, "metric": staticmethod(metric), "metric_name": metric_name},
    )


def _function_name(function: Any) -> str:
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}:{name}" if module and module != "__main__" else name
