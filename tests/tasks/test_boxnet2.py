"""BoxNet2: hand-checked dynamics (collisions included), a bad policy, parser
robustness, determinism."""

from __future__ import annotations

import json

from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import run_episode
from tests.support.task_checks import (
    act,
    check_constant_reply_fails,
    check_json_orders_survive_chatter,
    check_parses_to,
    check_parses_to_nothing,
    check_seeded_starts,
)

TASK = load_task("boxnet2")


def small_env():
    """A 2x2 grid: corners (0..2, 0..2). box_red on (0, 1), box_blue on (1, 1);
    target_red in square (1, 1), target_blue in square (0, 0)."""
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    assert (env.rows, env.cols) == (2, 2)
    env.boxes = {(x, y): [] for x in range(3) for y in range(3)}
    env.boxes[(0, 1)] = ["box_red"]
    env.boxes[(1, 1)] = ["box_blue"]
    env.targets = {(0, 0): ["target_blue"], (0, 1): [], (1, 0): [], (1, 1): ["target_red"]}
    env.initial_boxes = 2
    return env


def where(env) -> dict[str, tuple[int, int]]:
    return {box: k for k, boxes in env.boxes.items() for box in boxes}


def test_corner_moves_and_matches():
    env = small_env()
    _, _, _, _, info = act(env, {"Agent[0.5, 0.5]": "move(box_blue, position[0.0, 0.0])"})
    assert info["valid"] and info["events"] == [] and where(env) == {"box_red": (0, 1), "box_blue": (0, 0)}
    _, reward, _, _, info = act(env, {"Agent[0.5, 0.5]": "move(box_blue, target_blue)"})
    assert where(env) == {"box_red": (0, 1)} and env.targets[(0, 0)] == []
    assert info["score"] == 0.5 and info["progress"] == 1.0 and reward == 0.5
    # box_red reaches a corner of square (1, 1) through the corner it shares with square (0, 1).
    act(env, {"Agent[0.5, 1.5]": "move(box_red, position[1.0, 2.0])"})
    _, _, terminated, _, info = act(env, {"Agent[1.5, 1.5]": "move(box_red, target_red)"})
    assert terminated and info["success"] and env.score() == 1.0


def test_two_boxes_sent_to_one_corner_collide_and_end_the_episode():
    env = small_env()
    obs, _, terminated, _, info = act(
        env,
        {
            "Agent[0.5, 0.5]": "move(box_red, position[1.0, 0.0])",
            "Agent[1.5, 0.5]": "move(box_blue, position[1.0, 0.0])",
        },
    )
    assert info["events"] == ["collision"] and terminated and info["valid"]
    assert sorted(env.boxes[(1, 0)]) == ["box_blue", "box_red"]
    assert "box_red at position[1.0, 0.0]" in obs and "box_blue at position[1.0, 0.0]" in obs  # state after


def test_moving_onto_a_box_that_stays_collides():
    env = small_env()
    _, _, terminated, _, info = act(env, {"Agent[0.5, 1.5]": "move(box_red, position[1.0, 1.0])"})
    assert info["events"] == ["collision"] and terminated


def test_following_a_box_that_moves_away_is_fine_in_either_order():
    for order in (
        ["Agent[0.5, 1.5]", "Agent[0.5, 0.5]"],
        ["Agent[0.5, 0.5]", "Agent[0.5, 1.5]"],
    ):
        env = small_env()
        moves = {
            "Agent[0.5, 1.5]": "move(box_red, position[1.0, 1.0])",
            "Agent[0.5, 0.5]": "move(box_blue, position[1.0, 0.0])",
        }
        _, _, terminated, _, info = act(env, {k: moves[k] for k in order})
        assert info["events"] == [] and not terminated
        assert where(env) == {"box_red": (1, 1), "box_blue": (1, 0)}


def test_collision_episode_ends_with_the_collision_rule():
    inst = TASK.instances("train")[0]
    env = TASK.make_env(inst)
    env.reset()
    # Send one box onto the corner of another: find a square holding two boxes on its corners.
    for cell in env.targets:
        boxes = [
            (k, b) for k in [(cell[0] + i, cell[1] + j) for i in (0, 1) for j in (0, 1)] for b in env.boxes[k]
        ]
        if len(boxes) >= 2:
            (_, box), (corner, _) = boxes[:2]
            agent = f"Agent[{cell[0] + 0.5}, {cell[1] + 0.5}]"
            text = json.dumps({agent: f"move({box}, position[{float(corner[0])}, {float(corner[1])}])"})
            traj = run_episode(TASK, inst, "prompt", lambda messages, t=text: (t, 0, 0))
            assert traj.terminated_by == "collision" and traj.n_steps == 1
            assert text in traj.feedback[0].text
            return
    raise AssertionError("instance has no square with two boxes; pick another")


