"""A run knows which task it plays, and what it is handed from a user's code is checked:
a task object is used as given (never registered behind the user's back), a resume refuses a
task that changed since the run began, and an agent, a make_agent or an optimiser that breaks
its contract is one clear error, before anything is written where that can be known."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import agentopt
from agentopt.errors import UserError
from agentopt.lm import register_script
from agentopt.optimizers.registry import register_optimizer, unregister_optimizer
from agentopt.types import Trajectory

ROWS = [{"input": f"{a} + {b}", "target": str(a + b)} for a in range(8) for b in range(8)]
SPLITS = {"train": 3, "validation": 3, "test": 4}
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def adder(messages, params) -> str:
    if messages[0].role == "system" and "Add" in messages[0].content:
        a, b = (int(x) for x in messages[-1].content.split(" + "))
        return f"Answer: {a + b}"
    return "Answer: 0"


MODEL = register_script("identity-adder", adder)


def sums(prompt: str = "Reply.", rows=ROWS, name: str = "identity_sums"):
    return agentopt.dataset_task(name, rows, prompt=prompt, metric="numeric", splits=SPLITS)


def test_a_task_object_is_used_as_given_and_not_registered(tmp_path):
    task = sums()
    result = agentopt.optimize(task, method="human", model=MODEL, run_dir=tmp_path / "run", concurrency=1)
    assert result.task == "identity_sums" and result.test.score.n == 4
    with pytest.raises(UserError, match="unknown task 'identity_sums'"):
        agentopt.load_task("identity_sums")
    # A built-in's name is not taken over by a user's object of that name.
    mine = sums(name="gridworld1")
    agentopt.optimize(mine, method="human", model=MODEL, run_dir=tmp_path / "mine", concurrency=1)
    assert agentopt.load_task("gridworld1").single_turn is False


def test_a_resume_refuses_a_task_that_changed_since_the_run_began(tmp_path):
    run = tmp_path / "run"
    agentopt.optimize(sums(), method="human", model=MODEL, run_dir=run, concurrency=1)
    # The same task, rebuilt: the run resumes (and, being finished, pays nothing).
    again = agentopt.optimize(sums(), method="human", model=MODEL, run_dir=run, resume=True)
    assert again.test.score.n == 4
    for changed in (sums(prompt="Add the numbers."), sums(rows=list(reversed(ROWS)))):
        with pytest.raises(UserError, match="another version of the task 'identity_sums'"):
            agentopt.optimize(changed, method="human", model=MODEL, run_dir=run, resume=True)
    # Resuming by name, with nothing registered, finds no task; registered, it resumes.
    with pytest.raises(UserError, match="unknown task"):
        agentopt.optimize("identity_sums", run_dir=run, resume=True)
    agentopt.register_task(sums())
    try:
        assert agentopt.optimize("identity_sums", run_dir=run, resume=True).test.score.n == 4
    finally:
        agentopt.tasks.registry.unregister_task("identity_sums")


def test_a_task_folder_edited_between_a_crash_and_resume_is_refused(tmp_path, capsys):
    from tests.support.cli import one_error_line, run_main

    folder = tmp_path / "linewalk"
    shutil.copytree(FIXTURES / "linewalk", folder)
    args = ["optimize", str(folder), "--method", "human", "-m", "scripted/echo",
            "--run-dir", str(tmp_path / "run")]
    code, _, err = run_main(capsys, *args)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "task.json").read_text())["task"] == str(folder)
    (folder / "prompt.md").write_text("A different human prompt.\n")
    agentopt.tasks.loader._CACHE.clear()  # as a new process would read the folder
    code, _, err = run_main(capsys, *args, "--resume")
    assert "another version of the task" in one_error_line(code, err)


def test_scores_outside_zero_to_one_from_a_users_agent_are_refused(tmp_path):
    for bad in (5.0, float("nan"), -0.5):
        def agent(prompt, instance, bad=bad):
            return Trajectory(instance=instance, prompt_id="p", score=bad)

        with pytest.raises(UserError, match=r"scored identity_sums/\w+/0 .*in \[0, 1\]"):
            agentopt.optimize(sums(), method="human", agent=agent, model=MODEL,
                              run_dir=tmp_path / f"run{bad}", concurrency=1)


def test_a_falsy_agent_is_still_the_users_agent_and_make_agent_must_give_one(tmp_path):
    class Tools(list):  # empty, so falsy: must not be swapped for the built-in agent
        def __call__(self, prompt, instance):
            return Trajectory(instance=instance, prompt_id="p", score=1.0)

    result = agentopt.optimize(sums(), method="human", agent=Tools(), model=MODEL,
                               run_dir=tmp_path / "falsy", concurrency=1)
    assert result.test.score.mean == 1.0
    with pytest.raises(UserError, match="make_agent returned NoneType"):
        agentopt.optimize(sums(), method="human", make_agent=lambda lm, task: None, model=MODEL,
                          run_dir=tmp_path / "none", concurrency=1)
    with pytest.raises(UserError, match="agent must be callable"):
        agentopt.optimize(sums(), method="human", agent="x", model=MODEL, run_dir=tmp_path / "str")  # type: ignore[arg-type]
    assert not (tmp_path / "str").exists()


class Forgetful:
    name = "forgetful"

    def __init__(self, **settings):
        pass

    def optimize(self, ctx):
        ctx.score(agentopt.optimizers.base.Prompt(text=ctx.task.initial_prompt))  # searches, then forgets


class Misfiled(Forgetful):
    name = "misfiled"

    def optimize(self, ctx):
        human = agentopt.optimizers.base.Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        return ctx.finish("someone_else", human, "no_search", rounds=[])


@pytest.fixture
def odd_optimizers():
    register_optimizer("forgetful", Forgetful)
    register_optimizer("misfiled", Misfiled)
    yield
    unregister_optimizer("forgetful")
    unregister_optimizer("misfiled")


def test_an_optimiser_that_does_not_end_with_finish_is_named(tmp_path, odd_optimizers):
    with pytest.raises(UserError, match="'forgetful' returned NoneType: .*return ctx.finish"):
        agentopt.optimize(sums(), method="forgetful", model=MODEL, run_dir=tmp_path / "a", concurrency=1)
    with pytest.raises(UserError, match="'misfiled' reported its result as method 'someone_else'"):
        agentopt.optimize(sums(), method="misfiled", model=MODEL, run_dir=tmp_path / "b", concurrency=1)


def test_what_the_task_needs_is_checked_before_the_run_folder_is_made(tmp_path):
    empty_validation = agentopt.dataset_task("identity_sums", ROWS, prompt="Reply.",
                                             splits={"train": 3, "validation": 0, "test": 3})
    with pytest.raises(UserError, match="no validation instances"):
        agentopt.optimize(empty_validation, method="human", model=MODEL, run_dir=tmp_path / "a")
    bad_metric = agentopt.dataset_task("identity_sums", ROWS, prompt="Reply.", metric="exact", splits=SPLITS)
    with pytest.raises(UserError, match="unknown metric 'exact'"):
        agentopt.optimize(bad_metric, method="human", model=MODEL, run_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bench_plays_task_objects_as_given_and_refuses_two_of_one_name(tmp_path):
    results = agentopt.bench([sums(), "multistep_arithmetic"], ["human"], tmp_path / "bench", model=MODEL,
                             n_train=2, n_validation=2, n_test=2, concurrency=1)
    assert sorted(r.task for r in results) == ["identity_sums", "multistep_arithmetic"]
    with pytest.raises(UserError, match="unknown task 'identity_sums'"):
        agentopt.load_task("identity_sums")
    with pytest.raises(UserError, match="a task object named 'identity_sums' and a task object named"):
        agentopt.bench([sums(), sums(prompt="Add.")], ["human"], tmp_path / "two", model=MODEL)
    # The same bench again reads its finished cells back; a changed task object is refused.
    again = agentopt.bench([sums(), "multistep_arithmetic"], ["human"], tmp_path / "bench", model=MODEL,
                           n_train=2, n_validation=2, n_test=2, concurrency=1)
    assert [r.test.score.mean for r in again] == [r.test.score.mean for r in results]
    with pytest.raises(UserError, match="another version of the task 'identity_sums'.*--out"):
        agentopt.bench([sums(prompt="Add.")], ["human"], tmp_path / "bench", model=MODEL,
                       n_train=2, n_validation=2, n_test=2, concurrency=1)


def test_an_empty_test_split_is_reported_as_the_test_split_with_nothing_scored(tmp_path):
    no_test = agentopt.dataset_task("identity_sums", ROWS, prompt="Reply.",
                                    splits={"train": 3, "validation": 3, "test": 0})
    result = agentopt.optimize(no_test, method="human", model=MODEL, run_dir=tmp_path / "run", concurrency=1)
    assert result.test.split == "test" and result.test.score.n == 0
    assert result.validation.split == "validation" and result.validation.score.n == 3
