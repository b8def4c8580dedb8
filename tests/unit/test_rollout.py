"""Rollout engine and feedback rules, on a tiny fixture task with the scripted model."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from agentopt.errors import BudgetExceeded, UserError
from agentopt.lm import LM, Budget, register_script
from agentopt.tasks.evaluate import evaluate
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import (
    LMAgent,
    _history_start,
    attach_rule_feedback,
    render_turn,
    rollout,
    run_episode,
)
from agentopt.tasks.rules import Rule, RuleMonitor
from agentopt.types import Message, Step

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tasks"


@pytest.fixture
def task():
    return load_task("linewalk", [FIXTURES])


def constant_policy(text: str):
    return lambda messages: (text, 1, 1)


def test_right_policy_solves_and_records_every_step(task):
    inst = task.instances("train")[0]
    traj = run_episode(task, inst, "prompt", constant_policy("I go {right}"))
    env = task.make_env(inst)
    env.reset()
    assert traj.success and traj.score == 1.0
    assert traj.n_steps == env.goal  # one step per cell, stops on success
    assert all(s.valid and s.action == "right" for s in traj.steps)
    assert traj.feedback == [] and traj.terminated_by is None


def test_event_rule_ends_episode_with_its_feedback(task):
    traj = run_episode(task, task.instances("train")[0], "p", constant_policy("{left}"))
    assert traj.n_steps == 1
    assert traj.terminated_by == "fell"
    assert traj.feedback[0].rule == "fell"
    assert "pit at left" in traj.feedback[0].text


def test_wrong_format_rule_quotes_the_response(task):
    traj = run_episode(task, task.instances("train")[0], "p", constant_policy("hmm, north?"))
    assert traj.terminated_by == "wrong_format"
    assert "hmm, north?" in traj.feedback[0].text and "{left}" in traj.feedback[0].text
    assert traj.score == 0.0 and not traj.steps[0].valid


def test_stuck_rule_fires_after_window(task):
    moves = iter(["{right}", "{left}", "{right}", "{left}", "{right}"] * 3)
    traj = run_episode(task, task.instances("train")[1], "p", lambda m: (next(moves), 0, 0))
    # best position stays 1 after step 1: steps 2, 3, 4 make no progress -> stuck on step 4
    assert traj.terminated_by == "stuck"
    assert traj.n_steps == 4


def test_rule_monitor_step_limit_and_order():
    rules = [Rule(name="a", on="event:x", feedback="A"), Rule(name="lim", on="step_limit", feedback="L")]
    mon = RuleMonitor(rules)
    mon.reset(0)
    assert mon.check(events=[], progress=1, truncated=False) is None
    assert mon.check(events=["x"], progress=2, truncated=True).name == "a"
    assert mon.check(events=[], progress=3, truncated=True).name == "lim"


def test_rule_rejects_unknown_trigger():
    with pytest.raises(ValueError):
        Rule(name="x", on="sometimes", feedback="")


def test_rule_render_keeps_unknown_placeholders():
    assert Rule(name="r", on="stuck", feedback="{response} {nope}").render(response="R") == "R {nope}"


def test_history_is_truncated_oldest_first():
    steps = [
        Step(observation=f"obs{i}" + "x" * 400, raw_output=f"act{i}", action=None, valid=True)
        for i in range(10)
    ]
    text = render_turn(steps, "NOW", history_tokens=300)
    assert "act9" in text and "act0" not in text
    assert text.endswith("Now, plan the next step:") and "NOW" in text


def extends(before: str, after: str) -> bool:
    """True when ``after`` starts with ``before`` up to the end of its current state: the
    prefix a model that holds ``before`` need not evaluate again."""
    return after.startswith(before.rsplit("\n\nNow, plan the next step:", 1)[0] + "\n")


def test_history_is_cut_in_chunks_so_the_message_prefix_holds_for_several_steps():
    steps = [
        Step(observation=f"obs{i}" + "x" * 400, raw_output=f"act{i}", action=None, valid=True)
        for i in range(20)
    ]
    messages = [render_turn(steps[:n], steps[n].observation, history_tokens=600) for n in range(20)]
    firsts = [m.split("State ", 1)[1].split(":", 1)[0] for m in messages]  # first step shown
    assert len(set(firsts)) < len(firsts) / 2  # the start moves in jumps, not every step
    # Between jumps every message starts with the previous one, up to the end of its state.
    for before, after, a, b in zip(messages, messages[1:], firsts, firsts[1:], strict=False):
        if a == b:
            assert extends(before, after)
    assert all(len(m) <= 600 * 4 + 600 for m in messages)  # still within the budget


def test_when_two_long_states_fit_the_prefix_holds_every_other_step():
    """Two states of ~400 tokens in a 1,000-token history (boxnet1): dropping one a step would
    change the prefix at every step; dropping two at a cut keeps it on every second step."""
    steps = [Step(observation=f"obs{i}" + "x" * 1800, raw_output=f"act{i}", action=None, valid=True)
             for i in range(12)]
    messages = [render_turn(steps[:n], steps[n].observation, history_tokens=1000) for n in range(12)]
    extended = [extends(before, after) for before, after in zip(messages, messages[1:], strict=False)]
    assert sum(extended) >= len(extended) // 2
    assert all("act" in m for m in messages[1:])  # a past step is always shown


def test_with_states_of_every_size_the_history_start_only_moves_forward():
    rng = random.Random(7)
    steps = [Step(observation="o" * rng.randint(50, 1500), raw_output=f"act{i}", action=None,
                  valid=True) for i in range(60)]
    messages = [render_turn(steps[:n], steps[n].observation, history_tokens=300) for n in range(60)]
    firsts = [int(m.split("State ", 1)[1].split(":", 1)[0]) for m in messages]
    assert firsts == sorted(firsts) and len(set(firsts)) > 5  # it moves, and never back
    for n, (before, after) in enumerate(zip(messages, messages[1:], strict=False), 1):
        if firsts[n] == firsts[n - 1]:
            assert extends(before, after)


def test_the_history_shown_fits_and_keeps_the_newest_step_that_fits():
    rng = random.Random(3)
    sizes = [rng.randint(50, 1500) for _ in range(80)]
    for end in range(1, len(sizes) + 1):
        start = _history_start(sizes[:end], 1200)
        assert sum(sizes[start:end]) <= 1200
        assert start < end or sizes[end - 1] > 1200


def test_the_current_state_is_written_as_the_next_step_shows_it():
    first = Step(observation="position 0", raw_output="{right}", action="right", valid=True,
                 env_feedback="moved")
    now = render_turn([], "position 0", 1000)
    then = render_turn([first], "position 1", 1000)
    assert now.endswith("State 1:\nposition 0\n\nNow, plan the next step:")
    assert then.startswith(now.rsplit("\n\nNow", 1)[0] + "\nAction 1: {right}")
    assert "State 2:\nposition 1\n\nNow, plan the next step:" in then


def test_lm_agent_with_scripted_model_sees_prompt_and_state(task):
    seen: list[list[Message]] = []

    def script(messages, params):
        seen.append(messages)
        return "{right}"

    lm = LM(register_script("walker", script), cache=False, journal=False)
    traj = LMAgent(lm, task)("SYSTEM PROMPT", task.instances("test")[0])
    assert traj.success
    assert seen[0][0].content == "SYSTEM PROMPT"
    assert "position 0" in seen[0][1].content
    # the second call's history shows the first action, and the state after it (not before)
    assert "Action 1: {right}" in seen[1][1].content
    assert "State 2:\nposition 1," in seen[1][1].content
    assert traj.prompt_tokens > 0


def test_rollout_is_ordered_and_deterministic(task):
    lm = LM(register_script("walker2", lambda m, p: "{right}"), cache=False, journal=False)
    insts = task.instances("train")
    a = rollout(LMAgent(lm, task), "p", insts, max_concurrency=3)
    b = rollout(LMAgent(lm, task), "p", insts, max_concurrency=1)
    assert [t.instance.id for t in a] == [i.id for i in insts]
    assert [t.model_dump() for t in a] == [t.model_dump() for t in b]


def test_rollout_keeps_finished_work_then_raises(task):
    lm = LM(
        register_script("walker3", lambda m, p: "{right}"),
        cache=False,
        journal=False,
        budget=Budget(max_calls=5),
        max_concurrency=1,
    )
    done = []
    with pytest.raises(BudgetExceeded):
        rollout(LMAgent(lm, task), "p", task.instances("train"), max_concurrency=1, on_done=done.append)
    assert done and all(t.success for t in done)


def test_user_agent_callable_gets_rule_feedback(task):
    def my_agent(prompt, instance):
        return run_episode(task, instance, prompt, constant_policy("{left}")).model_copy(
            update={"feedback": []}
        )

    trajs = rollout(my_agent, "p", task.instances("train")[:2], task=task)
    assert all(t.feedback and t.feedback[0].rule == "fell" for t in trajs)
    assert attach_rule_feedback(task, trajs[0]) is trajs[0]


def test_evaluate_summary(task):
    lm = LM(register_script("walker4", lambda m, p: "{right}"), cache=False, journal=False)
    ev, trajs = evaluate(LMAgent(lm, task), task, "p", task.instances("validation"))
    assert ev.score.mean == 1.0 and ev.success_rate == 1.0 and ev.score.n == 2
    assert set(ev.scores) == {t.instance.id for t in trajs}


def test_splits_are_fixed_and_disjoint(task):
    train = task.instances("train")
    assert train == task.instances("train")
    seeds = {i.seed for split in ("train", "validation", "test") for i in task.instances(split)}
    assert len(seeds) == 4 + 2 + 3


def test_unknown_task_is_a_user_error(task):
    with pytest.raises(UserError, match="unknown task"):
        load_task("no-such-task", [FIXTURES])


def test_tasks_path_env_var(monkeypatch):
    monkeypatch.setenv("AGENTOPT_TASKS_PATH", str(FIXTURES))
    assert load_task("LineWalk").name == "linewalk"


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "agentopt.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_run_writes_run_dir(tmp_path):
    out = _cli(
        "run",
        "linewalk",
        "-m",
        "scripted/echo",
        "--tasks-dir",
        str(FIXTURES),
        "--split",
        "train",
        "--runs-root",
        str(tmp_path),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # scripted/echo repeats the user message, which never contains a bare action at the end
    assert result["task"] == "linewalk" and result["score"]["n"] == 4
    run_dir = Path(result["run_dir"])
    lines = (run_dir / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert (run_dir / "summary.json").is_file() and (run_dir / "config.json").is_file()


def test_cli_tasks_json_and_bad_input(tmp_path):
    out = _cli("tasks", "--tasks-dir", str(FIXTURES), "--json")
    assert out.returncode == 0
    assert "linewalk" in [t["name"] for t in json.loads(out.stdout)]
    bad = _cli("run", "nope", "--tasks-dir", str(FIXTURES), "--runs-root", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    bad_split = _cli("run", "linewalk", "--split", "dev", "--tasks-dir", str(FIXTURES))
    assert bad_split.returncode == 2 and "unknown split" in bad_split.stderr


def test_terminating_rule_wins_over_recording_rule():
    rules = [
        Rule(name="note", on="event:x", feedback="N", terminates=False),
        Rule(name="stuck", on="stuck", steps=1, feedback="S"),
    ]
    mon = RuleMonitor(rules)
    mon.reset(0)
    assert mon.check(events=["x"], progress=1, truncated=False).name == "note"
    assert mon.check(events=["x"], progress=1, truncated=False).name == "stuck"
