"""Reflexion: agents that learn across trials from their own verbal lessons.

Shinn, Cassano, Berman, Gopinath, Narasimhan, Yao, "Reflexion: Language Agents with Verbal
Reinforcement Learning", NeurIPS 2023, arXiv 2303.11366.

Three roles (paper section 3):

- **Actor**: any agent ``agent(prompt, instance) -> Trajectory``. Lessons reach it through its
  system prompt, which gets a "Your memory from earlier trials" section (``reflexion/memory.j2``);
  that is the only channel every agent has, so the built-in `LMAgent` and a user's own callable
  are treated the same.
- **Evaluator**: the episode score; a trial succeeds when ``score >= success_threshold``. The
  task's human-designed feedback rules that fired are the evaluator's verbal signal, passed on to
  the reflector (the ALFWorld runs used a heuristic evaluator in the same spirit).
- **Self-reflection**: an LM writes a short new plan from the failed trajectory (its last
  ``history_steps`` steps), the rule feedback and the earlier plans (``reflexion/reflect.j2``).

Loop (Algorithm 1, run per instance): trial -> evaluate -> (on failure) reflect -> the lesson
joins a memory bounded to the last ``memory_size`` lessons (Ω = 3 as in ALFWorld and HotpotQA)
-> next trial, up to ``max_trials``. Solved instances are not rerun (cumulative accuracy, as in
the ALFWorld code). Per trial we report cumulative success, the mean of each instance's best
score so far (non-decreasing by construction) and the raw mean score of the episodes run.

Every instance that scored higher in a later trial than in an earlier one yields preference
pairs (chosen = the better trajectory) for the ledger, with the *memory-free* task prompt as the
context: the point of tuning on them is a model that acts well without needing the lessons.

`Reflexion.run` drives a set of instances and reports per trial; `ReflexionAgent` wraps an
existing agent so that each call runs the trials internally and returns the best trajectory;
`Reflexion.optimize` puts that wrapper in the shared run harness, so `agentopt bench` compares
Reflexion with the prompt optimisers.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, Field

from agentopt.errors import BudgetExceeded
from agentopt.lm.client import LM
from agentopt.optimizers.base import OptimizationResult, RunContext, configure
from agentopt.preferences.ledger import add_preferences
from agentopt.prompts import render_prompt
from agentopt.store.rundir import RunDir
from agentopt.tasks.loader import Task
from agentopt.tasks.rollout import Agent, attach_rule_feedback, call_agent, render_turn
from agentopt.types import Feedback, Instance, Preference, Prompt, Trajectory


class ReflexionConfig(BaseModel):
    max_trials: int = Field(default=4, ge=1, description="trials per instance, the first included")
    memory_size: int = Field(default=3, ge=1, description="lessons kept in the actor's context (Ω)")
    success_threshold: float = Field(default=1.0, ge=0.0, le=1.0, description="score that counts as solved")
    reflect_temperature: float = Field(default=0.0, ge=0.0)
    reflect_max_tokens: int = Field(default=256, ge=16)
    history_steps: int = Field(default=10, ge=1, description="last steps of a failed trial shown")
    lesson_chars: int = Field(default=600, ge=40, description="cap on one lesson's length in memory")


class Lesson(BaseModel):
    trial: int
    text: str


class TrialRecord(BaseModel):
    trial: int
    score: float
    success: bool
    n_steps: int
    terminated_by: str | None = None
    lessons_in_context: int = 0


class InstanceRecord(BaseModel):
    instance_id: str
    trials: list[TrialRecord] = Field(default_factory=list)
    lessons: list[Lesson] = Field(default_factory=list)
    solved_at: int | None = None
    best_score: float = 0.0
    best_trial: int = 0


class TrialSummary(BaseModel):
    trial: int
    attempted: int = Field(description="episodes run in this trial (instances not yet solved)")
    solved: int = Field(description="instances solved in this or an earlier trial")
    success_rate: float = Field(description="cumulative: solved / instances")
    mean_score: float = Field(description="mean over instances of the best score so far")
    raw_mean_score: float = Field(description="mean score of the episodes run in this trial")
    reflections: int = 0


class ReflexionResult(BaseModel):
    task: str | None
    n_instances: int
    trials: list[TrialSummary]
    instances: list[InstanceRecord]
    preferences: int = Field(default=0, description="preference pairs produced")
    preferences_added: int = Field(default=0, description="pairs new to the ledger")
    run_dir: str | None = None


# --- the actor's memory ---------------------------------------------------------------------
def with_memory(prompt: str, lessons: Sequence[Lesson]) -> str:
    """The actor's system prompt with its lessons appended (unchanged when there are none)."""
    if not lessons:
        return prompt
    return render_prompt("reflexion/memory", prompt=prompt, lessons=list(lessons))


