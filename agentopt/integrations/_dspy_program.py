"""A DSPy program's examples as an agentopt task, and the program as its agent.

`ProgramTask` deals the examples to train, validation and test as given (no shuffling, no
de-duplication: the caller chose the splits). `ProgramAgent` plays one example: it runs the
program with the candidate instruction on one predictor, through `AgentoptLM` on the run's
model, scores the prediction with the user's metric and returns the `Trajectory`, whose
feedback (the metric's, or "wrong answer: expected ..., got ...") is what PROMST and APO
learn from.

This module imports DSPy; `agentopt.integrations.dspy` imports it only once DSPy is known to
be installed.
"""

from __future__ import annotations

import inspect
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentopt.errors import LMError, UserError
from agentopt.integrations._dspy_lm import AgentoptLM, episode
from agentopt.lm.client import LM
from agentopt.tasks.env import Outcome, TextEnv
from agentopt.tasks.loader import SplitSizes
from agentopt.types import Feedback, Instance, Prompt, Split, Step, Trajectory, content_hash

Metric = Callable[..., Any]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# Program copies kept per agent, one per candidate instruction: a search revisits its few best.
_COPIES = 8


# --- the program's predictors -------------------------------------------------------------------
def predictor_names(program: Any) -> list[str]:
    if not callable(getattr(program, "named_predictors", None)):
        raise UserError(f"expected a DSPy program (a dspy.Module), got {type(program).__name__}")
    names = [name for name, _ in program.named_predictors()]
    if not names:
        raise UserError(f"{type(program).__name__} has no dspy.Predict inside: no instruction to optimise")
    return names


def instructions(program: Any) -> dict[str, str]:
    return {name: str(p.signature.instructions) for name, p in program.named_predictors()}


def with_instructions(program: Any, chosen: dict[str, str], *, own_lms: bool = True) -> Any:
    """A copy of ``program`` whose predictors named in ``chosen`` have those instructions. Without
    ``own_lms`` every predictor's own LM is dropped, so the one in ``dspy.context`` (the run's)
    makes all its calls."""
    copy = program.deepcopy()
    for name, predictor in copy.named_predictors():
        if name in chosen:
            predictor.signature = predictor.signature.with_instructions(chosen[name])
        if not own_lms:
            predictor.lm = None
    return copy


# --- the examples -------------------------------------------------------------------------------
def checked_examples(examples: Sequence[Any] | None, what: str) -> list[dspy.Example]:
    rows = list(examples or [])
    for number, example in enumerate(rows, 1):
        if not isinstance(example, dspy.Example):
            raise UserError(f"{what} example {number} is a {type(example).__name__}, not a dspy.Example")
        try:
            example.inputs()
        except ValueError:
            raise UserError(f"{what} example {number} names no input fields: "
                            "build it with dspy.Example(...).with_inputs('question', ...)") from None
    return rows


def split_trainset(trainset: list[dspy.Example], seed: int) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Without a valset: the trainset shuffled with ``seed`` and halved, the first half (rounded
    up) to search on, the rest to choose among the best candidates on."""
    if len(trainset) < 2:
        raise UserError("with no valset, the trainset is split in two: give at least 2 examples")
    order = list(range(len(trainset)))
    random.Random(seed).shuffle(order)
    cut = (len(order) + 1) // 2
    return [trainset[i] for i in order[:cut]], [trainset[i] for i in order[cut:]]


def render(fields: Any) -> str:
    return "\n".join(f"{key}: {value}" for key, value in fields.items())


def slug(name: str) -> str:
    """A predictor's attribute path as a task or folder name (``steps[0].x`` -> ``steps_0_.x``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._-") or "predictor"


class ProgramTask:
    """The examples of one optimisation of one predictor, as an agentopt task (`TaskProtocol`).

    Its name hashes the examples, the predictor and every instruction the program starts from,
    so a resume with other data or another program is refused rather than served stale scores.
    """

    single_turn = True
    actions = None

    def __init__(
        self, predictor: str, start: dict[str, str], examples: dict[Split, list[dspy.Example]]
    ) -> None:
        self.examples = examples
        self.initial_prompt = start[predictor]
        self._shown = {split: [(render(e.inputs()), render(e.labels())) for e in rows]
                       for split, rows in examples.items()}
        digest = content_hash(predictor, sorted(start.items()), self._shown, length=10)
        self.name = f"dspy-{slug(predictor)}-{digest}"
        self.splits = SplitSizes(**{split: len(rows) for split, rows in examples.items()})

    @property
    def rules(self) -> list[Any]:
        return []  # the agent attaches the metric's feedback itself

    def instances(self, split: Split, n: int | None = None) -> list[Instance]:
        size = len(self.examples[split])
        count = size if n is None else n
        if not 0 <= count <= size:
            raise UserError(f"{self.name}'s {split} split holds {size} examples; asked for {count}")
        return [self.instance(split, i) for i in range(count)]

    def instance(self, split: Split, index: int) -> Instance:
        inputs, labels = self._shown[split][index]
        return Instance(task=self.name, split=split, index=index, seed=index,
                        config={"inputs": inputs, "labels": labels})

    def example(self, instance: Instance) -> dspy.Example:
        return self.examples[instance.split][instance.index]

    def make_env(self, instance: Instance) -> TextEnv:
        return _ExampleEnv(instance)


