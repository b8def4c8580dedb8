"""Warehouse: hand-checked dynamics (collisions included), a bad policy, parser
robustness, determinism."""

from __future__ import annotations

import json

from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import run_episode
from tests.support.task_checks import (
    act,
    all_instances,
    check_constant_reply_fails,
    check_json_orders_survive_chatter,
    check_parses_to,
    check_parses_to_nothing,
    check_seeded_starts,
)

TASK = load_task("warehouse")
Robot = TASK.module.Robot


def small_env(second_robot_at=None):
    """3 tracks x 5 columns; boxes box_0.5_1.0 and box_1.5_0.0; agent0 empty on track_1
    column_1; agent1 in the target (or at ``second_robot_at``)."""
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    assert (env.tracks, env.columns) == (3, 5)
    env.shelves = {(0, 1), (1, 0)}
    env.robots = [Robot((1, 1)), Robot(second_robot_at)]
    env.initial_boxes = 2
    env.delivered = 0
    return env


def test_pick_carry_and_deliver():
    env = small_env()
    obs, _, _, _, info = act(env, {"agent0": "pick box_0.5_1.0", "agent1": "move to track_0"})
    assert info["valid"] and info["events"] == []
    assert env.shelves == {(1, 0)} and env.robots[0].carrying and env.robots[1].pos == (0, 0)
    assert "I am agent0, I am in track_1 and column_1, carrying a box" in obs  # state after
    _, _, _, _, info = act(env, {"agent0": "move left"})
    assert env.robots[0].pos == (1, 0) and info["progress"] == 0.0
    _, reward, _, _, info = act(env, {"agent0": "move to target"})
    assert env.robots[0] == Robot(None, False) and env.delivered == 1
    assert info["score"] == 0.5 and info["progress"] == 1.0 and reward == 0.5


def test_two_robots_in_one_cell_collide_and_end_the_episode():
    env = small_env()
    _, _, terminated, _, info = act(env, {"agent0": "move left", "agent1": "move to track_1"})
    assert info["events"] == ["collision"] and terminated and info["valid"]
    assert env.robots[0].pos == env.robots[1].pos == (1, 0)


def test_moving_into_a_robot_that_stays_collides():
    env = small_env(second_robot_at=(1, 0))
    _, _, terminated, _, info = act(env, {"agent0": "move left", "agent1": "pick box_1.5_0.0"})
    assert info["events"] == ["collision"] and terminated


def test_only_positions_after_the_step_count():
    # As in PROMST, robots that trade places or follow one another do not collide.
    env = small_env(second_robot_at=(1, 0))
    _, _, terminated, _, info = act(env, {"agent0": "move left", "agent1": "move right"})
    assert info["events"] == [] and not terminated
    assert [r.pos for r in env.robots] == [(1, 0), (1, 1)]
    _, _, terminated, _, info = act(env, {"agent0": "move to target", "agent1": "move left"})
    assert info["events"] == [] and not terminated and [r.pos for r in env.robots] == [None, (1, 0)]


def _first_colliding_move():
    """(instance, response) where one robot's first move runs into a robot that stays."""
    for inst in all_instances(TASK):
        env = TASK.make_env(inst)
        env.reset()
        cells = {r.pos: k for k, r in enumerate(env.robots) if r.pos is not None}
        for k, robot in enumerate(env.robots):
            if robot.pos is None:
                moves = {f"move to track_{t}": (t, 0) for t in range(env.tracks)}
            else:
                t, c = robot.pos
                moves = {"move left": (t, c - 1), "move right": (t, c + 1)}
            for text, end in moves.items():
                if end in cells and cells[end] != k:
                    return inst, json.dumps({f"agent{k}": text})
    raise AssertionError("no instance starts with two robots next to each other")


