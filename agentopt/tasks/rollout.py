"""Running agents on task instances.

An *agent* is anything callable as ``agent(prompt, instance) -> Trajectory``, or an async one
(``async def agent(prompt, instance) -> Trajectory``); optimisers only ever see that, so a user's
own agent (a ReAct loop, a DSPy program...) plugs in unchanged. `LMAgent` is the built-in one:
PROMST's agent, one stateless chat call per step.

`run_episode` drives an environment with a *policy* (``policy(messages) -> reply``) and applies
the task's feedback rules as it goes (`arun_episode` for an async policy); `rollout` runs an
agent on many instances concurrently. Whatever calls an agent goes through `rollout` or
`call_agent`, the one place that knows both kinds of agent.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from agentopt.errors import UserError
from agentopt.lm.client import LM
from agentopt.lm.tokens import CHARS_PER_TOKEN
from agentopt.tasks.loader import Task
from agentopt.tasks.rules import Rule, RuleMonitor
from agentopt.types import Completion, Feedback, Instance, Message, Prompt, Step, Trajectory

PolicyReply = str | Completion | tuple[str, int, int]
"""What a policy answers a step with: the reply's text, the `Completion` it came from, or
(text, prompt tokens, completion tokens); only the last two carry tokens to the trajectory."""

Policy = Callable[[list[Message]], PolicyReply]
"""Given the chat so far (system prompt, then the step's user message), the agent's reply."""

AsyncPolicy = Callable[[list[Message]], Awaitable[PolicyReply]]


class SyncAgent(Protocol):
    def __call__(self, prompt: str, instance: Instance) -> Trajectory: ...


class AsyncAgent(Protocol):
    def __call__(self, prompt: str, instance: Instance) -> Awaitable[Trajectory]: ...


Agent = SyncAgent | AsyncAgent


# Once the history overflows, its start moves in steps of up to this many blocks, not one a step.
HISTORY_CUT_BLOCKS = 4

HISTORY_HEADER = (
    "The states of the environment so far, each followed by the action taken in it and the "
    "environment's feedback. The last state is the current one."
)


def _state(number: int, observation: str) -> str:
    return f"State {number}:\n{observation}"


def _history_start(sizes: Sequence[int], budget: int) -> int:
    """The first past step to show, found by replaying the episode's history step by step:
    when the steps shown overflow ``budget``, the start moves on by up to
    ``HISTORY_CUT_BLOCKS``, to no earlier than the oldest step that fits with the newer ones and
    no later than the newest step (unless not even that one fits). So it only moves forward."""
    start = lowest = 0
    shown = fitting = 0  # characters in sizes[start:end] and in sizes[lowest:end]
    for end, size in enumerate(sizes, 1):
        shown += size
        fitting += size
        while lowest < end and fitting > budget:
            fitting -= sizes[lowest]
            lowest += 1
        if shown > budget:
            new_start = max(lowest, min(start + HISTORY_CUT_BLOCKS, end - 1))
            shown -= sum(sizes[start:new_start])
            start = new_start
    return start


def render_turn(history: Sequence[Step], observation: str, history_tokens: int) -> str:
    """The user message for one step, in PROMST's frame: past (state, action, feedback)
    triples, oldest dropped first to fit ``history_tokens``, then the current state, then
    "Now, plan the next step:".

    Laid out so that a step's message starts with the whole of the previous step's message up
    to the end of its state: the current state is written as it will appear in the next step's
    history (``State k:``), under a header that is there from the first step. A model that
    still holds the previous step's prompt (llama.cpp in process, with one episode's steps
    back to back; a hosted prompt cache) does not evaluate that prefix again, so a step costs
    its action, feedback and new state, not its whole history.

    Once the history overflows, the oldest steps are dropped up to ``HISTORY_CUT_BLOCKS`` at a
    time (`_history_start`), so the start stays put for several steps: dropping one a step
    would change the prefix at every step. When only a few long states fit, that leaves as
    little as one past step on the step after a cut."""
    blocks = [
        f"{_state(i + 1, s.observation)}\nAction {i + 1}: {s.raw_output.strip()}\n"
        f"Environment feedback {i + 1}: {s.env_feedback}"
        for i, s in enumerate(history)
    ]
    start = _history_start([len(b) for b in blocks], history_tokens * CHARS_PER_TOKEN)
    shown = [*blocks[start:], _state(len(blocks) + 1, observation)]
    return "\n\n".join([HISTORY_HEADER, *shown, "Now, plan the next step:"])


def rule_feedback(rule: Rule, step: Step) -> Feedback:
    text = rule.render(
        response=step.raw_output,
        action=step.action or "",
        env_feedback=step.env_feedback,
        state=step.observation,
    )
    return Feedback(text=text, source="rule", rule=rule.name)


def _turn(reply: PolicyReply) -> tuple[str, int, int]:
    if isinstance(reply, str):
        return reply, 0, 0
    if isinstance(reply, Completion):
        return reply.text, reply.usage.prompt_tokens, reply.usage.completion_tokens
    text, prompt_tokens, completion_tokens = reply
    return text, prompt_tokens, completion_tokens


Episode = Generator[list[Message], PolicyReply, Trajectory]


def _episode(task: Task, instance: Instance, prompt: str, history_tokens: int) -> Episode:
    """One episode as a generator: yields each step's chat, is sent the policy's reply, returns
    the trajectory. Sync and async policies share it, so they play by the same rules."""
    env = task.make_env(instance)
    observation, info = env.reset()
    monitor = RuleMonitor(task.rules)
    monitor.reset(info["progress"])
    steps: list[Step] = []
    feedback: list[Feedback] = []
    terminated_by: str | None = None
    prompt_tokens = completion_tokens = 0
    for _ in range(env.max_steps):
        messages = [
            Message(role="system", content=prompt),
            Message(role="user", content=env.turn_message(steps, observation, history_tokens)),
        ]
        output, p_tok, c_tok = _turn((yield messages))
        prompt_tokens += p_tok
        completion_tokens += c_tok
        next_obs, reward, terminated, truncated, info = env.step(output)
        step = Step(
            observation=observation,
            raw_output=output,
            action=info["action"],
            valid=info["valid"],
            env_feedback=info["feedback"],
            reward=reward,
            events=info["events"],
            progress=info["progress"],
        )
        steps.append(step)
        observation = next_obs
        if info["success"]:
            break
        rule = monitor.check(events=info["events"], progress=info["progress"], truncated=truncated)
        if rule is not None:
            feedback.append(rule_feedback(rule, step))
            if rule.terminates:
                terminated_by = rule.name
                break
        if terminated or truncated:
            terminated_by = terminated_by or ("terminated" if terminated else "step_limit")
            break
    return Trajectory(
        instance=instance,
        prompt_id=Prompt(text=prompt).id,
        steps=steps,
        score=env.score(),
        success=env.is_success(),
        terminated_by=terminated_by,
        feedback=feedback,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def _advance(episode: Episode, reply: PolicyReply | None) -> list[Message] | Trajectory:
    """The episode's next chat, or its trajectory once it is over. Kept apart from the policy
    call, so a StopIteration escaping a user's policy is not mistaken for the episode's end."""
    try:
        return episode.send(reply)  # type: ignore[arg-type] - None starts the generator
    except StopIteration as end:
        return end.value  # type: ignore[no-any-return]


def run_episode(
    task: Task,
    instance: Instance,
    prompt: str,
    policy: Policy,
    *,
    history_tokens: int = 1000,
) -> Trajectory:
    """Play one episode; the first terminating rule that fires ends it (as in PROMST).

    This is how a user's agent gets a scored trajectory: wrap whatever it does for one step
    (one chat, a tool loop, a whole program) as ``policy(messages) -> reply``."""
    episode = _episode(task, instance, prompt, history_tokens)
    state = _advance(episode, None)
    while not isinstance(state, Trajectory):
        state = _advance(episode, policy(state))
    return state


async def arun_episode(
    task: Task,
    instance: Instance,
    prompt: str,
    policy: AsyncPolicy,
    *,
    history_tokens: int = 1000,
) -> Trajectory:
    """`run_episode` for an async policy (one that awaits ``LM.achat``)."""
    episode = _episode(task, instance, prompt, history_tokens)
    state = _advance(episode, None)
    while not isinstance(state, Trajectory):
        state = _advance(episode, await policy(state))
    return state


def attach_rule_feedback(task: Task, trajectory: Trajectory) -> Trajectory:
    """Classify a failed trajectory from a user's agent by the task's rules, after the fact.

    Needs the steps to carry ``events`` and ``progress`` (as `run_episode` records them).
    """
    if trajectory.success or trajectory.feedback or not trajectory.steps:
        return trajectory
    monitor = RuleMonitor(task.rules)
    monitor.reset(0.0)
    last = len(trajectory.steps) - 1
    for i, step in enumerate(trajectory.steps):
        truncated = i == last and trajectory.terminated_by in (None, "step_limit")
        rule = monitor.check(events=step.events, progress=step.progress, truncated=truncated)
        if rule is not None:
            return trajectory.model_copy(update={"feedback": [rule_feedback(rule, step)]})
    return trajectory


class LMAgent:
    """PROMST's agent: the prompt as the system message, one stateless call per step.

    Args:
        lm: the task model.
        task: the task whose environment it plays.
        temperature, max_tokens: sampling for each step.
        history_tokens: how much of the episode's history each step's message may carry.
        constrain_actions: decode only replies the task's action grammar accepts
            (`agentopt.tasks.actions`); a task without one is refused.
        seed: names this agent's samples. Each step of each episode asks for its own sample
            (seed, instance, step), so at a temperature above 0 two seeds are two independent
            draws, and a resumed run is served the very samples it drew before.
    """

    def __init__(
        self,
        lm: LM,
        task: Task,
        *,
        temperature: float = 0.0,
        max_tokens: int = 192,
        history_tokens: int = 1000,
        constrain_actions: bool = False,
        seed: int = 0,
    ) -> None:
        self.lm = lm
        self.seed = seed
        self.task = task
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.history_tokens = history_tokens
        self.constraint = None
        if constrain_actions:
            if task.actions is None:
                raise UserError(f"task {task.name!r} declares no action grammar to constrain to")
            self.constraint = task.actions.constraint()

    @property
    def max_parallel_episodes(self) -> int | None:
        """Episodes worth playing at once: one for an in-process model, whose prefix reuse needs
        each episode's steps back to back (`EmbeddedBackend.parallel_calls`)."""
        return self.lm.backend.parallel_calls

    def policy(self, instance: Instance) -> Policy:
        """One episode's policy: each call is the episode's next step, and its own sample."""
        step = 0

        def act(messages: list[Message]) -> tuple[str, int, int]:
            nonlocal step
            completion = self.lm.chat(
                messages, sample=f"seed{self.seed}/{instance.id}/step{step}", allow_empty=True,
                temperature=self.temperature, max_tokens=self.max_tokens, constraint=self.constraint,
            )
            step += 1
            return completion.text, completion.usage.prompt_tokens, completion.usage.completion_tokens

        return act

    def __call__(self, prompt: str, instance: Instance) -> Trajectory:
        return run_episode(self.task, instance, prompt, self.policy(instance),
                           history_tokens=self.history_tokens)


