"""GridWorld2: label-ordered picking on top of GridWorld1's dynamics; parser, determinism."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agentopt.feedback.rules import RuleMonitor
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import run_episode

TASK = load_task("gridworld2")
ACTIONS = ["{Move up}", "{Move down}", "{Move left}", "{Move right}", "{Pick goal}"]


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
    monitor = RuleMonitor(TASK.rules)
    monitor.reset(0.0)
    rule = monitor.check(events=info["events"], progress=info["progress"], truncated=False)
    assert rule is not None and rule.name == "wrong_order" and rule.terminates
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
    stuck = next(r for r in TASK.rules if r.on == "stuck")
    assert stuck.steps == TASK.module.STUCK_WINDOW == 16


def test_always_moving_right_scores_zero():
    for inst in TASK.instances("validation"):
        traj = run_episode(TASK, inst, "prompt", lambda m: ("{Move right}", 0, 0))
        assert traj.terminated_by in ("collision", "out_of_grid") and traj.score == 0.0


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_parser_never_raises(text):
    env = tiny_env()
    assert env.parse_action(text) in (None, "up", "down", "left", "right", "pick")
    env.step(text)


@settings(max_examples=150, deadline=None)
@given(st.text(), st.sampled_from(ACTIONS), st.text())
def test_action_in_chatter_still_parses(prefix, action, suffix):
    env = tiny_env()
    assume(env.parse_action(suffix) is None)
    assert env.format_action(env.parse_action(f"{prefix} {action} {suffix}")) == action


def test_deterministic_and_distinct_from_gridworld1():
    inst = TASK.instances("train")[0]
    assert TASK.make_env(inst).reset()[0] == TASK.make_env(inst).reset()[0]
    a, b = (TASK.make_env(i).reset()[0] for i in TASK.instances("test")[:8:4])
    assert a != b
    gw1 = load_task("gridworld1")
    assert TASK.make_env(inst).reset()[0] != gw1.make_env(gw1.instances("train")[0]).reset()[0]