# --- the evaluator ---------------------------------------------------------------------------
def rule_texts(trajectory: Trajectory) -> list[str]:
    """The verbal half of the evaluation: rule feedback, else what the score says."""
    texts = [f.text for f in trajectory.feedback if f.source == "rule" and f.text]
    if texts:
        return texts
    ended = f" (ended by {trajectory.terminated_by})" if trajectory.terminated_by else ""
    return [f"The episode ended with the task only {trajectory.score:.0%} complete{ended}."]


# --- the self-reflection model ---------------------------------------------------------------
_PLAN_PREFIX = re.compile(r"^\s*(new plan|plan|reflection|lesson)\s*[:\-]\s*", re.IGNORECASE)


def clean_lesson(text: str, max_chars: int) -> str:
    """One memory line: drop a leading 'New plan:' echo, join lines, drop repeated sentences
    (small models loop), cap at a word boundary."""
    text = _PLAN_PREFIX.sub("", text.strip())
    sentences: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        if sentence and sentence not in sentences:
            sentences.append(sentence)
    text = " ".join(sentences)
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
    return text


class Reflector:
    """M_sr: turns a failed trajectory, its feedback and earlier plans into a new plan."""

    def __init__(self, lm: LM, config: ReflexionConfig | None = None, *, seed: int = 0) -> None:
        self.lm = lm
        self.config = config or ReflexionConfig()
        self.seed = seed

    def message(
        self, instructions: str, start: str, trajectory: Trajectory, plans: Sequence[Lesson], trial: int
    ) -> str:
        k = self.config.history_steps
        shown = trajectory.steps[-k:]
        first = len(trajectory.steps) - len(shown)
        steps = [
            {"number": first + i + 1, "observation": s.observation, "response": s.raw_output.strip(),
             "env_feedback": s.env_feedback}
            for i, s in enumerate(shown)
        ]
        return render_prompt(
            "reflexion/reflect",
            instructions=instructions,
            start=start,
            trial=trial,
            steps=steps,
            omitted=first,
            score=trajectory.score,
            feedback=rule_texts(trajectory),
            plans=list(plans),
        )

    def reflect(
        self, instructions: str, start: str, trajectory: Trajectory, plans: Sequence[Lesson], trial: int
    ) -> str:
        cfg = self.config
        # Named per (seed, instance, trial): a sampled reflection is drawn once and replayed
        # from the cache by a resumed run, and another seed draws its own.
        completion = self.lm.chat(
            [{"role": "user", "content": self.message(instructions, start, trajectory, plans, trial)}],
            sample=f"seed{self.seed}/{trajectory.instance.id}/trial{trial}", allow_empty=True,
            temperature=cfg.reflect_temperature, max_tokens=cfg.reflect_max_tokens,
        )
        return clean_lesson(completion.text, cfg.lesson_chars)


# --- one instance across trials --------------------------------------------------------------
class _InstanceRun:
    """The state Reflexion keeps per instance: its bounded memory and every trial's trajectory."""

    def __init__(self, instance: Instance, config: ReflexionConfig, task: Task | None) -> None:
        self.instance = instance
        self.config = config
        self.task = task
        self.memory: deque[Lesson] = deque(maxlen=config.memory_size)  # Ω: oldest lesson falls out
        self.record = InstanceRecord(instance_id=instance.id)
        self.trajectories: list[Trajectory] = []
        self._start: str | None = None

    @property
    def solved(self) -> bool:
        return self.record.solved_at is not None

    def start(self) -> str:
        """The observation at reset: the shared context of every trial's trajectory."""
        if self._start is None:
            if self.task is not None:
                self._start = self.task.make_env(self.instance).reset()[0]
            else:
                first = next((t for t in self.trajectories if t.steps), None)
                self._start = first.steps[0].observation if first else ""
        return self._start

    def play(self, agent: Agent, prompt: str, trial: int) -> Trajectory:
        lessons = list(self.memory)
        trajectory = call_agent(agent, with_memory(prompt, lessons), self.instance)
        if self.task is not None:
            trajectory = attach_rule_feedback(self.task, trajectory)
        success = trajectory.score >= self.config.success_threshold
        self.trajectories.append(trajectory)
        rec = self.record
        rec.trials.append(TrialRecord(
            trial=trial, score=trajectory.score, success=success, n_steps=trajectory.n_steps,
            terminated_by=trajectory.terminated_by, lessons_in_context=len(lessons),
        ))
        if trajectory.score > rec.best_score or rec.best_trial == 0:
            rec.best_score, rec.best_trial = trajectory.score, trial
        if success and rec.solved_at is None:
            rec.solved_at = trial
        return trajectory

    def reflect(self, reflector: Reflector, prompt: str, trial: int) -> Lesson | None:
        lesson_text = reflector.reflect(prompt, self.start(), self.trajectories[-1], list(self.memory), trial)
        if not lesson_text:
            return None  # an empty reflection teaches nothing; keep the memory as it was
        lesson = Lesson(trial=trial, text=lesson_text)
        self.memory.append(lesson)
        self.record.lessons.append(lesson)
        return lesson

    def best(self) -> Trajectory:
        return self.trajectories[self.record.best_trial - 1]

    def preferences(self, prompt: str) -> list[Preference]:
        return improvement_preferences(self.trajectories, prompt, self.start(), self.instance)


