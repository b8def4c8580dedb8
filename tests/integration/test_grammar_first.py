"""Greedy constrained decoding that probes the likeliest tokens first chooses what llama.cpp's
full-vocabulary grammar check chooses (SmolLM2-135M, in process)."""

from __future__ import annotations

import json

import pytest

from agentopt.lm.backends import grammar_first
from agentopt.lm.backends.embedded import _grammar
from agentopt.lm.local_models import resolve
from agentopt.tasks.loader import load_task

pytestmark = pytest.mark.integration

PROMPTS = [
    "You are at (0, 0) and the goal is at (2, 1). Which way do you move?",
    "Agent[0.5, 0.5] holds box_red; target_red is in square[0.5, 1.5]. Plan the agents' actions.",
    "Write a short poem about the sea.",
]


@pytest.fixture(scope="module")
def models():
    from llama_cpp import Llama

    path = str(resolve("local/smollm2-135m")[0])
    settings = {"model_path": path, "n_ctx": 1024, "n_threads": 2, "verbose": False}
    plain, first = Llama(**settings), grammar_first.llama_class()(**settings)
    yield plain, first
    plain.close()
    first.close()


def constraints() -> list[dict]:
    return [{"regex": load_task("gridworld1").manifest.actions.regex},
            {"json_schema": load_task("boxnet1").manifest.actions.json_schema}]


def reply(llm, prompt: str, constraint: dict, **settings) -> str:
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": prompt}], max_tokens=24, seed=7,
        grammar=_grammar(json.dumps(constraint, sort_keys=True)), **settings)
    return out["choices"][0]["message"]["content"]


@pytest.mark.parametrize("candidates", [grammar_first.CANDIDATES, 1])
def test_greedy_replies_are_those_of_the_full_grammar_check(models, monkeypatch, candidates):
    """With one candidate most steps fall back to the full check; either way the text is the same."""
    plain, first = models
    narrowed = []
    original = grammar_first.GrammarFirstSampler._narrow

    def counting(self, candidates_array):
        narrowed.append(original(self, candidates_array))
        return narrowed[-1]

    monkeypatch.setattr(grammar_first, "CANDIDATES", candidates)
    monkeypatch.setattr(grammar_first.GrammarFirstSampler, "_narrow", counting)
    for constraint in constraints():
        for prompt in PROMPTS:
            assert reply(first, prompt, constraint, temperature=0.0) == reply(
                plain, prompt, constraint, temperature=0.0), (constraint, prompt)
    assert any(narrowed), "the probe never chose a token"
    if candidates == 1:
        assert not all(narrowed), "no step fell back to the full check"


def test_sampling_at_a_temperature_keeps_llama_cpps_sampler(models, monkeypatch):
    plain, first = models
    narrowed = []
    monkeypatch.setattr(grammar_first.GrammarFirstSampler, "_narrow",
                        lambda self, c: narrowed.append(1) or False)
    constraint = constraints()[0]
    assert reply(first, PROMPTS[0], constraint, temperature=0.8) == reply(
        plain, PROMPTS[0], constraint, temperature=0.8)
    assert not narrowed


def test_internals_it_cannot_use_leave_llama_cpps_sampler(models, monkeypatch):
    """A llama-cpp-python whose internals differ gets its own, slower, sampler: same reply."""
    plain, first = models

    def missing(*args):
        raise AttributeError("custom_samplers")

    monkeypatch.setattr(grammar_first, "_greedy_chain", missing)
    constraint = constraints()[1]
    assert reply(first, PROMPTS[1], constraint, temperature=0.0) == reply(
        plain, PROMPTS[1], constraint, temperature=0.0)
