"""benchmarks/methods/rescore.py: the verdict is read on the fresh episodes alone, the row's own
episodes check the replay, and a stopped replay resumes without playing an episode twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentopt.errors import UserError
from agentopt.lm import register_script
from agentopt.tasks.loader import load_task
from agentopt.types import Prompt
from benchmarks.methods.plan_file import keep_plan
from benchmarks.methods.rescore import Plan, main, play, read_scores, report

TASK = "number_line"


def plan(first=0, fresh=2, last=10, method="m", **alpha):
    return Plan(row="row", task=TASK, method=method, seeds=[0, 1], first=first, fresh=fresh, last=last,
                rule="the rule", **alpha)


def run(method, seed, text, recorded=()):
    """A row's run as report() reads it: its chosen prompt and its recorded test scores."""
    scores = {f"{TASK}/test/{i}": s for i, s in enumerate(recorded)}
    return SimpleNamespace(method=method, seed=seed, best_prompt=Prompt(text=text, operator="x"),
                           test=SimpleNamespace(scores=scores))


def write_scores(out, prompt, scores):
    with (out / f"scores-{prompt.id}.jsonl").open("w") as f:
        for i, score in enumerate(scores):
            f.write(json.dumps({"instance": f"{TASK}/test/{i}", "score": score}) + "\n")


def table_row(text):
    return next(line for line in text.splitlines() if line.startswith(f"| {TASK} |"))


def test_a_lift_on_the_rows_own_episodes_alone_is_no_lift(tmp_path):
    human = run("human", 0, "H", recorded=[0.0, 0.0])
    mine = [run("m", 0, "M", recorded=[1.0, 1.0]), run("m", 1, "M", recorded=[1.0, 1.0])]
    write_scores(tmp_path, human.best_prompt, [0.0] * 10)
    write_scores(tmp_path, mine[0].best_prompt, [1.0, 1.0] + [0.0] * 8)
    text = report(tmp_path, plan(), human, mine)
    assert "4 of 4 episode scores equal to the row's" in text  # H's two and M's two (both seeds' M)
    assert "(+0/-0 of 8)" in table_row(text) and table_row(text).endswith("| no |")


def test_a_lift_on_fresh_episodes_counts_with_the_seeds_averaged(tmp_path):
    human = run("human", 0, "H", recorded=[0.0, 0.0])
    mine = [run("m", 0, "H", recorded=[0.0, 0.0]),  # seed 0 kept the human prompt
            run("m", 1, "M", recorded=[0.0, 1.0])]  # the row had 1.0 on episode 1; the replay 0.0
    write_scores(tmp_path, human.best_prompt, [0.0] * 10)
    write_scores(tmp_path, mine[1].best_prompt, [0.0, 0.0] + [1.0] * 8)
    text = report(tmp_path, plan(), human, mine)
    assert "seed 0: human, seed 1: " + mine[1].best_prompt.id in text
    assert "3 of 4 episode scores equal to the row's" in text
    row = table_row(text)
    assert "| 0.000 | 0.500 | +0.500" in row and "(+8/-0 of 8)" in row and row.endswith("| **yes** |")
    # 8 of 8 won is p = 0.0078 (sign test): enough at 0.05, not at a plan's 0.005
    assert table_row(report(tmp_path, plan(alpha=0.005), human, mine)).endswith("| no |")


def test_each_seed_counts_once_even_where_two_chose_the_same_prompt(tmp_path):
    human = run("human", 0, "H")
    mine = [run("m", 0, "M"), run("m", 1, "M"), run("m", 2, "H")]
    write_scores(tmp_path, human.best_prompt, [0.0] * 10)
    write_scores(tmp_path, mine[0].best_prompt, [1.0] * 10)
    row = table_row(report(tmp_path, plan(), human, mine))
    assert "| 0.000 | 0.667 | +0.667" in row  # (1 + 1 + 0) / 3, not the mean of M and H


def test_a_missing_episode_means_no_verdict(tmp_path):
    human, mine = run("human", 0, "H"), [run("m", 0, "M")]
    write_scores(tmp_path, human.best_prompt, [0.0] * 10)
    write_scores(tmp_path, mine[0].best_prompt, [1.0] * 9)
    assert report(tmp_path, plan(), human, mine).startswith("not finished")


