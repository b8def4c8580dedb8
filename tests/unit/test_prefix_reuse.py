"""In-process models play episodes back to back, so llama.cpp reuses each episode's prefix."""

from __future__ import annotations

import threading
import time

import pytest

from agentopt.lm import LM, register_script
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import LMAgent, rollout
from agentopt.types import Instance, Trajectory


class CountingAgent:
    def __init__(self, limit: int | None) -> None:
        self.max_parallel_episodes = limit
        self.active = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, prompt: str, instance: Instance) -> Trajectory:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        return Trajectory(instance=instance)


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (None, 4)])
def test_rollout_honours_the_agents_episode_limit(limit, expected):
    task = load_task("gridworld1")
    agent = CountingAgent(limit)
    rollout(agent, "p", task.instances("train"), max_concurrency=4)
    assert agent.most == expected


def test_only_in_process_models_ask_for_one_episode_at_a_time():
    task = load_task("gridworld1")
    assert LMAgent(LM("local/smollm2-135m"), task).max_parallel_episodes == 1
    assert LMAgent(LM(register_script("any", lambda m, p: "x")), task).max_parallel_episodes is None


@pytest.mark.integration
def test_the_embedded_model_reports_the_prefix_it_did_not_evaluate_again():
    lm = LM("local/smollm2-135m", cache=False, journal=False)
    system = {"role": "system", "content": "You are a robot on a grid. " * 20}
    first = lm.chat([system, {"role": "user", "content": "Where are you?"}], max_tokens=4)
    second = lm.chat([system, {"role": "user", "content": "Where are the goals?"}], max_tokens=4)
    assert first.usage.cached_prompt_tokens < second.usage.cached_prompt_tokens
    # The whole system message is shared, the differing question is not.
    assert 100 < second.usage.cached_prompt_tokens < second.usage.prompt_tokens
