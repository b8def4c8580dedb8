"""BoxLift: hand-checked dynamics (no merged boxes, agents once per step, no phantom agents),
a bad policy, parser robustness, determinism."""

from __future__ import annotations

from agentopt.tasks.loader import load_task
from tests.support.task_checks import (
    act,
    check_constant_reply_fails,
    check_json_orders_survive_chatter,
    check_one_config_gives_different_worlds,
    check_parses_to,
    check_parses_to_nothing,
    check_reseeding_changes_the_start,
    check_same_instance_same_start,
)

TASK = load_task("boxlift")
Item = TASK.module.Item


def small_env():
    """Two boxes of the same volume (2.0V, weights 2.1 and 1.9), one 5.0V box weighing 5.5;
    two agents of capacity 2.0 and one of 4.0."""
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    env.boxes = [
        Item(1, 2.0, "box_1[2.0V]", 2.1),
        Item(2, 2.0, "box_2[2.0V]", 1.9),
        Item(3, 5.0, "box[5.0V]", 5.5),
    ]
    env.agents = [Item(1, 2.0, "agent_1[2.0W]"), Item(2, 2.0, "agent_2[2.0W]"), Item(3, 4.0, "agent[4.0W]")]
    env.total_weight = 9.5
    env.lifted_weight = 0.0
    return env


def left(env) -> list[str]:
    return [b.name for b in env.boxes]


def test_a_strong_enough_group_lifts_a_box():
    env = small_env()
    obs, reward, _, _, info = act(env, {"box[5.0V]": "agent[4.0W], agent_1[2.0W]"})
    assert left(env) == ["box_1[2.0V]", "box_2[2.0V]"] and info["valid"] and info["events"] == []
    assert info["score"] == 5.5 / 9.5 and info["progress"] == 5.5 and reward == 5.5 / 9.5
    assert obs.startswith("The left boxes in the warehouse are: box_1[2.0V], box_2[2.0V].")  # state after


def test_a_too_heavy_box_stays_and_the_feedback_says_why():
    env = small_env()
    _, _, _, _, info = act(env, {"box[5.0V]": "agent[4.0W]"})
    assert len(env.boxes) == 3 and info["valid"] and info["events"] == [] and info["score"] == 0.0
    assert "higher than the summation of lifting capability of agent[4.0W]" in info["feedback"]


def test_boxes_of_equal_volume_are_separate_boxes():
    env = small_env()
    act(env, {"box_1[2.0V]": "agent_1[2.0W]", "box_2[2.0V]": "agent_2[2.0W]"})
    assert left(env) == ["box_1[2.0V]", "box[5.0V]"]  # 1.9 lifted by 2.0, 2.1 not
    # A bare name picks the lowest-numbered such box still there.
    act(env, {"box[2.0V]": "agent[4.0W]"})
    assert left(env) == ["box[5.0V]"]


def test_each_agent_is_used_at_most_once_per_step():
    env = small_env()
    _, _, _, _, info = act(env, {"box_1[2.0V]": "agent[4.0W]", "box_2[2.0V]": "agent[4.0W]"})
    assert left(env) == ["box_2[2.0V]", "box[5.0V]"]
    assert info["events"] == ["invalid_action"] and not info["valid"]
    assert "agent[4.0W] is already used in this step" in info["feedback"]
    # Listing one agent twice does not double its capacity...
    _, _, _, _, info = act(env, {"box[5.0V]": "agent[4.0W], agent[4.0W]"})
    assert "box[5.0V]" in left(env) and info["events"] == ["invalid_action"]
    # ...but a bare name used twice means the two different agents of that capacity.
    _, _, _, _, info = act(env, {"box[5.0V]": "agent[2.0W], agent[2.0W], agent[4.0W]"})
    assert left(env) == ["box_2[2.0V]"] and info["events"] == []
    # All agents are free again in the next step.
    _, _, terminated, _, info = act(env, {"box_2[2.0V]": "agent[4.0W]"})
    assert terminated and info["success"] and env.score() == 1.0


