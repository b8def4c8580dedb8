"""What every task of the suite promises, checked on all of them at once.

Each task's own file keeps its hand-checked dynamics; the checks here are the same for every
task, so they live in one place and cover a new task as soon as its folder exists.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentopt.tasks.check import check_task
from agentopt.tasks.loader import list_tasks, load_task
from agentopt.tasks.rollout import run_episode
from tests.support.task_checks import SPLITS, all_instances

PROMST_MULTI_STEP = ["blocksworld", "boxlift", "boxnet1", "boxnet2", "gridworld1", "gridworld2",
                     "logistics", "warehouse"]
MULTI_STEP = [*PROMST_MULTI_STEP, "number_line"]  # number_line: sized for small models
SINGLE_TURN = ["boolean_expressions", "date_arithmetic", "logical_deduction", "multistep_arithmetic",
               "navigate", "object_counting", "word_sorting"]
SUITE = sorted(MULTI_STEP + SINGLE_TURN)


def test_the_suite_is_the_eight_promst_tasks_number_line_and_seven_reasoning_tasks():
    tasks = list_tasks()
    assert sorted(t.name for t in tasks) == SUITE
    assert sorted(t.name for t in tasks if t.single_turn) == SINGLE_TURN


def oracle_policy(task, instance):
    """Plays the task's oracle on a shadow copy of the episode's environment."""
    shadow = task.make_env(instance)
    shadow.reset()

    def policy(messages):
        text = task.oracle(shadow)
        shadow.step(text)
        return text, 0, 0

    return policy


@pytest.mark.parametrize("name", SUITE)
def test_the_oracle_solves_every_instance_without_breaking_a_rule(name):
    task = load_task(name)
    for inst in all_instances(task):
        traj = run_episode(task, inst, "prompt", oracle_policy(task, inst))
        assert traj.success and traj.score == 1.0, (inst.id, traj.terminated_by)
        assert traj.terminated_by is None and traj.feedback == [], (inst.id, traj.feedback)
        assert all(step.valid and not step.events for step in traj.steps), inst.id
        assert traj.n_steps <= task.make_env(inst).max_steps


@pytest.mark.parametrize("name", SUITE)
def test_splits_are_disjoint_and_as_declared(name):
    task = load_task(name)
    sizes = {split: len(task.instances(split)) for split in SPLITS}
    assert sizes == {split: getattr(task.manifest.splits, split) for split in SPLITS}
    if task.single_turn:
        # No question in two splits (nor twice in one): what the agent sees identifies it.
        questions = [task.make_env(inst).reset()[0] for inst in all_instances(task)]
        assert len(set(questions)) == len(questions)
        assert sum(sizes.values()) >= 400  # hundreds of instances, as in BIG-Bench Hard
    else:
        seeds = [inst.seed for inst in all_instances(task)]
        assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize("name", SUITE)
def test_one_instance_always_starts_the_same(name):
    task = load_task(name)
    inst = task.instances("validation")[0]
    first, second = task.make_env(inst), task.make_env(inst)
    assert first.reset()[0] == second.reset()[0] == first.render()


@pytest.mark.parametrize("name", SUITE)
@settings(max_examples=60, deadline=None)
@given(text=st.text())
def test_any_reply_is_handled_without_raising(name, text):
    task = load_task(name)
    env = task.make_env(task.instances("train")[0])
    env.reset()
    env.parse_action(text)
    env.step(text)


@pytest.mark.parametrize("name", SUITE)
def test_the_task_checker_passes_every_bundled_task(name):
    """``agentopt tasks check`` holds the bundled suite to the promises it asks of a user's task."""
    results = {r.check: r for r in check_task(load_task(name))}
    assert [c for c, r in results.items() if r.ok is False] == []
    assert results["oracle"].ok is True
    expected_grammar = None if name in SINGLE_TURN else True
    assert results["grammar"].ok is expected_grammar, results["grammar"]