def render_actions(trajectory: Trajectory) -> str:
    """A trajectory as the agent's own outputs, one step per line block."""
    if not trajectory.steps:
        return "(no actions)"
    return "\n".join(f"Step {i}: {s.raw_output.strip()}" for i, s in enumerate(trajectory.steps, 1))


def improvement_preferences(
    trajectories: Sequence[Trajectory], prompt: str, start: str, instance: Instance
) -> list[Preference]:
    """A pair for every (earlier, later) trial where the later one scored higher.

    The context is the task prompt *without* the memory, plus the first observation, as an
    agent sees it at step one: the pair teaches the behaviour the lessons led to.
    """
    context = f"{prompt}\n\n{render_turn([], start, 0)}" if start else prompt
    out: list[Preference] = []
    for j, later in enumerate(trajectories):
        for i, earlier in enumerate(trajectories[:j]):
            if later.score <= earlier.score:
                continue
            chosen, rejected = render_actions(later), render_actions(earlier)
            if chosen == rejected:
                continue  # same actions, different score (a stochastic env): no signal
            out.append(Preference(
                context=context, chosen=chosen, rejected=rejected, source="reflexion",
                task=instance.task, kind="trajectory",
                metadata={
                    "instance": instance.id,
                    "trials": {"chosen": j + 1, "rejected": i + 1},
                    "scores": {"chosen": later.score, "rejected": earlier.score},
                },
            ))
    return out


