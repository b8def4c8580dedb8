"""Preference sources: simulated BTL user, LLM judge, a person at the terminal; the judge template."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rich.console import Console

from agentopt.lm import LM, register_script
from agentopt.preferences import PreferenceLedger
from agentopt.preferences.sources import (
    LLMJudge,
    Shown,
    SimulatedUser,
    StopFeedback,
    combine_verdicts,
    parse_verdict,
    render_trajectory,
)
from agentopt.preferences.terminal import HumanSource
from agentopt.prompts import render_prompt
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import run_episode
from agentopt.types import Preference

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


# --- simulated user ------------------------------------------------------------------------
def test_simulated_user_is_btl_on_z_normalised_scores_times_ten():
    scores = {"a": 0.0, "b": 0.1, "c": 0.2, "d": 0.3}
    user = SimulatedUser(scores, seed=0)
    user.prepare(list(scores))
    std = math.sqrt(sum((s - 0.15) ** 2 for s in scores.values()) / 4)
    assert user.mean == pytest.approx(0.15) and user.std == pytest.approx(std)
    assert user.utility("d") == pytest.approx(10 * 0.15 / std)
    expected = 1 / (1 + math.exp(-(user.utility("b") - user.utility("a"))))
    assert user.probability("b", "a") == pytest.approx(expected)
    n = 4000
    wins = sum(user.compare("", "b", "a") == "a" for _ in range(n))
    assert abs(wins / n - expected) < 0.03
    assert user.latent("c") == 0.2  # the raw score, for reports


def test_simulated_user_is_seeded_and_scores_each_arm_once():
    calls: list[str] = []

    def score(text: str) -> float:
        calls.append(text)
        return len(text)

    arms = ["x", "yy", "zzz", "wwww"]
    draws = []
    for _ in range(2):
        user = SimulatedUser(score, seed=7, scale=1.0)
        user.prepare(arms)
        draws.append(
            [user.compare("ctx", Shown(text="shown", key=a), b) for a in arms for b in arms if a != b]
        )
    assert draws[0] == draws[1]
    assert sorted(calls) == sorted(arms * 2)  # once per arm per user, never per comparison
    assert not user.needs_responses


def test_simulated_user_reference_sample_and_flat_scores():
    user = SimulatedUser(lambda t: float(len(t)), n_reference=3, seed=1)
    user.prepare([str(10**k) for k in range(10)])
    assert len(user._cache) == 3  # only the reference sample was scored up front
    flat = SimulatedUser(lambda t: 0.5)
    flat.prepare(["a", "b"])
    assert flat.std == 1.0 and flat.probability("a", "b") == 0.5


# --- judge -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A is concise. B rambles.\n[[A]]", "a"),
        ("Options: [[A]], [[B]] or [[tie]].\nMy verdict: [[B]]", "b"),
        ("[[Tie]]", "tie"),
        ("**Verdict:** B", "b"),
        ("The better response is A.", "a"),
        ("Response B is better overall.", "b"),
        ("Final answer: tie", "tie"),
        ("B", "b"),
        ("(A)", "a"),
        ("I need to answer a question about both. Hard to say.", None),
        ("", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_combine_verdicts():
    assert combine_verdicts("a", "a") == "a"
    assert combine_verdicts("a", "b") == "tie"
    assert combine_verdicts(None, "b") == "b"
    assert combine_verdicts(None, None) == "skip"
    assert combine_verdicts("tie", "a") == "tie"


def test_judge_template_renders_in_the_sandbox():
    text = render_prompt(
        "judge/pairwise",
        rubric="Be kind.",
        context="CTX {{ 7*7 }}",
        response_a="first <b>",
        response_b="second",
    )
    assert "Rubric: Be kind." in text and "[[A]]" in text and "[[tie]]" in text
    assert "CTX {{ 7*7 }}" in text  # values are data, never evaluated as templates
    assert text.index("first <b>") < text.index("second")


def judge_lm(name: str, decide) -> LM:
    """A scripted judge: ``decide(response_a, response_b) -> reply``."""

    def script(messages, params):
        text = messages[-1].content
        a = text.split("<response_a>\n")[1].split("\n</response_a>")[0]
        b = text.split("<response_b>\n")[1].split("\n</response_b>")[0]
        return decide(a, b)

    return LM(register_script(name, script), cache=False, journal=False)


def test_judge_asks_both_orders_and_agrees_with_a_consistent_model():
    judge = LLMJudge(judge_lm("judge-longer", lambda a, b: "[[A]]" if len(a) > len(b) else "[[B]]"))
    assert judge.compare("ctx", "a long answer", "short") == "a"
    assert judge.compare("ctx", "short", "a long answer") == "b"
    assert len(judge.replies) == 4
    assert judge.name == "judge:scripted/judge-longer"


def test_judge_position_bias_becomes_a_tie_and_garbage_a_skip():
    assert LLMJudge(judge_lm("judge-first", lambda a, b: "[[A]]")).compare("c", "x", "y") == "tie"
    assert LLMJudge(judge_lm("judge-junk", lambda a, b: "no idea")).compare("c", "x", "y") == "skip"
    one_way = LLMJudge(judge_lm("judge-first2", lambda a, b: "[[A]]"), both_orders=False)
    assert one_way.compare("c", "x", "y") == "a" and len(one_way.replies) == 1


def test_judge_sees_the_shown_text_not_the_key():
    seen: list[str] = []

    def decide(a: str, b: str) -> str:
        seen.extend([a, b])
        return "[[A]]" if "good" in a else "[[B]]"

    judge = LLMJudge(judge_lm("judge-shown", decide))
    verdict = judge.compare(
        "c", Shown(text="good run", key="prompt one"), Shown(text="bad run", key="prompt two")
    )
    assert verdict == "a" and set(seen) == {"good run", "bad run"}


def test_render_trajectory_hides_the_score():
    task = load_task("linewalk", [FIXTURES])
    traj = run_episode(task, task.instances("train")[0], "p", lambda m: ("I go {right}", 1, 1))
    text = render_trajectory(traj)
    assert "Step 1: I go {right}" in text and "action: right" in text and "moved right" in text
    assert text.endswith(f"reached the goal after {traj.n_steps} steps.")
    assert "score" not in text.lower()


# --- a person at the terminal ------------------------------------------------------------------
def keys(*answers: str):
    it = iter(answers)
    asked: list[str] = []

    def read(prompt: str) -> str:
        asked.append(prompt)
        return next(it)

    read.asked = asked  # type: ignore[attr-defined]
    return read


def recording_console() -> Console:
    return Console(record=True, width=100, force_terminal=False)


@pytest.mark.parametrize(
    ("key", "verdict"), [("1", "a"), ("2", "b"), ("t", "tie"), ("s", "skip"), ("T\n", "tie")]
)
def test_human_keys(key, verdict):
    human = HumanSource(console=recording_console(), read_key=keys(key), shuffle_sides=False)
    assert human.compare("ctx", "left", "right") == verdict


def test_human_sees_side_by_side_panels_and_bad_keys_ask_again():
    console = recording_console()
    read = keys("x", "", "2")
    human = HumanSource(console=console, read_key=read, shuffle_sides=False)
    verdict = human.compare(
        "the context [bold]",
        Shown(text="LEFT {right}\nline2", key="k1", title="prompt 1"),
        Shown(text="RIGHT [red]x[/red]", key="k2"),
    )
    assert verdict == "b" and len(read.asked) == 3
    out = console.export_text()
    assert "context [bold]" in out and "RIGHT [red]x[/red]" in out  # shown literally, not as markup
    row = next(line for line in out.splitlines() if "LEFT {right}" in line)
    assert "RIGHT [red]x[/red]" in row  # the two responses share a line: side by side
    assert "[1] prompt 1" in out and "[2] B" in out and "press 1, 2, t, s or q" in out


def test_human_quit_raises_stop():
    with pytest.raises(StopFeedback):
        HumanSource(console=recording_console(), read_key=keys("q")).compare("c", "a", "b")


def test_human_resumes_from_the_ledger(tmp_path):
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        ledger.add(Preference(context="c", chosen="k2", rejected="k1", source="human"))
        ledger.add(Preference(context="c", chosen="k3", rejected="k1", source="judge:m"))
        read = keys("1")
        human = HumanSource(console=recording_console(), read_key=read, ledger=ledger)
        a, b = Shown(text="one", key="k1"), Shown(text="two", key="k2")
        assert human.compare("c", a, b) == "b"  # answered before: no question
        assert read.asked == [] and human.resumed == 1
        assert (
            human.compare("c", a, Shown(text="three", key="k3")) == "a"
        )  # another source's answer doesn't count
        assert len(read.asked) == 1 and human.asked == 1


def test_human_clips_long_texts():
    console = recording_console()
    HumanSource(console=console, read_key=keys("s"), max_chars=50).compare("", "x" * 500, "y")
    assert "(450 more characters)" in console.export_text()


def test_human_sides_are_shuffled_and_answers_mapped_back():
    console = recording_console()
    lefts: list[str] = []

    def person(prompt: str) -> str:  # always presses the key of the panel that says GOOD
        row = next(line for line in console.export_text(clear=True).splitlines() if "GOOD" in line)
        lefts.append("GOOD" if row.index("GOOD") < row.index("BAD") else "BAD")
        return "1" if lefts[-1] == "GOOD" else "2"

    human = HumanSource(console=console, read_key=person, seed=3)
    verdicts = [human.compare("", Shown(text="GOOD", key="g"), Shown(text="BAD", key="b")) for _ in range(12)]
    assert verdicts == ["a"] * 12
    assert 0 < lefts.count("GOOD") < 12  # both orders were shown
