"""Action grammars: regex -> GBNF, constrained decoding on the embedded model, endpoint arguments."""

from __future__ import annotations

import json
import re

import pytest

from agentopt.errors import UserError
from agentopt.lm import LM, register_script
from agentopt.lm.backends.remote import _structured_output
from agentopt.lm.grammar import regex_to_gbnf
from agentopt.tasks.actions import ActionGrammar
from agentopt.tasks.loader import list_tasks, load_task
from agentopt.tasks.rollout import LMAgent

GRID = r"\{(Move (up|down|left|right)|Pick goal)\}"


def test_a_regex_becomes_a_grammar_llama_cpp_accepts():
    from llama_cpp import LlamaGrammar

    gbnf = regex_to_gbnf(GRID)
    assert gbnf == 'root ::= ("{" (("Move " ("up" | "down" | "left" | "right")) | "Pick goal") "}")\n'
    for pattern in (r"[a-c]x?\d{2,3}", r"(ab)+[^\]]*\s", r"^(yes|no)$"):
        LlamaGrammar.from_string(regex_to_gbnf(pattern), verbose=False)
    with pytest.raises(UserError, match="no grammar equivalent"):
        regex_to_gbnf(r"(a)\1")


def test_every_declared_grammar_compiles_and_accepts_the_oracles_actions():
    """The grammar must admit every action the task's own oracle takes, or constraining would
    make a solvable instance unsolvable."""
    from llama_cpp import LlamaGrammar
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    declared = [t for t in list_tasks() if t.manifest.actions is not None]
    assert {t.name for t in declared} >= {"gridworld1", "gridworld2", "blocksworld", "logistics", "boxnet1"}
    for task in declared:
        grammar = task.manifest.actions
        gbnf = regex_to_gbnf(grammar.regex) if grammar.regex else json_schema_to_gbnf(
            json.dumps(grammar.json_schema))
        LlamaGrammar.from_string(gbnf, verbose=False)
        env = task.make_env(task.instances("train")[0])
        env.reset()
        for _ in range(env.max_steps):
            text = task.oracle(env)
            if grammar.regex:
                action = env.format_action(env.parse_action(text))
                assert re.fullmatch(grammar.regex, action), (task.name, action)
            else:
                assert isinstance(json.loads(text), dict), (task.name, text)
            _, _, terminated, truncated, _ = env.step(text)
            if terminated or truncated:
                break


def test_grammar_table_needs_exactly_one_form():
    with pytest.raises(ValueError, match="exactly one"):
        ActionGrammar()
    with pytest.raises(ValueError, match="does not compile"):
        ActionGrammar(regex="(unclosed")


def test_the_agent_sends_the_constraint_and_refuses_tasks_without_one():
    seen = []

    def script(messages, params):
        seen.append(params.get("constraint"))
        return "{Move up}"

    lm = LM(register_script("constraint-spy", script))
    task = load_task("gridworld1")
    LMAgent(lm, task, constrain_actions=True)("prompt", task.instances("train")[0])
    assert seen and all(c == {"regex": task.manifest.actions.regex} for c in seen)
    seen.clear()
    LMAgent(lm, task)("prompt", task.instances("train")[0])
    assert seen and all(c is None for c in seen)
    with pytest.raises(UserError, match="declares no action grammar"):
        LMAgent(lm, load_task("navigate"), constrain_actions=True)


def test_endpoints_get_structured_output_arguments():
    schema = {"type": "object"}
    assert _structured_output({"json_schema": schema}, self_hosted=False) == {
        "response_format": {"type": "json_schema", "json_schema": {"name": "action", "schema": schema}}}
    extra = _structured_output({"regex": GRID}, self_hosted=True)["extra_body"]
    assert extra["guided_regex"] == GRID and extra["grammar"].startswith("root ::=")
    with pytest.raises(UserError, match="cannot constrain replies to a regex"):
        _structured_output({"regex": GRID}, self_hosted=False)


@pytest.mark.integration
def test_the_embedded_model_decodes_only_well_formed_actions():
    """SmolLM2 rarely writes a gridworld action on its own; constrained, every reply is one."""
    task = load_task("gridworld1")
    lm = LM("local/smollm2-135m", cache=False, journal=False)
    agent = LMAgent(lm, task, constrain_actions=True, max_tokens=16)
    trajectory = agent(task.initial_prompt, task.instances("train")[0])
    assert trajectory.steps
    replies = [s.raw_output for s in trajectory.steps]
    assert all(re.fullmatch(GRID, reply) for reply in replies), replies
    assert "wrong_format" not in {e for s in trajectory.steps for e in s.events}


def test_a_regex_with_inline_flags_is_refused():
    """(?i) would make the llama.cpp grammar and a server's guided_regex accept different text."""
    with pytest.raises(UserError, match="inline flags"):
        regex_to_gbnf(r"(?i)\{move up\}")
