"""GridWorld2: label-ordered picking on top of GridWorld1's dynamics; parser, determinism."""

from __future__ import annotations

from agentopt.tasks.loader import load_task
from tests.support.task_checks import (
    check_action_survives_chatter,
    check_any_text_is_handled,
    check_constant_reply_fails,
    check_one_config_gives_different_worlds,
    check_same_instance_same_start,
    check_step_ends_the_episode_by,
    check_stuck_window,
)

TASK = load_task("gridworld2")
ACTIONS = ["{Move up}", "{Move down}", "{Move left}", "{Move right}", "{Pick goal}"]
PARSED = (None, "up", "down", "left", "right", "pick")


def tiny_env():
    """A real instance with its world replaced by a hand-made 3 x 3 grid:

        row 0:  R  g1 .
        row 1:  X  g0 .
        row 2:  .  .  .

    R = robot, X = obstacle; goal_1 lies on the way to goal_0.
    """
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    env.size, env.robot = 3, (0, 0)
    env.obstacles = frozenset({(1, 0)})
    env.goals = [(1, 1), (0, 1)]
    env.picked = set()
    return env


def test_wrong_order_pick_is_refused_and_fires_the_rule():
    env = tiny_env()
    obs, _, _, _, info = env.step("{Move right}")  # onto goal_1
    assert "The next goal to pick is goal_0." in obs
    obs, _, _, _, info = env.step("{Pick goal}")
    assert info["events"] == ["wrong_order"] and not info["valid"] and env.picked == set()
    assert "goal_1 cannot be picked before goal_0" in info["feedback"]
    rule = check_step_ends_the_episode_by(TASK, info, "wrong_order")
    assert "pick up goal_0 first, then goal_1" in rule.render(response="{Pick goal}")


def test_label_order_solves_the_tiny_grid():
    env = tiny_env()
    for text in ("{Move right}", "{Move down}", "{Pick goal}", "{Move up}"):
        _, _, terminated, _, info = env.step(text)
    assert env.picked == {0} and info["score"] == 0.5 and not terminated
    obs, _, terminated, _, info = env.step("{Pick goal}")
    assert terminated and info["success"] and env.picked == {0, 1}


def test_collision_and_out_of_grid_as_in_gridworld1():
    env = tiny_env()
    assert env.step("{Move down}")[4]["events"] == ["collision"]
    assert env.step("{Move up}")[4]["events"] == ["out_of_grid"]
    assert env.robot == (0, 0)


def test_rules_and_stuck_window():
    names = [r.name for r in TASK.rules]
    assert names.index("wrong_order") < names.index("stuck") < names.index("step_limit")
    check_stuck_window(TASK, 16)


def test_always_moving_right_scores_zero():
    check_constant_reply_fails(
        TASK, TASK.instances("validation"), "{Move right}", ended_by=("collision", "out_of_grid")
    )


def test_parser_never_raises():
    check_any_text_is_handled(tiny_env, parsed=PARSED)


def test_action_in_chatter_still_parses():
    check_action_survives_chatter(tiny_env, ACTIONS, "{prefix} {action} {suffix}")


def test_deterministic_and_distinct_from_gridworld1():
    inst = TASK.instances("train")[0]
    check_same_instance_same_start(TASK, inst)
    check_one_config_gives_different_worlds(TASK, "test")
    gw1 = load_task("gridworld1")
    assert TASK.make_env(inst).reset()[0] != gw1.make_env(gw1.instances("train")[0]).reset()[0]
