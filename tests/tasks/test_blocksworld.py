"""BlocksWorld: hand-checked dynamics and preconditions, a bad policy, parser, determinism."""

from __future__ import annotations

from agentopt.tasks.loader import load_task
from tests.support.task_checks import (
    all_instances,
    check_action_survives_chatter,
    check_any_text_is_handled,
    check_constant_reply_fails,
    check_refused,
    check_same_instance_same_start,
    check_step_ends_the_episode_by,
    check_stuck_window,
    starts,
)

TASK = load_task("blocksworld")
MOD = TASK.module


def tiny_env():
    """A real instance with its world replaced by: red on blue, blue and orange on the table,
    hand empty; goal: orange on red, red on the table."""
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    env.state = MOD.make_state({"red": "blue", "blue": None, "orange": None})
    env.goals = [("on", "orange", "red"), ("ontable", "red")]
    return env


# --- dynamics ------------------------------------------------------------------------------
def test_render_in_planbench_words():
    text = tiny_env().render()
    assert text == (
        "Currently, the red block is clear, the orange block is clear, the hand is empty, the red "
        "block is on top of the blue block, the blue block is on the table and the orange block "
        "is on the table.\nMy goal is to have that the orange block is on top of the red block "
        "and the red block is on the table."
    )


def test_a_plan_by_hand():
    env = tiny_env()
    _, _, _, _, info = env.step("First, unstack the red block from on top of the blue block.")
    assert info["valid"] and env.state == MOD.make_state({"blue": None, "orange": None}, "red")
    assert "the hand is holding the red block" in env.render()
    _, _, _, _, info = env.step("put down the red block")
    assert info["score"] == 0.5 and info["progress"] == 1.0
    env.step("pick up the orange block")
    _, _, terminated, _, info = env.step("stack the orange block on top of the red block")
    assert terminated and info["success"] and info["score"] == 1.0
    assert env.state == MOD.make_state({"red": None, "blue": None, "orange": "red"})


def test_inapplicable_unstack_changes_nothing_and_fires_the_rule():
    env = tiny_env()
    before = env.state
    _, _, _, _, info = env.step("unstack the blue block from on top of the red block")
    assert info["events"] == ["invalid_action"] and not info["valid"] and env.state == before
    assert "the blue block is not clear, the red block is on top of it" in info["feedback"]
    check_step_ends_the_episode_by(TASK, info, "invalid_action")


def test_each_precondition_is_explained():
    env = tiny_env()
    cases = {
        "pick up the red block": "not on the table",
        "pick up the blue block": "not clear",
        "put down the orange block": "not holding the orange block",
        "stack the red block on top of the orange block": "not holding the red block",
        "unstack the orange block from on top of the blue block": "it is on the table",
        "pick up the green block": "there is no green block",
    }
    check_refused(env, cases.items(), "invalid_action")
    env.step("pick up the orange block")
    _, _, _, _, info = env.step("pick up the red block")
    assert "the hand is not empty, it is holding the orange block" in info["feedback"]
    _, _, _, _, info = env.step("stack the orange block on top of the blue block")
    assert "the blue block is not clear" in info["feedback"]


# --- generation and a bad policy ---------------------------------------------------------
def test_instances_start_at_zero_and_match_their_config():
    for inst in all_instances(TASK):
        env = TASK.make_env(inst)
        _, info = env.reset()
        assert info["score"] == 0.0 and len(env.goals) == inst.config["goals"]
        assert len(env.state[0]) == inst.config["blocks"] and env.state[1] is None
        assert env.max_steps == 20


def test_putting_down_an_unheld_block_scores_zero():
    check_constant_reply_fails(
        TASK, TASK.instances("validation"), "put down the red block", ended_by="invalid_action"
    )


def test_stuck_window_matches_generation():
    check_stuck_window(TASK, 15)


# --- parser --------------------------------------------------------------------------------
def test_parser_phrasings_and_last_phrase_wins():
    env = tiny_env()
    assert env.parse_action("Unstack  the Blue block from on top of the ORANGE block") == (
        "unstack",
        "blue",
        "orange",
    )
    assert env.parse_action("unstack the red block from the blue block") == ("unstack", "red", "blue")
    assert env.parse_action("stack the red block onto the blue block") == ("stack", "red", "blue")
    assert env.parse_action("pick-up the red block") == ("pick-up", "red")
    assert env.parse_action("I pick up the red block, then put down the red block") == ("put-down", "red")
    assert env.parse_action("pick up the block") is None
    assert env.parse_action("stack the red block") is None


ACTIONS = [
    "pick up the red block",
    "put down the orange block",
    "stack the blue block on top of the red block",
    "unstack the red block from on top of the blue block",
]


def test_parser_never_raises():
    check_any_text_is_handled(tiny_env)


def test_action_in_chatter_still_parses():
    check_action_survives_chatter(tiny_env, ACTIONS, "{prefix}\n{action}. {suffix}")


# --- determinism ---------------------------------------------------------------------------
def test_same_instance_same_world_different_seeds_differ():
    check_same_instance_same_start(TASK, TASK.instances("train")[0])
    assert len(set(starts(TASK, TASK.instances("test")))) == 16
