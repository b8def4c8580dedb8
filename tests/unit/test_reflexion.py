"""Reflexion with the scripted linewalk world (tests/support/reflexion_toy.py)."""

from __future__ import annotations

import json
import re

import pytest

from agentopt.lm import LM
from agentopt.store.rundir import RunDir
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import LMAgent
from agentopt.types import Instance
from agentopt.verbal.reflexion import (
    Lesson,
    Reflexion,
    ReflexionAgent,
    ReflexionConfig,
    clean_lesson,
    with_memory,
)
from tests.support.reflexion_toy import FIXTURES, FakeLedger, World, plain_agent


@pytest.fixture
def world():
    return World()


@pytest.fixture
def task():
    return load_task("linewalk", [FIXTURES])


def lms(world: World, name: str) -> tuple[LM, LM]:
    actor, reflector, _ = world.register(name)
    return LM(actor, cache=False, journal=False), LM(reflector, cache=False, journal=False)


def run(world, task, name, ledger=None, rundir=None, **config):
    actor_lm, reflector_lm = lms(world, name)
    return Reflexion(**config).run(LMAgent(actor_lm, task), reflector_lm, task.instances("train"),
                                   task=task, ledger=ledger, rundir=rundir, max_concurrency=2)


def test_score_rises_per_trial_and_solved_instances_are_not_rerun(world, task, tmp_path):
    ledger = FakeLedger()
    result = run(world, task, "rx-main", ledger=ledger, rundir=RunDir(tmp_path / "run"), max_trials=4)
    trials = result.trials
    assert [t.trial for t in trials] == [1, 2, 3, 4]
    # goals 4, 7, 2, 6: solved at trials 3, -, 2, 4
    assert [t.attempted for t in trials] == [4, 4, 3, 2]
    assert [t.solved for t in trials] == [0, 1, 2, 3]
    means = [t.mean_score for t in trials]
    assert means == sorted(means) and means[-1] > means[0]
    assert means[0] == 0.0
    assert means[1] == pytest.approx((2 / 4 + 2 / 7 + 1 + 2 / 6) / 4)
    raw = [t.raw_mean_score for t in trials]
    assert raw[0] == 0.0 and raw[1] > 0.0
    assert [t.success_rate for t in trials] == [0.0, 0.25, 0.5, 0.75]
    by_id = {r.instance_id: r for r in result.instances}
    assert by_id["linewalk/train/2"].solved_at == 2 and len(by_id["linewalk/train/2"].trials) == 2
    assert by_id["linewalk/train/0"].solved_at == 3 and len(by_id["linewalk/train/0"].trials) == 3
    assert by_id["linewalk/train/1"].solved_at is None and len(by_id["linewalk/train/1"].trials) == 4
    # the actor ran each instance exactly once per trial it was unsolved in
    starts = [state for state, _ in world.first_prompts]
    assert starts.count("position 0, goal 2, pit -1") == 2
    assert starts.count("position 0, goal 7, pit -1") == 4
    # no reflection after the last trial, none for solved instances
    assert len(world.reflection_inputs) == 4 + 3 + 2
    # run directory holds every episode and the result
    lines = (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 4 + 4 + 3 + 2
    assert json.loads((tmp_path / "run" / "result.json").read_text())["trials"][3]["solved"] == 3


def test_lessons_reach_the_next_trials_context(world, task):
    run(world, task, "rx-context", max_trials=3)
    goal7 = [system for state, system in world.first_prompts if "goal 7" in state]
    assert len(goal7) == 3
    assert "memory" not in goal7[0]
    assert "Your memory from earlier trials" in goal7[1] and "move right 2 times" in goal7[1]
    assert "move right 2 times" in goal7[2] and "move right 4 times" in goal7[2]
    # the reflector saw the rule feedback of the failed trial
    assert all("walked into the pit" in text or "No progress" in text for text in world.reflection_inputs)
    # and, from trial 2 on, the earlier plans
    later = [t for t in world.reflection_inputs if "(trial 2)" in t]
    assert later and all("Plans from past attempts" in t and "move right 2 times" in t for t in later)


@pytest.mark.parametrize("memory_size", [1, 3])
def test_memory_never_exceeds_its_bound(world, task, memory_size):
    result = run(world, task, f"rx-mem{memory_size}", max_trials=6, memory_size=memory_size)
    goal7 = [system for state, system in world.first_prompts if "goal 7" in state]
    assert len(goal7) == 5  # solved at trial 5 (K = 8 >= 7)
    for trial, system in enumerate(goal7, 1):
        kept = re.findall(r"- Trial (\d+):", system)
        assert len(kept) == min(trial - 1, memory_size)
        assert [int(k) for k in kept] == list(range(max(1, trial - memory_size), trial))  # the latest ones
    record = next(r for r in result.instances if r.instance_id == "linewalk/train/1")
    assert [lesson.trial for lesson in record.lessons] == [1, 2, 3, 4]  # all kept in the record
    assert max(t.lessons_in_context for t in record.trials) == min(4, memory_size)


def test_without_rule_feedback_nothing_improves(world, task, monkeypatch):
    for rule in task.rules:
        monkeypatch.setattr(rule, "feedback", "something went wrong")
    result = run(world, task, "rx-blind", max_trials=3)
    assert [t.mean_score for t in result.trials] == [0.0, 0.0, 0.0]


def test_preferences_prefer_the_better_trial(world, task):
    ledger = FakeLedger()
    result = run(world, task, "rx-prefs", ledger=ledger, max_trials=4)
    prefs = list(ledger.rows.values())
    # per instance, every (earlier, later) pair where the later scored higher:
    # goal 2: scores 0, 1 -> 1 pair; goal 4: 0, .5, 1 -> 3;
    # goal 6: 0, 1/3, 2/3, 1 -> 6; goal 7: 0, 2/7, 4/7, 6/7 -> 6
    assert result.preferences == result.preferences_added == len(prefs) == 16
    for p in prefs:
        assert p.source == "reflexion" and p.task == "linewalk"
        assert p.metadata["scores"]["chosen"] > p.metadata["scores"]["rejected"]
        assert p.metadata["trials"]["chosen"] > p.metadata["trials"]["rejected"]
        assert p.chosen.count("{right}") > p.rejected.count("{right}")
        # the context is the memory-free prompt plus the reset observation
        assert p.context.startswith(task.initial_prompt) and "memory" not in p.context
        assert "position 0, goal" in p.context
    # writing the same run again adds nothing (the ledger dedups by id)
    again = run(World(), task, "rx-prefs2", ledger=ledger, max_trials=4)
    assert again.preferences == 16 and again.preferences_added == 0


def test_reflexion_agent_wraps_an_lm_agent(world, task):
    actor_lm, reflector_lm = lms(world, "rx-wrap")
    ledger = FakeLedger()
    agent = ReflexionAgent(LMAgent(actor_lm, task), reflector_lm, ReflexionConfig(max_trials=3), task=task,
                           ledger=ledger)
    solved = agent(task.initial_prompt, task.instance("train", 2))  # goal 2: solved at trial 2
    assert solved.success and solved.score == 1.0
    lessons = [f.text for f in solved.feedback if f.source == "reflection"]
    assert lessons == ["move right 2 times before anything else."]
    unsolved = agent(task.initial_prompt, task.instance("train", 1))  # goal 7: best is trial 3, 4/7
    assert not unsolved.success and unsolved.score == pytest.approx(4 / 7)
    assert agent.records["linewalk/train/1"].best_trial == 3
    assert len(ledger.rows) == 1 + 3


def test_works_with_a_plain_function_agent(world):
    _, reflector_lm = lms(world, "rx-plain")
    instances = [Instance(task="mine", split="train", index=i, seed=i) for i in range(2)]
    result = Reflexion(max_trials=3).run(plain_agent, reflector_lm, instances, prompt="Walk to the goal.")
    assert [t.mean_score for t in result.trials] == [0.0, pytest.approx(2 / 3), 1.0]
    assert result.task == "mine"
    wrapped = ReflexionAgent(plain_agent, reflector_lm, ReflexionConfig(max_trials=3))
    best = wrapped("Walk to the goal.", instances[0])
    assert best.success and best.score == 1.0
    assert [f.source for f in best.feedback] == ["reflection", "reflection"]


def test_memory_rendering_and_lesson_cleanup():
    assert with_memory("Do it.", []) == "Do it."
    text = with_memory("Do it.", [Lesson(trial=1, text="go right"), Lesson(trial=2, text="then stop")])
    assert text.startswith("Do it.\n\nYour memory from earlier trials")
    assert "- Trial 1: go right\n- Trial 2: then stop" in text
    assert clean_lesson("  New plan:  first\n  second ", 100) == "first second"
    long = clean_lesson("word " * 100, 50)
    assert len(long) <= 54 and long.endswith(" ...")


def cli_app():
    import typer

    from agentopt.commands.verbal import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_reports_success_per_trial(tmp_path):
    from typer.testing import CliRunner

    from agentopt.preferences.ledger import PreferenceLedger

    _, _, both = World().register("rx-cli")
    args = ["reflexion", "linewalk", "--trials", "3", "-m", both, "--tasks-dir", str(FIXTURES),
            "--ledger", str(tmp_path / "ledger.sqlite"), "--runs-root", str(tmp_path / "runs")]
    result = CliRunner().invoke(cli_app(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["solved"] for t in data["trials"]] == [0, 1, 2]
    assert [t["success_rate"] for t in data["trials"]] == [0.0, 0.25, 0.5]
    assert data["preferences_added"] == data["preferences"] > 0
    with PreferenceLedger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.count(source="reflexion", task="linewalk") == data["preferences"]
    text = CliRunner().invoke(cli_app(), [*args, "--n", "2"])
    assert text.exit_code == 0, text.output
    assert "Reflexion on linewalk" in text.stdout and "run directory" in text.stdout


def test_cli_user_errors():
    from typer.testing import CliRunner

    from agentopt.errors import UserError

    result = CliRunner().invoke(cli_app(), ["reflexion", "no-such-task", "--no-ledger"])
    assert isinstance(result.exception, UserError)
    result = CliRunner().invoke(cli_app(), ["reflexion", "linewalk", "--tasks-dir", str(FIXTURES),
                                            "--split", "dev", "--no-ledger"])
    assert isinstance(result.exception, UserError) and "unknown split" in str(result.exception)


def test_lessons_from_a_looping_model_are_deduplicated():
    looped = "New plan: Go right. Go right. Go right.\nThen stop. Go right."
    assert clean_lesson(looped, 600) == "Go right. Then stop."


def test_reflexion_in_the_run_harness_reports_pass_at_k_apart_from_its_single_attempt(tmp_path):
    from agentopt.runs.optimize import RunConfig, run_optimization

    _, _, both = World().register("rx-harness")
    config = RunConfig(task="linewalk", method="reflexion", model=both, tasks_dirs=[str(FIXTURES)],
                       concurrency=2, method_config={"max_trials": 4})
    result = run_optimization(config, tmp_path / "run")
    assert result.method == "reflexion" and result.stopped_by == "trials"
    assert result.best_prompt.text == load_task("linewalk", [FIXTURES]).initial_prompt
    # Trial 1 walks into the pit everywhere; lessons then solve the short walks. That is a best
    # of 4 picked by the environment: pass@4, never the single-attempt test score.
    assert result.pass_at_k is not None and result.attempts == 4
    assert result.test.score.mean == result.human_test.score.mean == 0.0 < result.pass_at_k.score.mean
    assert result.vs_human is not None and result.vs_human.mean == 0.0
    assert result.rounds[0]["first_trial"] < result.rounds[0]["pass@4"]
    # Everything it spent: the retries on the test split are in the total, not in the search.
    assert result.total_calls > result.lm_calls
    tagged = [json.loads(line) for line in (tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()]
    assert {t.get("tag") for t in tagged} == {None, "reflexion"}

    # Resumed after the end, every evaluation is replayed from the journal: the same result.
    again = run_optimization(config, tmp_path / "run", resume=True)
    assert again.model_dump(exclude={"run_dir"}) == result.model_dump(exclude={"run_dir"})


def test_bench_accepts_reflexion():
    from agentopt.optimizers import METHOD_NAMES, method_class

    assert "reflexion" in METHOD_NAMES and method_class("reflexion") is Reflexion


def test_bench_shows_reflexion_as_pass_at_k_and_pairs_only_its_first_trial(tmp_path):
    from agentopt.runs.bench import run_bench
    from agentopt.runs.optimize import RunConfig

    _, _, both = World().register("rx-bench")
    base = RunConfig(task="linewalk", model=both, tasks_dirs=[str(FIXTURES)], concurrency=2,
                     method_config={"reflexion": {"max_trials": 4}})
    results = run_bench(base, ["linewalk"], ["reflexion"], tmp_path / "bench")
    reflexion = next(r for r in results if r.method == "reflexion")
    human = next(r for r in results if r.method == "human")
    assert reflexion.test.scores == human.test.scores  # its single attempt is the plain agent's
    row = next(line for line in (tmp_path / "bench" / "results.md").read_text().splitlines()
               if line.startswith("| reflexion"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].startswith("+0.000")  # vs human: the same single attempts
    assert cells[4] == f"{reflexion.pass_at_k.score.mean:.3f} (4)" and reflexion.pass_at_k.score.mean > 0
    assert float(cells[6]) > float(cells[5])  # all calls, test retries included, exceed the search's