def test_collision_episode_ends_with_the_collision_rule():
    inst, text = _first_colliding_move()
    traj = run_episode(TASK, inst, "prompt", lambda messages: (text, 0, 0))
    assert traj.terminated_by == "collision" and traj.n_steps == 1
    assert text in traj.feedback[0].text and "collision" in traj.feedback[0].text


def test_illegal_sub_actions_are_skipped_the_rest_applies():
    env = small_env()
    _, _, terminated, _, info = act(
        env,
        {
            "agent0": "move to target",  # only from column 0
            "agent_0": "move left",  # the same robot again
            "agent1": "move to track_3",  # no such track
            "agent7": "move left",  # no such robot
        },
    )
    assert info["events"] == ["invalid_action"] and not info["valid"] and not terminated
    assert [r.pos for r in env.robots] == [(1, 1), None]
    assert "agent7 is not an agent" in info["feedback"] and "more than one action" in info["feedback"]
    for orders in (
        {"agent0": "pick box_1.5_0.0"},  # not in its column
        {"agent0": "pick box_2.5_1.0"},  # no shelf there
        {"agent1": "move left"},  # in the target
        {"agent0": "jump"},
    ):
        _, _, _, _, info = act(env, orders)
        assert info["events"] == ["invalid_action"], orders
    act(env, {"agent0": "pick box_0.5_1.0"})
    _, _, _, _, info = act(env, {"agent0": "pick box_0.5_1.0"})  # hands full (and box gone)
    assert info["events"] == ["invalid_action"]
    env.robots[0].pos = (1, 4)
    _, _, _, _, info = act(env, {"agent0": "move right"})  # end of the track
    assert info["events"] == ["invalid_action"] and env.robots[0].pos == (1, 4)


def test_render_lists_boxes_and_each_robots_actions():
    env = small_env()
    lines = env.render().splitlines()
    assert lines[1] == "The left boxes and their locations in the warehouse are: box_0.5_1.0, box_1.5_0.0."
    assert lines[3] == (
        "I am agent0, I am in track_1 and column_1, not carrying a box. I can do: move left; move right; "
        "pick box_0.5_1.0."
    )
    assert (
        lines[4]
        == "I am agent1, I am in the target now. I can do: move to track_0; move to track_1; move to track_2."
    )


def test_wrong_format_is_an_event_and_changes_nothing():
    env = small_env()
    _, _, _, _, info = env.step("agent0: move left")
    assert info["events"] == ["wrong_format"] and env.robots[0].pos == (1, 1)


def test_bad_policies_score_zero_and_get_stuck():
    inst = TASK.instances("train")[2]
    for text in ('{"agent9": "move up"}', "{}"):
        check_constant_reply_fails(TASK, [inst], text, ended_by="stuck", n_steps=9, fired=["stuck"])


def test_valid_json_in_chatter_still_parses():
    check_json_orders_survive_chatter(small_env, {"agent0": "pick box_0.5_1.0", "agent1": "move to track_2"})


def test_tolerant_forms_parse():
    env = small_env()
    want = '{"agent0": "pick box_0.5_1.0", "agent1": "move to track_2"}'
    check_parses_to(
        env,
        want,
        [
            "```json\n{'agent0': 'pick box_0.5_1.0', 'agent1': 'move to track_2'}\n```",
            '{ "agent0" : "Pick  box_0.5_1.0.", "Agent 1": "move to track 2" }',
            "Next: {agent0: pick box_0.5_1.0, agent1: move to track_2}",
        ],
    )
    check_parses_to_nothing(env, ["", "agent0 moves left", '{"robot": "left"}', "{"])


def test_instances_are_deterministic_and_differ_by_seed():
    check_seeded_starts(TASK, TASK.instances("train")[3])


def test_generated_warehouses_have_boxes_and_no_collision():
    for inst in all_instances(TASK):
        env = TASK.make_env(inst)
        env.reset()
        assert env.initial_boxes >= 1 and env.collisions() == []
        assert len(env.robots) == inst.config["agents"]
