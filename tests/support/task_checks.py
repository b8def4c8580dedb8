"""Checks that several task test files make in the same way, with the task's own values.

Each ``tests/tasks/test_<task>.py`` keeps its hand-checked dynamics and calls these for the
promises that differ between tasks only in names and numbers: seeded starts, a bad policy
failing, a parser that finds the action in chatter and never raises, a rule firing on an event.
Checks that hold for every task with no per-task values at all are in
``tests/tasks/test_suite_contract.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentopt.tasks.env import TextEnv
from agentopt.tasks.loader import Task
from agentopt.tasks.rollout import run_episode
from agentopt.tasks.rules import Rule, RuleMonitor
from agentopt.types import Instance, Trajectory

SPLITS = ("train", "validation", "test")

# Braces would let the chatter open or close a JSON object of its own around the orders.
NO_BRACES = st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=80)


def all_instances(task: Task) -> list[Instance]:
    return [inst for split in SPLITS for inst in task.instances(split)]


def act(env: TextEnv, orders: dict[str, str]) -> tuple[str, float, bool, bool, dict[str, Any]]:
    """One step of a JSON-order task (BoxNet, BoxLift, Warehouse): agent -> order."""
    return env.step(json.dumps(orders))


# --- starts ----------------------------------------------------------------------------------
def starts(task: Task, instances: Iterable[Instance]) -> list[str]:
    """The first observation of a fresh environment for each instance."""
    return [task.make_env(inst).reset()[0] for inst in instances]


def check_same_instance_same_start(task: Task, inst: Instance) -> tuple[TextEnv, TextEnv]:
    first, second = task.make_env(inst), task.make_env(inst)
    assert first.reset()[0] == second.reset()[0]
    return first, second


def check_reseeding_changes_the_start(env: TextEnv) -> None:
    assert env.reset(seed=1)[0] != env.reset(seed=2)[0]


def check_one_config_gives_different_worlds(task: Task, split: str) -> None:
    """The first two instances of ``split`` that share a config start apart: their seeds alone
    tell them apart. (Tasks cycle through their families, so the pair's distance varies.)"""
    first_with: dict[str, Instance] = {}
    for inst in task.instances(split):
        key = json.dumps(inst.config, sort_keys=True)
        if key in first_with:
            a, b = starts(task, [first_with[key], inst])
            assert a != b, (first_with[key].id, inst.id)
            return
        first_with[key] = inst
    raise AssertionError(f"no two {split} instances of {task.name} share a config")


def check_seeded_starts(task: Task, inst: Instance, *, same_config_split: str = "train") -> None:
    """The start depends on the instance's seed and nothing else."""
    first, _ = check_same_instance_same_start(task, inst)
    check_reseeding_changes_the_start(first)
    check_one_config_gives_different_worlds(task, same_config_split)


# --- bad policies ----------------------------------------------------------------------------
def check_constant_reply_fails(
    task: Task,
    instances: Iterable[Instance],
    reply: str,
    *,
    ended_by: str | Collection[str],
    n_steps: int | None = None,
    fired: list[str] | None = None,
) -> None:
    """Sending ``reply`` at every step scores nothing and is ended by one of ``ended_by``;
    ``n_steps`` and ``fired`` (the rules that gave feedback, in order) are checked when given."""
    ends = {ended_by} if isinstance(ended_by, str) else set(ended_by)
    for inst in instances:
        traj: Trajectory = run_episode(task, inst, "prompt", lambda messages: (reply, 0, 0))
        assert traj.score == 0.0, (inst.id, reply)
        assert traj.terminated_by in ends, (inst.id, reply, traj.terminated_by)
        if n_steps is not None:
            assert traj.n_steps == n_steps, (inst.id, reply)
        if fired is not None:
            assert [f.rule for f in traj.feedback] == fired, (inst.id, reply)


# --- rules -----------------------------------------------------------------------------------
def rule_fired(task: Task, info: dict[str, Any]) -> Rule | None:
    """The rule a fresh monitor fires on one step's outcome."""
    monitor = RuleMonitor(task.rules)
    monitor.reset(0.0)
    return monitor.check(events=info["events"], progress=info["progress"], truncated=False)


def check_step_ends_the_episode_by(task: Task, info: dict[str, Any], name: str) -> Rule:
    rule = rule_fired(task, info)
    assert rule is not None and rule.name == name and rule.terminates
    return rule


def check_refused(env: TextEnv, reasons: Iterable[tuple[str, str]], event: str) -> dict[str, Any]:
    """Each (text, reason): the step records ``event`` and its feedback gives the reason.
    Returns the last step's info."""
    info: dict[str, Any] = {}
    for text, reason in reasons:
        _, _, _, _, info = env.step(text)
        assert info["events"] == [event] and reason in info["feedback"], text
    return info


def check_stuck_window(task: Task, steps: int) -> None:
    # The rule's window (task.toml) and the generator's (the module) must not drift apart.
    stuck = next(r for r in task.rules if r.on == "stuck")
    assert stuck.steps == task.module.STUCK_WINDOW == steps


# --- parsers ---------------------------------------------------------------------------------
def check_parses_to(env: TextEnv, want: str, texts: Iterable[str]) -> None:
    for text in texts:
        assert env.format_action(env.parse_action(text)) == want, text


def check_parses_to_nothing(env: TextEnv, texts: Iterable[str]) -> None:
    for text in texts:
        assert env.parse_action(text) is None, text


def check_json_orders_survive_chatter(make_env: Callable[[], TextEnv], orders: dict[str, str]) -> None:
    """Orders written as JSON parse the same with any brace-free text around them."""

    @settings(max_examples=100, deadline=None)
    @given(NO_BRACES, NO_BRACES)
    def check(before: str, after: str) -> None:
        env = make_env()
        expected = env.format_action(env.parse_action(json.dumps(orders)))
        assert env.format_action(env.parse_action(before + json.dumps(orders) + after)) == expected

    check()


def check_action_survives_chatter(
    make_env: Callable[[], TextEnv], actions: Sequence[str], template: str
) -> None:
    """Each action, put in chatter by ``template`` (``{prefix}``, ``{action}``, ``{suffix}``),
    parses back to itself unless the text after it holds an action of its own."""

    @settings(max_examples=150, deadline=None)
    @given(st.text(), st.sampled_from(actions), st.text())
    def check(prefix: str, action: str, suffix: str) -> None:
        env = make_env()
        assume(env.parse_action(suffix) is None)
        text = template.format(prefix=prefix, action=action, suffix=suffix)
        assert env.format_action(env.parse_action(text)) == action

    check()


def check_any_text_is_handled(make_env: Callable[[], TextEnv], parsed: Collection[Any] | None = None) -> None:
    """Parsing and stepping never raise; with ``parsed``, the parse is always one of those."""

    @settings(max_examples=150, deadline=None)
    @given(st.text())
    def check(text: str) -> None:
        env = make_env()
        action = env.parse_action(text)
        if parsed is not None:
            assert action in parsed
        env.step(text)

    check()
