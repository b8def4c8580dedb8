"""Agents users already have: a tool-using (ReAct-style) agent and async agents, optimised and
evaluated through the package's entry points.

The agent below is a user's code, not the package's: it asks the model with a calculator tool
offered, runs the calls the model makes, and answers. The scripted model only reaches for the
calculator when the system prompt tells it to; without it, it guesses (the first number of the
expression). Asked to write a prompt (a chat with no tools), it proposes one that says so. So
the human prompt scores low and any optimiser that tries the proposal finds a better prompt.
"""

from __future__ import annotations

import ast
import asyncio
import json
import operator
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

import agentopt
from agentopt.errors import BudgetExceeded, UserError
from agentopt.lm import LM, Budget, CallJournal, register_script
from agentopt.tasks.evaluate import evaluate
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import arun_episode, call_agent, is_async_agent, rollout, run_episode
from agentopt.types import Completion, Message
from tests.support import InFlight

TOOLS = [{"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression of integers.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}]
BETTER = "Use the calculator tool on the whole expression, then end with a line 'Answer: N'."
APE = {"n_candidates": 2, "n_induced": 1, "rounds": 2, "top_k": 1}
SIZES = {"n_train": 4, "n_validation": 4, "n_test": 6}


# --- the user's code --------------------------------------------------------------------------
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_PARSING = threading.Lock()


def calculate(expression: str) -> int:
    def value(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"not arithmetic: {expression}")

    # CPython 3.11's ast.parse is not safe from several threads at once (gh-106905: "AST
    # constructor recursion depth mismatch"), and the agents here run concurrently.
    with _PARSING:
        tree = ast.parse(expression, mode="eval")
    return value(tree.body)


def run_tools(reply: Completion) -> list[Message]:
    """The assistant's turn and one tool message per call it made."""
    out = [Message(role="assistant", content=reply.text, tool_calls=reply.tool_calls)]
    for call in reply.tool_calls or []:
        args = json.loads(call["function"]["arguments"])
        out.append(Message(role="tool", name=call["function"]["name"], tool_call_id=call["id"],
                           content=str(calculate(args["expression"]))))
    return out


class CalculatorAgent:
    """A ReAct loop: ask, run the tools the model calls, ask again, until it answers."""

    max_turns = 4

    def __init__(self, lm: LM, task) -> None:
        self.lm, self.task = lm, task

    def answer(self, messages: list[Message]) -> str:
        chat = list(messages)
        for _ in range(self.max_turns):
            reply = self.lm.chat(chat, tools=TOOLS)
            if not reply.tool_calls:
                return reply.text
            chat += run_tools(reply)
        return ""

    def __call__(self, prompt, instance):
        return run_episode(self.task, instance, prompt, self.answer)


class AsyncCalculatorAgent(CalculatorAgent):
    """The same loop for asyncio code: ``await lm.achat``."""

    async def answer(self, messages: list[Message]) -> str:  # type: ignore[override]
        chat = list(messages)
        for _ in range(self.max_turns):
            reply = await self.lm.achat(chat, tools=TOOLS)
            if not reply.tool_calls:
                return reply.text
            chat += run_tools(reply)
        return ""

    async def __call__(self, prompt, instance):  # type: ignore[override]
        return await arun_episode(self.task, instance, prompt, self.answer)


# --- the scripted model -----------------------------------------------------------------------
def calculator_model(delay_s: float = 0.0):
    """The model: the agent's side when tools are offered, the prompt writer's otherwise."""
    calls = []
    lock = threading.Lock()

    def model(messages: list[Message], params: dict):
        with lock:
            calls.append(messages)
        time.sleep(delay_s)
        if "tools" not in params:
            return BETTER
        expression = messages[1].content.rstrip("= ").strip()
        if "calculator" not in messages[0].content.lower():
            return f"Answer: {re.findall(r'[0-9]+', expression)[0]}"
        if messages[-1].role == "tool":
            return f"Answer: {messages[-1].content}"
        arguments = json.dumps({"expression": expression})
        return {"content": None, "tool_calls": [
            {"id": "call_0", "type": "function", "function": {"name": "calculator", "arguments": arguments}}]}

    return register_script(f"calc-{uuid.uuid4().hex[:8]}", model), calls


@pytest.fixture(scope="module")
def task():
    return load_task("multistep_arithmetic")


def run(tmp_path: Path, model: str, **kwargs):
    return agentopt.optimize("multistep_arithmetic", method="ape", model=model, run_dir=tmp_path,
                             method_config=APE, seed=1, **SIZES, **kwargs)


def journal(run_dir: Path):
    return CallJournal(run_dir / "calls.jsonl").read()


# --- end to end -------------------------------------------------------------------------------
def test_a_tool_using_agent_is_optimised_and_a_killed_run_resumes_without_paying_again(tmp_path):
    model, calls = calculator_model()
    result = run(tmp_path / "full", model, make_agent=CalculatorAgent)
    assert result.best_prompt.text == BETTER
    assert result.test.score.mean == 1.0 > result.human_test.score.mean
    # The agent's calls went through the run's LM: counted, and journalled with their tool calls.
    records = journal(tmp_path / "full")
    asked = [r for r in records if r.tool_calls]
    assert asked and all(r.tool_calls[0]["function"]["name"] == "calculator" for r in asked)
    assert result.total_calls == len(records)
    episodes = (tmp_path / "full" / "trajectories.jsonl").read_text().splitlines()
    assert any(json.loads(line)["score"] == 1.0 for line in episodes)

    # Killed part way: the journal cut in the middle (a torn last line), no result.
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "full", killed)
    (killed / "result.json").unlink()
    lines = (killed / "events.jsonl").read_text().splitlines(keepends=True)
    kept = lines[: len(lines) // 2]
    (killed / "events.jsonl").write_text("".join(kept) + lines[len(kept)][:25])
    paid, on_file = len(calls), len(journal(killed))
    resumed = run(killed, model, make_agent=CalculatorAgent, resume=True)
    assert resumed.model_dump(exclude={"run_dir"}) == result.model_dump(exclude={"run_dir"})
    replayed = journal(killed)[on_file:]
    assert len(calls) == paid, "the resumed run called the model again"
    assert replayed and all(r.cached for r in replayed)
    assert any(r.tool_calls for r in replayed)  # tool calls replayed from the cache


def test_an_async_agent_optimises_to_the_same_result_as_the_sync_one(tmp_path):
    model, _ = calculator_model()
    sync = run(tmp_path / "sync", model, make_agent=CalculatorAgent, concurrency=3)
    asynchronous = run(tmp_path / "async", model, make_agent=AsyncCalculatorAgent, concurrency=3)
    assert asynchronous.model_dump(exclude={"run_dir"}) == sync.model_dump(exclude={"run_dir"})
    for name in ("calls.jsonl", "trajectories.jsonl"):
        assert len((tmp_path / "async" / name).read_text().splitlines()) == len(
            (tmp_path / "sync" / name).read_text().splitlines())


def test_an_agent_on_its_own_lm_keeps_its_calls_in_its_own_journal(tmp_path):
    model, _ = calculator_model()
    task = load_task("multistep_arithmetic")
    own = CallJournal(tmp_path / "agent-calls.jsonl")
    agent = AsyncCalculatorAgent(LM(model, cache=tmp_path / "agent-cache.sqlite", journal=own), task)
    result = run(tmp_path / "run", model, agent=agent)
    assert result.test.score.mean == 1.0 > result.human_test.score.mean
    assert any(r.tool_calls for r in own.read())
    # The run's own model only wrote prompts: no tools were offered to it.
    assert not any(r.tool_calls for r in journal(tmp_path / "run"))
    with pytest.raises(UserError, match="not both"):
        run(tmp_path / "both", model, agent=agent, make_agent=CalculatorAgent)


# --- rollout and evaluate ---------------------------------------------------------------------
def test_evaluate_scores_an_async_agent_as_it_scores_the_sync_one(task):
    model, _ = calculator_model()
    lm = LM(model, cache=False, journal=False)
    instances = task.instances("validation", 5)
    assert is_async_agent(AsyncCalculatorAgent(lm, task)) and not is_async_agent(CalculatorAgent(lm, task))
    scores = {}
    for prompt in (BETTER, task.initial_prompt):
        sync, _ = evaluate(CalculatorAgent(lm, task), task, prompt, instances)
        asynchronous, trajectories = evaluate(AsyncCalculatorAgent(lm, task), task, prompt, instances)
        assert asynchronous == sync
        assert [t.instance.id for t in trajectories] == [i.id for i in instances]
        scores[prompt] = asynchronous.score.mean
    assert scores[BETTER] == 1.0 > scores[task.initial_prompt]


def test_async_agents_run_concurrently_but_never_above_the_bound(task):
    slow = InFlight(lambda messages, params: (time.sleep(0.03), "Answer: 1")[1])
    lm = LM(register_script(f"slow-{uuid.uuid4().hex[:8]}", slow), max_concurrency=8, cache=False,
            journal=False)

    async def agent(prompt, instance):
        return await arun_episode(task, instance, prompt, lambda messages: lm.achat(messages))

    trajectories = rollout(agent, "p", task.instances("train", 9), max_concurrency=3)
    assert len(trajectories) == 9
    assert 1 < slow.peak <= 3, f"peak {slow.peak} episodes in flight, bound 3"


def test_an_async_callable_object_and_a_sync_wrapper_around_one_both_work(task):
    model, _ = calculator_model()
    agent = AsyncCalculatorAgent(LM(model, cache=False, journal=False), task)
    instance = task.instances("train", 1)[0]
    assert call_agent(agent, BETTER, instance).score == 1.0
    # A sync agent that hands back the coroutine of an async one (a wrapper, a decorator).
    assert rollout(lambda p, i: agent(p, i), BETTER, [instance])[0].score == 1.0

    from agentopt.verbal.reflexion import ReflexionAgent, ReflexionConfig

    reflexion = ReflexionAgent(agent, LM(model, cache=False, journal=False), ReflexionConfig(max_trials=1))
    assert rollout(reflexion, BETTER, [instance])[0].score == 1.0


def test_an_async_agent_runs_from_code_that_is_already_in_an_event_loop(task):
    model, _ = calculator_model()
    agent = AsyncCalculatorAgent(LM(model, cache=False, journal=False), task)

    async def notebook_cell():
        return rollout(agent, BETTER, task.instances("train", 3))

    assert [t.score for t in asyncio.run(notebook_cell())] == [1.0, 1.0, 1.0]


def test_an_async_agent_that_fails_keeps_the_finished_episodes_then_raises(task):
    model, _ = calculator_model()
    lm = LM(model, cache=False, journal=False, budget=Budget(max_calls=5), max_concurrency=1)
    done = []
    with pytest.raises(BudgetExceeded):
        rollout(AsyncCalculatorAgent(lm, task), BETTER, task.instances("train", 6), max_concurrency=1,
                on_done=done.append)
    assert len(done) == 2 and all(t.score == 1.0 for t in done)  # two calls per episode


def test_an_agent_that_returns_no_trajectory_is_told_so(task):
    async def chatty(prompt, instance):
        return "the answer is 4"

    with pytest.raises(UserError, match="'chatty' returned str, not a Trajectory"):
        rollout(chatty, "p", task.instances("train", 1))
    with pytest.raises(UserError, match="returned dict"):
        rollout(lambda p, i: {}, "p", task.instances("train", 1))
