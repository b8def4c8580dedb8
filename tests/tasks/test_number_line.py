"""number_line: the move limit, the score, the rules' events, the parser; hand-checked."""

from __future__ import annotations

import pytest

from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import run_episode
from tests.support.task_checks import (
    check_action_survives_chatter,
    check_any_text_is_handled,
    check_constant_reply_fails,
    check_seeded_starts,
    check_step_ends_the_episode_by,
)

TASK = load_task("number_line")
fewest_moves = TASK.module.fewest_moves
ACTIONS = ["{Step left}", "{Step right}", "{Jump left}", "{Jump right}"]
PARSED = (None, "step left", "step right", "jump left", "jump right")


def env_at(position: int, target: int):
    """A real instance (starting gap 4, limit 4) with its token and target placed by hand; the
    score still measures against the starting gap of 4."""
    env = TASK.make_env(TASK.instances("train")[0])
    env.reset()
    assert env.start_gap == 4 and env.max_steps == 4
    env.position, env.target, env.closest = position, target, abs(target - position)
    return env


@pytest.mark.parametrize("gap,fewest", [(0, 0), (1, 1), (2, 2), (3, 1), (4, 2), (5, 3), (6, 2),
                                        (7, 3), (8, 4), (11, 5), (12, 4)])
def test_the_fewest_moves_count_overshooting_and_coming_back(gap, fewest):
    assert fewest_moves(gap) == fewest


def test_instances_cycle_through_gaps_4_to_12_on_both_sides():
    envs = [TASK.make_env(inst) for inst in TASK.instances("test")]
    for index, env in enumerate(envs):
        env.reset()
        assert abs(env.target - env.position) == env.start_gap == 4 + index % 9
        assert env.max_steps == fewest_moves(env.start_gap) + 2
    assert {env.target > env.position for env in envs} == {True, False}


def test_the_state_names_the_gap_its_side_and_the_moves_left():
    env = env_at(10, 6)
    assert env.render() == ("You are at position 10. The target is at position 6, 4 to your left. "
                            "Moves left: 4.")
    _, _, terminated, _, info = env.step("{Jump left}")
    assert not terminated and info["feedback"] == "You moved to position 7."
    assert env.render().endswith("1 to your left. Moves left: 3.")


def test_reaching_the_target_scores_1_and_ends_the_episode():
    env = env_at(10, 6)
    env.step("{Jump left}")
    _, reward, terminated, _, info = env.step("I step. {Step left}")
    assert terminated and info["success"] and env.score() == 1.0
    assert reward == pytest.approx(1.0 - 0.5 * 3 / 4)


def test_jumping_over_the_target_is_moving_away_and_its_rule_does_not_end_the_episode():
    env = env_at(10, 9)  # 1 to the left
    _, _, terminated, _, info = env.step("{Jump left}")  # to 7: 2 away on the other side
    assert info["events"] == ["moved_away"] and not terminated
    rule = next(r for r in TASK.rules if r.name == "moved_away")
    assert not rule.terminates
    assert env.score() == pytest.approx(0.5 * (1 - 2 / 4))  # 2 away, of a starting gap of 4
    env.step("{Step right}")
    assert env.score() == pytest.approx(0.5 * (1 - 1 / 4)) and not env.is_success()


def test_a_token_further_away_than_at_the_start_scores_0_not_less():
    env = env_at(0, 4)
    env.step("{Jump left}")
    assert env.score() == 0.0


def test_partial_score_is_half_the_share_of_the_starting_gap_closed():
    env = env_at(0, 4)
    env.step("{Jump right}")
    assert env.score() == pytest.approx(0.5 * (1 - 1 / 4))


def test_an_off_format_reply_ends_the_episode_by_the_format_rule():
    env = env_at(0, 4)
    _, _, _, _, info = env.step("Jump right: position plus 3.")  # what the model writes unconstrained
    assert info["action"] is None and info["events"] == ["wrong_format"]
    check_step_ends_the_episode_by(TASK, info, "wrong_format")


def test_walking_away_never_scores_and_runs_into_the_limit():
    for inst in TASK.instances("validation"):
        env = TASK.make_env(inst)
        env.reset()
        away = "{Jump left}" if env.target > env.position else "{Jump right}"
        traj = run_episode(TASK, inst, "prompt", lambda messages, away=away: (away, 0, 0))
        assert traj.score == 0.0 and traj.n_steps == env.max_steps
        assert traj.terminated_by == "step_limit"


def test_a_constant_off_format_reply_fails_at_the_first_step():
    check_constant_reply_fails(TASK, TASK.instances("train"), "Jump right", ended_by="wrong_format",
                               n_steps=1)


def test_same_instance_same_start_and_the_parser_is_robust():
    # test, not train: 8 train episodes over 9 gaps never share one
    check_seeded_starts(TASK, TASK.instances("test")[3], same_config_split="test")
    make = lambda: env_at(0, 4)  # noqa: E731
    check_action_survives_chatter(make, ACTIONS, "{prefix}{action}{suffix}")
    check_any_text_is_handled(make, PARSED)
