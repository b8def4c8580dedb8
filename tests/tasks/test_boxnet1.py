"""BoxNet1: hand-checked dynamics, a bad policy, parser robustness, determinism."""

from __future__ import annotations

from agentopt.tasks.loader import load_task
from tests.support.task_checks import (
    act,
    check_constant_reply_fails,
    check_json_orders_survive_chatter,
    check_parses_to,
    check_parses_to_nothing,
    check_seeded_starts,
)

TASK = load_task("boxnet1")


def small_env():
    """A 2x2 grid (instance 0 uses the first config) with a hand-placed layout."""
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    assert (env.rows, env.cols) == (2, 2)
    env.cells = {(0, 0): ["box_red", "box_blue"], (0, 1): ["target_red"], (1, 0): [], (1, 1): ["target_blue"]}
    env.initial_boxes = 2
    return env


def test_move_then_match_shows_the_state_after_each_step():
    env = small_env()
    obs, reward, terminated, truncated, info = act(
        env, {"Agent[0.5, 0.5]": "move(box_red, square[0.5, 1.5])"}
    )
    assert env.cells[(0, 0)] == ["box_blue"] and env.cells[(0, 1)] == ["target_red", "box_red"]
    assert info["valid"] and info["events"] == [] and info["score"] == 0.0 and info["progress"] == 0.0
    assert "move(box_red, target_red)" in obs.splitlines()[1]  # the new state, not the old one

    obs, reward, terminated, truncated, info = act(env, {"Agent[0.5, 1.5]": "move(box_red, target_red)"})
    assert env.cells[(0, 1)] == []
    assert info["score"] == 0.5 and info["progress"] == 1.0 and reward == 0.5
    assert not terminated and not truncated
    assert (
        obs.splitlines()[1]
        == "Agent[0.5, 1.5]: I am in square[0.5, 1.5], I can observe [nothing], I can do [nothing]"
    )


def test_two_agents_in_one_step_and_success():
    env = small_env()
    act(env, {"Agent[0.5, 0.5]": "move(box_blue, square[1.5, 0.5])"})
    act(
        env,
        {
            "Agent[0.5, 0.5]": "move(box_red, square[0.5, 1.5])",
            "Agent[1.5, 0.5]": "move(box_blue, square[1.5, 1.5])",
        },
    )
    _, _, terminated, _, info = act(
        env,
        {"Agent[0.5, 1.5]": "move(box_red, target_red)", "Agent[1.5, 1.5]": "move(box_blue, target_blue)"},
    )
    assert terminated and info["success"] and env.score() == 1.0


def test_illegal_sub_actions_are_skipped_the_rest_applies():
    env = small_env()
    _, _, terminated, _, info = act(
        env,
        {
            "Agent[0.5, 0.5]": "move(box_red, square[1.5, 1.5])",  # diagonal: not a neighbour
            "Agent[0.5,0.5]": "move(box_blue, square[1.5, 0.5])",  # same agent again: refused
            "Agent[1.5, 0.5]": "move(box_red, square[0.5, 0.5])",  # no such box in its square
            "Agent[5.5, 0.5]": "move(box_red, square[4.5, 0.5])",  # no such agent
            "Agent[0.5, 1.5]": "move(box_red, target_blue)",  # no box there
            "Agent[1.5, 1.5]": "dance",
        },
    )
    assert info["events"] == ["invalid_action"] and not info["valid"] and not terminated
    assert env.cells == {
        (0, 0): ["box_red", "box_blue"],
        (0, 1): ["target_red"],
        (1, 0): [],
        (1, 1): ["target_blue"],
    }
    assert "Agent[5.5, 0.5] is not an agent" in info["feedback"]
    assert "more than one action" in info["feedback"]
    assert info["action"].count('"Agent[0.5, 0.5]"') == 2  # the record keeps the repeat

    _, _, _, _, info = act(
        env,
        {
            "Agent[9.5, 9.5]": "move(box_red, square[0.5, 1.5])",
            "Agent[0.5, 0.5]": "move(box_red, square[0.5, 1.5])",
        },
    )
    assert info["events"] == ["invalid_action"] and "box_red" in env.cells[(0, 1)]


def test_matching_needs_same_colour_target_in_the_square():
    env = small_env()
    _, _, _, _, info = act(env, {"Agent[0.5, 0.5]": "move(box_red, target_red)"})
    assert info["events"] == ["invalid_action"] and env.boxes_left() == 2


def test_render_lists_each_agents_items_and_doable_actions():
    env = small_env()
    first = env.render().splitlines()[0]
    assert first.startswith("Agent[0.5, 0.5]: I am in square[0.5, 0.5], I can observe [box_red, box_blue]")
    for action in (
        "move(box_red, square[1.5, 0.5])",
        "move(box_red, square[0.5, 1.5])",
        "move(box_blue, square[0.5, 1.5])",
    ):
        assert action in first
    assert "square[-0.5" not in first and len(env.render().splitlines()) == 4


def test_wrong_format_is_an_event_and_changes_nothing():
    env = small_env()
    _, _, _, _, info = env.step("I would move the red box to the right.")
    assert info["events"] == ["wrong_format"] and info["action"] is None and env.boxes_left() == 2


def test_bad_policies_score_zero_and_get_stuck():
    inst = TASK.instances("train")[3]
    for text in ('{"Agent[0.5, 0.5]": "move(box_purple, square[7.5, 7.5])"}', "{}"):
        check_constant_reply_fails(TASK, [inst], text, ended_by="stuck", n_steps=5, fired=["stuck"])


def test_valid_json_in_chatter_still_parses():
    check_json_orders_survive_chatter(small_env, {"Agent[0.5, 0.5]": "move(box_red, square[0.5, 1.5])"})


def test_tolerant_forms_parse():
    env = small_env()
    want = '{"Agent[0.5, 0.5]": "move(box_red, square[0.5, 1.5])"}'
    check_parses_to(
        env,
        want,
        [
            "Plan:\n```json\n{'Agent[0.5, 0.5]': 'move(box_red, square[0.5, 1.5])'}\n```\nDone.",
            '{ "Agent[0.5,0.5]" :  "move( box_red ,square[0.5,1.5] )" }',
            "Final answer: {Agent[0.5, 0.5]: move(box_red, square[0.5, 1.5])}",
            'Example {"Agent[1.5, 1.5]": "x"} then my answer '
            '{"Agent[0.5, 0.5]": "move(box_red, square[0.5, 1.5])"}',
        ],
    )
    check_parses_to_nothing(env, ["", "no json here", '{"a": 1}', "{unclosed", '["Agent[0.5, 0.5]"]'])


def test_instances_are_deterministic_and_differ_by_seed():
    check_seeded_starts(TASK, TASK.instances("train")[2])