# --- the loop over instances -----------------------------------------------------------------
class Reflexion:
    """Reflexion over a set of instances, reporting success and score per trial.

    Args:
        config: hyperparameters (`ReflexionConfig`); keyword overrides are applied on top.
    """

    name = "reflexion"

    def __init__(self, config: ReflexionConfig | None = None, **overrides: Any) -> None:
        self.config = configure(ReflexionConfig, config, overrides)

    def run(
        self,
        agent: Agent,
        reflector_lm: LM,
        instances: Sequence[Instance],
        *,
        prompt: str | None = None,
        task: Task | None = None,
        ledger: Any = None,
        rundir: RunDir | None = None,
        max_concurrency: int = 4,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> ReflexionResult:
        """Run up to ``max_trials`` trials on each instance; write improvement pairs to ``ledger``.

        ``prompt`` defaults to the task's human prompt. ``task`` (optional for a user agent) adds
        the rule feedback after the fact and gives the reset observation for preference contexts.
        """
        cfg = self.config
        if prompt is None:
            if task is None:
                raise ValueError("Reflexion.run needs a prompt or a task")
            prompt = task.initial_prompt
        emit = on_event or (lambda kind, data: None)
        reflector = Reflector(reflector_lm, cfg)
        runs = [_InstanceRun(inst, cfg, task) for inst in instances]
        summaries: list[TrialSummary] = []
        lock = threading.Lock()

        def one(run: _InstanceRun, trial: int) -> tuple[float, bool]:
            trajectory = run.play(agent, prompt, trial)
            if rundir is not None:
                rundir.append_jsonl("trajectories.jsonl", {
                    "trial": trial, "lessons_in_context": run.record.trials[-1].lessons_in_context,
                    **trajectory.model_dump(mode="json"),
                })
            reflected = False
            # No reflection after the last trial: nothing would read it.
            if not run.solved and trial < cfg.max_trials:
                reflected = run.reflect(reflector, prompt, trial) is not None
            with lock:
                emit("episode", {"trial": trial, "instance": run.instance.id, "score": trajectory.score,
                                 "success": run.solved})
            return trajectory.score, reflected

        for trial in range(1, cfg.max_trials + 1):
            pending = [r for r in runs if not r.solved]
            if not pending:
                break
            emit("trial_start", {"trial": trial, "attempted": len(pending)})
            with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
                outcomes = list(pool.map(one, pending, [trial] * len(pending)))
            n = max(1, len(runs))
            summary = TrialSummary(
                trial=trial,
                attempted=len(pending),
                solved=sum(r.solved for r in runs),
                success_rate=sum(r.solved for r in runs) / n,
                mean_score=sum(r.record.best_score for r in runs) / n,
                raw_mean_score=sum(score for score, _ in outcomes) / len(outcomes),
                reflections=sum(reflected for _, reflected in outcomes),
            )
            summaries.append(summary)
            emit("trial", summary.model_dump())

        preferences = [p for r in runs for p in r.preferences(prompt)]
        added = add_preferences(ledger, preferences)
        result = ReflexionResult(
            task=task.name if task is not None else (instances[0].task if instances else None),
            n_instances=len(runs),
            trials=summaries,
            instances=[r.record for r in runs],
            preferences=len(preferences),
            preferences_added=added,
            run_dir=str(rundir.path) if rundir is not None else None,
        )
        if rundir is not None:
            for pref in preferences:
                rundir.append_jsonl("preferences.jsonl", pref.model_dump(mode="json"))
            rundir.write_json("result.json", result)
        return result


    # --- `agentopt optimize` / `bench` ----------------------------------------------------
    def optimize(self, ctx: RunContext) -> OptimizationResult:
        """Reflexion in the shared run harness, for comparison with the prompt optimisers.

        Reflexion changes how the agent acts, not its prompt: the human prompt is played by the
        run's agent wrapped in `ReflexionAgent` (the optimizer model writes the reflections),
        which retries each instance until the environment says it succeeded. That is a best of
        k picked with the true score, so it is reported as ``pass_at_k`` (with ``attempts`` = k)
        and never as ``test``: ``test`` is the first trial, one attempt with no lessons yet,
        which is the plain agent's episode (same prompt, same sample). ``total_calls`` counts
        every trial, the test split's included. Each evaluation is journalled, so a killed run
        resumes.
        """
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        reflective = ReflexionAgent(ctx.agent, ctx.optimizer_lm, self.config, task=ctx.task, seed=ctx.seed)
        stopped_by = "trials"
        rounds: list[dict[str, Any]] = []
        first_train = 0.0
        try:
            plain = ctx.score(human)
            train = ctx.score(human, agent=reflective, tag=self.name)
        except BudgetExceeded:
            stopped_by = "budget"
        else:
            first_train = plain.objective
            rounds.append({"split": "train", "first_trial": plain.objective,
                           f"pass@{self.config.max_trials}": train.objective, "calls": train.calls_so_far})
        # The human prompt is the one reported: its first trials on validation and test, and
        # the wrapper's best of k on test as pass@k.
        return ctx.finish(
            self.name,
            human,
            stopped_by,
            rounds,
            chosen=human,
            best_train=first_train,
            n_candidates=1,
            retrying_agent=reflective,
            attempts=self.config.max_trials,
        )


class ReflexionAgent:
    """Adds Reflexion to an existing agent: each call runs up to ``max_trials`` trials on the
    instance (lessons carried in the system prompt) and returns the best trajectory.

    The returned trajectory carries the lessons as ``Feedback(source="reflection")``; the full
    per-trial record of the latest call per instance is in ``records``. With a ``ledger``, the
    improvement pairs of every call are written to it.

    Args:
        agent: the agent to wrap, ``agent(prompt, instance) -> Trajectory``.
        reflector_lm: the self-reflection model.
        config: `ReflexionConfig`.
        task: the instance's task, if known (adds rule feedback to a user agent's trajectories).
        ledger: where improvement pairs go (anything with ``add`` or ``add_many``), or None.
        seed: names the reflections' samples (see `Reflector.reflect`).
    """

    def __init__(
        self,
        agent: Agent,
        reflector_lm: LM,
        config: ReflexionConfig | None = None,
        *,
        task: Task | None = None,
        ledger: Any = None,
        seed: int = 0,
    ) -> None:
        self.agent = agent
        self.config = config or ReflexionConfig()
        self.reflector = Reflector(reflector_lm, self.config, seed=seed)
        self.task = task
        self.ledger = ledger
        self.records: dict[str, InstanceRecord] = {}
        self._lock = threading.Lock()

    def __call__(self, prompt: str, instance: Instance) -> Trajectory:
        run = _InstanceRun(instance, self.config, self.task)
        for trial in range(1, self.config.max_trials + 1):
            run.play(self.agent, prompt, trial)
            if run.solved or trial == self.config.max_trials:
                break
            run.reflect(self.reflector, prompt, trial)
        with self._lock:
            self.records[instance.id] = run.record
            if self.ledger is not None:
                add_preferences(self.ledger, run.preferences(prompt))
        best = run.best()
        notes = [Feedback(text=lesson.text, source="reflection", trajectory_id=best.id)
                 for lesson in run.record.lessons]
        return best.model_copy(update={"feedback": [*best.feedback, *notes]})

