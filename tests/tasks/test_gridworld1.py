"""GridWorld1: hand-checked dynamics, rules, a bad policy, parser robustness, determinism."""

from __future__ import annotations

from agentopt.tasks.loader import load_task
from tests.support.task_checks import (
    check_action_survives_chatter,
    check_any_text_is_handled,
    check_constant_reply_fails,
    check_one_config_gives_different_worlds,
    check_reseeding_changes_the_start,
    check_same_instance_same_start,
    check_step_ends_the_episode_by,
    check_stuck_window,
)

TASK = load_task("gridworld1")
ACTIONS = ["{Move up}", "{Move down}", "{Move left}", "{Move right}", "{Pick goal}"]
PARSED = (None, "up", "down", "left", "right", "pick")


def tiny_env():
    """A real instance with its world replaced by a hand-made 3 x 3 grid:

        row 0:  R  .  g0
        row 1:  X  g1 .
        row 2:  .  .  .

    R = robot, X = obstacle, g0/g1 = goal_0/goal_1.
    """
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    env.size, env.robot = 3, (0, 0)
    env.obstacles = frozenset({(1, 0)})
    env.goals = [(0, 2), (1, 1)]
    env.picked = set()
    return env


# --- dynamics ------------------------------------------------------------------------------
def test_moves_and_picks_any_order():
    env = tiny_env()
    _, _, _, _, info = env.step("{Move right}")
    assert env.robot == (0, 1) and info["valid"] and info["events"] == []
    _, _, _, _, info = env.step("I go {Move down}")
    assert env.robot == (1, 1) and "goal_1 is here" in info["feedback"]
    obs, reward, terminated, _, info = env.step("{Pick goal}")  # goal_1 before goal_0 is fine
    assert env.picked == {1} and reward == 0.5 and info["progress"] == 1.0 and not terminated
    assert "goal_1" in obs.split("Goals already picked:")[1]
    for text in ("{Move up}", "{Move right}", "{Pick goal}"):
        obs, _, terminated, _, info = env.step(text)
    assert terminated and info["success"] and info["score"] == 1.0


def test_collision_leaves_robot_in_place_and_fires_the_rule():
    env = tiny_env()
    obs, _, _, _, info = env.step("{Move down}")
    assert info["events"] == ["collision"] and not info["valid"]
    assert env.robot == (0, 0) and "collision" in info["feedback"]
    assert "The robot is at row 0, column 0." in obs
    rule = check_step_ends_the_episode_by(TASK, info, "collision")
    assert "{Move down}" in rule.render(response="{Move down}", action="{Move down}")


def test_out_of_grid():
    env = tiny_env()
    _, _, _, _, info = env.step("{Move up}")
    assert info["events"] == ["out_of_grid"] and env.robot == (0, 0)
    _, _, _, _, info = env.step("{Move left}")
    assert info["events"] == ["out_of_grid"]


def test_pick_without_goal_is_recorded_but_not_fatal():
    env = tiny_env()
    _, _, terminated, _, info = env.step("{Pick goal}")
    assert info["events"] == ["invalid_action"] and not info["valid"] and not terminated
    assert env.picked == set()
    rule = next(r for r in TASK.rules if r.on == "event:invalid_action")
    assert not rule.terminates


def test_render_shows_neighbours_goals_and_obstacles():
    env = tiny_env()
    text = env.render()
    assert "The robot is at row 0, column 0." in text
    assert "goal_0 at row 0, column 2; goal_1 at row 1, column 1" in text
    assert "Obstacles at: row 1, column 0." in text
    assert "up is outside the grid; down (row 1, column 0) is an obstacle" in text
    assert "right (row 0, column 1) is empty" in text


def test_step_limit_and_stuck_window():
    sizes = {inst.config["size"]: TASK.make_env(inst).max_steps for inst in TASK.instances("test")}
    assert sizes == {4: 30, 5: 30, 6: 30, 7: 50}
    check_stuck_window(TASK, 16)


def test_wrong_format_feedback_shows_the_actions():
    rule = next(r for r in TASK.rules if r.name == "wrong_format")
    text = rule.render(response="go north")
    assert "go north" in text and "{Move up}" in text and "{Pick goal}" in text


# --- a bad policy -------------------------------------------------------------------------
def test_picking_forever_gets_stuck_with_zero_score():
    check_constant_reply_fails(
        TASK, TASK.instances("validation"), "{Pick goal}", ended_by="stuck", n_steps=16
    )


# --- parser --------------------------------------------------------------------------------
def test_parser_tolerates_case_spacing_and_takes_the_last_action():
    env = tiny_env()
    assert env.parse_action("{  move   UP }") == "up"
    assert env.parse_action('Answer: {"Pick goal"}') == "pick"
    assert env.parse_action("{Move up} would leave the grid, so {Move right}") == "right"
    assert env.parse_action("Move up") is None
    assert env.parse_action("{Move north}") is None


def test_parser_never_raises():
    check_any_text_is_handled(tiny_env, parsed=PARSED)


def test_action_in_chatter_still_parses():
    check_action_survives_chatter(tiny_env, ACTIONS, "{prefix} {action} {suffix}")


# --- determinism ---------------------------------------------------------------------------
def test_same_instance_same_world_different_seeds_differ():
    first, second = check_same_instance_same_start(TASK, TASK.instances("train")[0])
    assert first.reset()[0] == second.render()
    check_one_config_gives_different_worlds(TASK, "test")
    check_reseeding_changes_the_start(first)
