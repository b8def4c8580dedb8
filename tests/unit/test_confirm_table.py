"""benchmarks/methods/confirm.py: the verdict is read on the fresh instances alone, corrected
over every planned cell."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from agentopt.types import Prompt
from benchmarks.methods.confirm import GRID_TEST, Plan, confirm_table, holm, main

N = GRID_TEST + 20


def test_holm_multiplies_the_kth_smallest_p_by_the_tests_left_and_keeps_the_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.04, 0.03]) == pytest.approx([0.06, 0.06])  # 0.04 alone would be 0.04
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def run(method, seed, prompt, scores, task="t", operator="human"):
    return SimpleNamespace(task=task, method=method, seed=seed,
                           best_prompt=Prompt(text=prompt, operator=operator),
                           test=SimpleNamespace(scores={f"{task}/test/{i}": s for i, s in enumerate(scores)}))


def rows(plan, runs):
    return confirm_table(plan, runs).splitlines()[2:]


def test_a_lift_on_the_grid_instances_alone_confirms_nothing():
    human = run("human", 0, "H", [0.0] * N)
    method = run("m", 0, "M", [1.0] * GRID_TEST + [0.0] * 20)  # right on every grid instance only
    [row] = rows(Plan(cells=[("t", "m")], seeds=[0]), [human, method])
    assert "+1.000" in row and "(+30/-0 of 30)" in row  # the grid's column shows the old lift
    assert "(+0/-0 of 20)" in row and row.endswith("| 1 | no |")  # the verdict: nothing


def test_a_fresh_lift_is_confirmed_and_a_prompt_is_told_apart_by_its_text():
    human = run("human", 0, "H", [0.0] * N)
    seeds = [run("m", 0, "M", [0.0] * GRID_TEST + [1.0] * 20),
             run("m", 1, "H", [0.0] * N, operator="opro")]  # the human text, written by the method
    [row] = rows(Plan(cells=[("t", "m")], seeds=[0, 1]), [human, *seeds])
    assert "seed 0: own, seed 1: human" in row
    assert "| 0.000 | 0.500 | +0.500" in row and "(+20/-0 of 20)" in row and row.endswith("| **yes** |")


def test_a_significant_loss_is_not_confirmed():
    human = run("human", 0, "H", [1.0] * N)
    [row] = rows(Plan(cells=[("t", "m")], seeds=[0]), [human, run("m", 0, "M", [0.0] * N)])
    assert "-1.000" in row and row.endswith("| no |")


def test_an_unfinished_cell_stays_in_the_correction_as_p_1():
    lift = [0.0] * GRID_TEST + [1.0] * 6 + [0.0] * 14  # 6 won, none lost: p = 0.031
    runs = [run("human", 0, "H", [0.0] * N), run("a", 0, "A", lift), run("a", 1, "A", lift),
            run("b", 0, "B", lift)]  # b has one seed of two
    plan = Plan(cells=[("t", "a"), ("t", "b")], seeds=[0, 1])
    a, b = rows(plan, runs)
    assert "p=0.0312" in a and a.endswith("| 0.0625 | no |")  # twice 0.031: b still counts
    assert "not finished (1 of 2 seeds)" in b and b.endswith("| 1 | no |")
    alone = rows(Plan(cells=[("t", "a")], seeds=[0, 1]), runs)[0]
    assert alone.endswith("| 0.0312 | **yes** |")


def test_main_needs_the_plan_and_says_so_in_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert said == f"confirm.py: {tmp_path} has no plan.json: give the folder confirm.sh wrote\n"
    (tmp_path / "plan.json").write_text("{}")
    assert main([str(tmp_path)]) == 2
    assert "is not a confirmation plan" in capsys.readouterr().err
    (tmp_path / "plan.json").write_text(json.dumps({"cells": [["t", "m"]], "seeds": [0]}))
    assert main([str(tmp_path)]) == 0
    assert "not finished (0 of 1 seeds)" in (tmp_path / "confirm.md").read_text()


def test_the_plan_is_written_once_and_a_rerun_must_keep_it(tmp_path, capsys):
    assert main([str(tmp_path), "--plan", "t:a,b u:c", "--seeds", "0,1"]) == 0
    assert Plan.model_validate_json((tmp_path / "plan.json").read_text()) == Plan(
        cells=[("t", "a"), ("t", "b"), ("u", "c")], seeds=[0, 1])
    assert main([str(tmp_path), "--plan", "t:a,b u:c", "--seeds", "0,1"]) == 0  # a resume
    assert main([str(tmp_path), "--plan", "t:a", "--seeds", "0,1"]) == 2
    assert "plans something else" in capsys.readouterr().err
    assert main([str(tmp_path / "new"), "--plan", "t:a bad", "--seeds", "0"]) == 2
    assert "cell 'bad' is not task:method" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # nothing half-written