def test_illegal_sub_actions_are_skipped_the_rest_applies():
    env = small_env()
    _, _, terminated, _, info = act(
        env,
        {
            "Agent[1.5, 0.5]": "move(box_red, position[1.0, 0.0])",  # box_red is not on its corners
            "Agent[0.5, 1.5]": "move(box_red, position[2.0, 2.0])",  # not a corner of its square
            "Agent[0.5, 0.5]": "move(box_blue, position[1.0, 1.0])",  # to where it already is
            "Agent[1.5, 1.5]": "move(box_blue, target_blue)",  # target_blue is not in its square
            "Agent[2.5, 0.5]": "move(box_blue, position[2.0, 0.0])",  # no such agent
            "Agent[1.5,0.5]": "move(box_blue, position[2.0, 1.0])",  # same agent again
        },
    )
    assert info["events"] == ["invalid_action"] and not info["valid"] and not terminated
    assert where(env) == {"box_red": (0, 1), "box_blue": (1, 1)}
    assert "Agent[2.5, 0.5] is not an agent" in info["feedback"]


def test_render_shows_boxes_on_corners_and_doable_actions():
    env = small_env()
    first = env.render().splitlines()[0]
    assert first.startswith(
        "Agent[0.5, 0.5]: I am in square[0.5, 0.5], I can observe "
        "[target_blue, box_red at position[0.0, 1.0], box_blue at position[1.0, 1.0]]"
    )
    assert "move(box_red, position[0.0, 0.0])" in first and "move(box_blue, position[1.0, 0.0])" in first
    assert "move(box_blue, target_blue)" in first  # box_blue is on a corner of target_blue's square
    assert "move(box_red, target_red)" not in first  # target_red is in another square


def test_wrong_format_is_an_event_and_changes_nothing():
    env = small_env()
    _, _, _, _, info = env.step("Agent[0.5, 0.5] should move box_red.")
    assert info["events"] == ["wrong_format"] and where(env) == {"box_red": (0, 1), "box_blue": (1, 1)}


def test_bad_policies_score_zero_and_get_stuck():
    inst = TASK.instances("train")[2]
    for text in ('{"Agent[0.5, 0.5]": "move(box_nothing, position[9.0, 9.0])"}', "{}"):
        check_constant_reply_fails(TASK, [inst], text, ended_by="stuck", n_steps=5, fired=["stuck"])


def test_valid_json_in_chatter_still_parses():
    orders = {
        "Agent[0.5, 0.5]": "move(box_red, position[0.0, 0.0])",
        "Agent[1.5, 1.5]": "move(box_blue, target_red)",
    }
    check_json_orders_survive_chatter(small_env, orders)


def test_tolerant_forms_parse():
    env = small_env()
    want = '{"Agent[0.5, 0.5]": "move(box_red, position[0.0, 0.0])"}'
    check_parses_to(
        env,
        want,
        [
            "```json\n{'Agent[0.5, 0.5]': 'move(box_red, position[0.0, 0.0])'}\n```",
            '{ "Agent[0.5,0.5]":"move(box_red,position[0,0])" }',
            "so: {Agent[0.5, 0.5]: move(box_red, position[0.0, 0.0])}.",
            "curly quotes: {\u201cAgent[0.5, 0.5]\u201d: \u201cmove(box_red, position[0.0, 0.0])\u201d}",
        ],
    )
    check_parses_to_nothing(env, ["", "move(box_red, position[0.0, 0.0])", '{"x": "y"}', "{{{{"])


def test_instances_are_deterministic_and_differ_by_seed():
    check_seeded_starts(TASK, TASK.instances("validation")[1])


def test_generated_boxes_sit_alone_on_corners():
    for inst in TASK.instances("test"):
        env = TASK.make_env(inst)
        env.reset()
        assert env.collisions() == [] and 1 <= env.initial_boxes <= 5
        assert sum(len(t) for t in env.targets.values()) == env.initial_boxes