def is_async_agent(agent: Agent) -> bool:
    """True for an ``async def`` agent, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(agent) or inspect.iscoroutinefunction(type(agent).__call__)


T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from synchronous code, in a loop of its own: here when this
    thread runs no loop (a worker thread, a script), else on a helper thread (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as helper:
        return helper.submit(asyncio.run, coroutine).result()


def _checked(result: Any, agent: Agent) -> Trajectory:
    if not isinstance(result, Trajectory):
        raise UserError(f"agent {getattr(agent, '__name__', type(agent).__name__)!r} returned "
                        f"{type(result).__name__}, not a Trajectory (build one with run_episode)")
    if not 0.0 <= result.score <= 1.0:  # NaN fails this too
        raise UserError(f"agent {getattr(agent, '__name__', type(agent).__name__)!r} scored "
                        f"{result.instance.id} {result.score!r}: an episode's score is in [0, 1]")
    return result


def call_agent(agent: Agent, prompt: str, instance: Instance) -> Trajectory:
    """One episode of ``agent``, sync or async, from synchronous code."""
    result = agent(prompt, instance)
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        result = run_coroutine(wait())
    return _checked(result, agent)


def rollout(
    agent: Agent,
    prompt: str,
    instances: Sequence[Instance],
    *,
    task: Task | None = None,
    max_concurrency: int = 4,
    on_done: Callable[[Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Run ``agent`` with ``prompt`` on every instance, concurrently; results in input order.

    A sync agent runs on a pool of ``max_concurrency`` threads; an async one runs in one event
    loop with at most ``max_concurrency`` episodes in flight. If the agent fails on an instance
    (an endpoint down after all retries, a spent budget), the other instances still finish and
    are passed to ``on_done`` before the first error is raised, so nothing already paid for is
    lost.
    """

    def finish(trajectory: Trajectory) -> Trajectory:
        if task is not None:
            trajectory = attach_rule_feedback(task, trajectory)
        if on_done is not None:
            on_done(trajectory)
        return trajectory

    limit = getattr(agent, "max_parallel_episodes", None)
    workers = max(1, min(max_concurrency, limit) if limit else max_concurrency)
    outcomes: list[Trajectory | BaseException]
    if is_async_agent(agent):
        outcomes = run_coroutine(_gather(agent, prompt, instances, workers, finish))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(lambda i: finish(call_agent(agent, prompt, i)), inst)
                       for inst in instances]
            outcomes = [f.exception() or f.result() for f in futures]
    first_error = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if first_error is not None:
        raise first_error
    return [o for o in outcomes if isinstance(o, Trajectory)]


async def _gather(
    agent: Agent, prompt: str, instances: Sequence[Instance], workers: int,
    finish: Callable[[Trajectory], Trajectory],
) -> list[Trajectory | BaseException]:
    # LM.achat runs each call on the loop's default executor, whose few threads (cores + 4)
    # would cap the episodes in flight below a larger bound; this loop is ours to size.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=max(workers, min(32, (os.cpu_count() or 1) + 4))))
    slots = asyncio.Semaphore(workers)

    async def one(instance: Instance) -> Trajectory:
        async with slots:
            result = await agent(prompt, instance)  # type: ignore[misc] - an async agent
        return finish(_checked(result, agent))

    return await asyncio.gather(*(one(i) for i in instances), return_exceptions=True)