def test_a_written_plan_is_kept(tmp_path):
    keep_plan(tmp_path, plan(), "rescoring")
    keep_plan(tmp_path, plan(), "rescoring")  # the same plan: a resume
    with pytest.raises(UserError, match="plans something else"):
        keep_plan(tmp_path, plan(last=20), "rescoring")
    (tmp_path / "plan.json").write_text("{}")
    with pytest.raises(UserError, match="is not a rescoring plan"):
        keep_plan(tmp_path, plan(), "rescoring")


def test_a_stopped_replay_plays_only_what_it_lacks(tmp_path):
    calls = []

    def right(messages, params):
        calls.append(1)
        return "{Step right}"

    config = {"task": TASK, "model": register_script("rescore-right", right), "agent_max_tokens": 32,
              "history_tokens": 1000, "constrain_actions": False}
    prompt = Prompt(text="Go right.", operator="x")
    play(tmp_path, config, load_task(TASK), {prompt.id: prompt.text}, 0, 3)
    first = read_scores(tmp_path, prompt.id)
    assert sorted(first) == [f"{TASK}/test/{i}" for i in range(3)] and calls
    # a kill mid-write leaves the last line cut short: that episode, and only it, is played again
    path = tmp_path / f"scores-{prompt.id}.jsonl"
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])["instance"]
    path.write_text("\n".join(lines[:-1] + [lines[-1][:10]]))  # no newline after the cut
    calls.clear()
    play(tmp_path, config, load_task(TASK), {prompt.id: prompt.text}, 0, 3)
    again = read_scores(tmp_path, prompt.id)
    assert again == first
    # the torn line is gone, the episode it held written again after the two that were whole
    assert [json.loads(line)["instance"] for line in path.read_text().splitlines()][2:] == [last]
    assert calls == []  # its steps come from the replay's own cache: no call is paid twice
    assert (tmp_path / "cache.sqlite").exists() and (tmp_path / "calls.jsonl").exists()


RECORDED = Path(__file__).parents[2] / "benchmarks" / "methods" / "recorded"


@pytest.fixture
def row(tmp_path):
    """A copy of the recorded number_line row: the human prompt's run and PROMST's three."""
    for name in ["human-number_line-seed0", *(f"promst-number_line-seed{s}" for s in range(3))]:
        (tmp_path / "row" / "runs" / name).mkdir(parents=True)
        for file in ("result.json", "config.json"):
            shutil.copy(RECORDED / "number-line" / "runs" / name / file, tmp_path / "row" / "runs" / name)
    return tmp_path / "row"


def refused(capsys, *args):
    """main() said one line and exited 2."""
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rescore.py: ") and err.count("\n") == 1, err
    return err


def test_main_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, row, capsys):
    out = tmp_path / "out"
    assert "needs one human run" in refused(capsys, tmp_path, "promst", "--fresh", "30", "--last", "40",
                                            "--out", out)
    assert "need 0 <= --first" in refused(capsys, row, "promst", "--fresh", "30", "--last", "30",
                                          "--out", out)
    assert "holds 330 episodes" in refused(capsys, row, "promst", "--fresh", "30", "--last", "400",
                                           "--out", out)
    assert "up to 29" in refused(capsys, row, "promst", "--fresh", "10", "--last", "40", "--out", out)
    assert "no plan.json" in refused(capsys, row, "promst", "--fresh", "30", "--last", "40", "--out", out,
                                     "--report-only")
    (tmp_path / "file").write_text("")
    assert "--alpha must lie between 0 and 1" in refused(capsys, row, "promst", "--fresh", "30", "--last",
                                                         "40", "--out", out, "--alpha", "0")
    assert "is a file" in refused(capsys, row, "promst", "--fresh", "30", "--last", "40",
                                  "--out", tmp_path / "file")
    assert not out.exists()  # no plan a corrected rerun would then be refused for


def test_main_reports_the_recorded_replay_again(tmp_path, row, capsys):
    out = tmp_path / "out"
    shutil.copytree(RECORDED / "number-line-replication", out)
    plan_file = json.loads((out / "plan.json").read_text())
    plan_file["row"] = str(row)
    (out / "plan.json").write_text(json.dumps(plan_file))
    assert main([str(row), "promst", "--first", "130", "--fresh", "130", "--last", "330", "--out", str(out),
                 "--report-only"]) == 0
    assert "+0.090 [+0.053, +0.127] p=9.78e-06 (+125/-47 of 200) | **yes** |" in capsys.readouterr().out