def test_nonexistent_agents_and_boxes_are_refused():
    env = small_env()
    _, _, _, _, info = act(
        env,
        {
            "box[5.0V]": "agent[4.0W], agent[9.0W]",  # phantom capacity must not count
            "box[7.5V]": "agent_1[2.0W]",  # no such box
            "box_3[2.0V]": "agent_2[2.0W]",  # number and volume do not match a box
            "box_1[2.0V]": "nobody",
        },
    )
    assert len(env.boxes) == 3 and info["events"] == ["invalid_action"]
    assert "agent[9.0W] is not in the current field" in info["feedback"]
    assert "box[7.5V] is not in the current field" in info["feedback"]


def test_generated_names_are_unique_and_nothing_is_merged():
    for inst in TASK.instances("train"):
        env = TASK.make_env(inst)
        env.reset()
        assert len(env.boxes) == inst.config["boxes"] and len(env.agents) == inst.config["agents"]
        names = [b.name for b in env.boxes] + [a.name for a in env.agents]
        assert len(set(names)) == len(names)
        assert sum(a.size for a in env.agents) >= max(b.weight for b in env.boxes)
    env = TASK.make_env(TASK.instances("train")[3])  # 45 boxes of at most 19 volumes: repeats
    obs, _ = env.reset()
    assert "box_" in obs and all(name in obs for name in (b.name for b in env.boxes))


def test_wrong_format_is_an_event_and_changes_nothing():
    env = small_env()
    _, _, _, _, info = env.step("Lift box[5.0V] with agent[4.0W].")
    assert info["events"] == ["wrong_format"] and len(env.boxes) == 3


def test_bad_policies_score_zero_and_get_stuck():
    inst = TASK.instances("train")[1]
    for text in ('{"box[99.0V]": "agent[0.5W]"}', "{}"):
        check_constant_reply_fails(TASK, [inst], text, ended_by="stuck", n_steps=5, fired=["stuck"])


def test_valid_json_in_chatter_still_parses():
    orders = {"box[5.0V]": "agent[4.0W], agent_1[2.0W]", "box_2[2.0V]": "agent_2[2.0W]"}
    check_json_orders_survive_chatter(small_env, orders)


def test_tolerant_forms_parse():
    env = small_env()
    want = '{"box[5.0V]": "agent[4.0W], agent_1[2.0W]"}'
    check_parses_to(
        env,
        want,
        [
            "```\n{'box[5.0V]': 'agent[4.0W], agent_1[2.0W]'}\n```",
            '{"box[5.0V]": ["agent[4.0W]", "agent_1[2.0W]"]}',
            '{ "box[5V]" : "agent[4W] , agent_1[2W]" }',
            "Plan {box[5.0V]: agent[4.0W], agent_1[2.0W]}",
        ],
    )
    two = env.parse_action("{box[5.0V]: agent[4.0W], box_2[2.0V]: agent_2[2.0W]}")
    assert [(o.box, o.agents) for o in two] == [((None, 5.0), ((None, 4.0),)), ((2, 2.0), ((2, 2.0),))]
    check_parses_to_nothing(env, ["", "box[5.0V]: agent[4.0W]", '{"agent[4.0W]": "box[5.0V]"}', "}{"])


def test_instances_are_deterministic_and_differ_by_seed():
    inst = TASK.instances("test")[5]
    a, b = check_same_instance_same_start(TASK, inst)
    assert [x.weight for x in a.boxes] == [x.weight for x in b.boxes]  # weights are not rendered
    check_reseeding_changes_the_start(a)
    check_one_config_gives_different_worlds(TASK, "train")


def test_step_limit_depends_on_the_number_of_agents():
    limits = [TASK.make_env(i).max_steps for i in TASK.instances("train")[:4]]
    assert limits == [20, 20, 20, 25]