class _ExampleEnv(TextEnv):
    """Shows an example's inputs, for optimisers that read an instance's starting state (APE,
    APO). Episodes are played by the program (`ProgramAgent`), never by this env: a reply sent
    here is not scored."""

    max_steps = 1

    def build(self, rng: random.Random) -> None:
        pass

    def render(self) -> str:
        return str(self.instance.config["inputs"])

    def turn_message(self, history: list[Any], observation: str, history_tokens: int) -> str:
        return observation

    def parse_action(self, text: str) -> str | None:
        return text.strip() or None

    def format_action(self, action: str) -> str:
        return action

    def apply(self, action: str) -> Outcome:
        return Outcome(feedback="only the DSPy program's metric scores a reply", terminated=True)

    def progress(self) -> float:
        return 0.0

    def score(self) -> float:
        return 0.0


# --- scoring ------------------------------------------------------------------------------------
@dataclass
class Verdict:
    score: float
    feedback: str | None = None  # the metric's own words, when it gave some


def judge(metric: Metric, example: dspy.Example, prediction: Any) -> Verdict:
    """``metric(example, prediction)``: a number in [0, 1], a bool, or anything with a ``score``
    (and optionally a ``feedback``), such as GEPA's ``dspy.Prediction(score=..., feedback=...)``.
    A metric with more required parameters (``trace``, GEPA's ``pred_name``...) gets None for them."""
    value = metric(example, prediction, *[None] * _extra_required(metric))
    feedback = None
    if isinstance(value, dict) and "score" in value:
        value, feedback = value["score"], value.get("feedback")
    elif not isinstance(value, bool | int | float) and hasattr(value, "score"):
        value, feedback = value.score, getattr(value, "feedback", None)
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise UserError(f"the metric returned {value!r}: return a number in [0, 1], a bool, or "
                        "dspy.Prediction(score=..., feedback=...)") from None
    if not 0.0 <= score <= 1.0:  # NaN fails this too
        raise UserError(f"the metric returned the score {score!r}; agentopt's scores are in [0, 1]")
    return Verdict(score, str(feedback) if feedback else None)


def _extra_required(metric: Metric) -> int:
    try:
        parameters = inspect.signature(metric).parameters.values()
    except (TypeError, ValueError):
        return 0
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    return max(0, len(positional) - 2)


def default_feedback(example: dspy.Example, prediction: Any) -> str:
    """"wrong answer: expected X, got Y", over the example's labels (or, when the prediction
    has none of them, everything it said)."""
    labels = dict(example.labels())
    said = dict(prediction.items()) if hasattr(prediction, "items") else {"output": prediction}
    shown = {k: said[k] for k in labels if k in said} or said
    expected = ", ".join(f"{k}={v!r}" for k, v in labels.items())
    got = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return f"wrong answer: expected {expected}, got {got}"


# --- the agent ----------------------------------------------------------------------------------
class ProgramAgent:
    """``agent(prompt, instance) -> Trajectory``: the program, with ``prompt`` as the instruction
    of ``predictor``, run on the instance's example through the run's LM.

    A reply DSPy cannot parse scores 0 with "wrong_format" feedback; any other error (the
    budget spent, an endpoint down, a bug in the program or the metric) stops the run."""

    def __init__(self, lm: LM, task: ProgramTask, *, program: Any, predictor: str, metric: Metric,
                 max_tokens: int | None, seed: int) -> None:
        self.task = task
        self.program = program
        self.predictor = predictor
        self.metric = metric
        self.seed = seed
        self.lm = AgentoptLM(lm, max_tokens=max_tokens)
        self._copies: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def max_parallel_episodes(self) -> int | None:
        """As `LMAgent`: one episode at a time on an in-process model (its prefix reuse)."""
        return self.lm.agentopt_lm.backend.parallel_calls

    def __call__(self, prompt: str, instance: Instance) -> Trajectory:
        example = self.task.example(instance)
        program = self._program(prompt)
        unreadable: AdapterParseError | None = None
        with dspy.context(lm=self.lm), episode(f"seed{self.seed}/{instance.id}") as played:
            try:
                prediction = program(**example.inputs())
            except AdapterParseError as exc:
                prediction, unreadable = None, exc
            except Exception as exc:
                found = _agentopt_error(exc)
                if found is None:
                    raise
                raise found from None
        inputs = str(instance.config["inputs"])
        if unreadable is not None:
            reply = str(unreadable.lm_response or "")
            verdict = Verdict(0.0)
            text, rule = "the program's reply could not be read in the format its signature asks for", \
                "wrong_format"
        else:
            reply = render(prediction) if hasattr(prediction, "items") else str(prediction)
            verdict = judge(self.metric, example, prediction)
            text = verdict.feedback or default_feedback(example, prediction)
            rule = "metric_feedback" if verdict.feedback else "wrong_answer"
        success = verdict.score >= 1.0
        prompt_id = Prompt(text=prompt).id
        return Trajectory(
            instance=instance,
            prompt_id=prompt_id,
            steps=[Step(observation=inputs, raw_output=reply, action=reply, valid=unreadable is None,
                        env_feedback=f"The metric scored it {verdict.score:.2f}.", reward=verdict.score,
                        progress=1.0)],
            score=verdict.score,
            success=success,
            terminated_by=None if success else rule,
            feedback=[] if success else [Feedback(text=text, source="rule", rule=rule, prompt_id=prompt_id)],
            prompt_tokens=played.prompt_tokens,
            completion_tokens=played.completion_tokens,
        )

    def _program(self, prompt: str) -> Any:
        with self._lock:
            program = self._copies.pop(prompt, None)
            if program is None:
                program = with_instructions(self.program, {self.predictor: prompt}, own_lms=False)
            self._copies[prompt] = program
            while len(self._copies) > _COPIES:
                self._copies.popitem(last=False)
            return program


def _agentopt_error(exc: BaseException) -> BaseException | None:
    """The agentopt error (a spent budget, a failed call) behind an error DSPy raised: DSPy wraps
    what its engine raises, and the run must stop for the reason agentopt gave."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError | LMError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None

