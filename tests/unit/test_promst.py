"""PROMST with the scripted toy world (tests/support/promst_toy.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentopt.optimizers.prompt_text import clean_prompt
from agentopt.optimizers.promst.loop import _fell_in_a_row
from agentopt.runs.optimize import run_optimization
from tests.support import promst_toy

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return promst_toy.register()


def test_loop_improves_score_when_feedback_is_actionable(model, tmp_path):
    result = run_optimization(promst_toy.config(model), tmp_path / "run")
    assert result.human_test.score.mean < 0.5
    assert result.test.score.mean > result.human_test.score.mean + 0.3
    assert "Hint" in result.best_prompt.text
    assert result.best_prompt.parents  # it descends from the human prompt
    # the best-so-far curve never falls, and later levels did better than the root
    bests = [h.best_so_far for h in result.history]
    assert bests == sorted(bests) and bests[-1] > bests[0]


def test_without_rule_feedback_nothing_improves(model, tmp_path, monkeypatch):
    # Same world, but the optimizer only improves prompts when it sees the rule's text:
    # blank the rule texts and PROMST has nothing to go on.
    from agentopt.tasks.loader import load_task

    task = load_task("linewalk", [promst_toy.FIXTURES])
    for rule in task.rules:
        monkeypatch.setattr(rule, "feedback", "something went wrong")
    result = run_optimization(promst_toy.config(model), tmp_path / "run")
    assert result.test.score.mean == result.human_test.score.mean


def test_score_model_filters_children_and_logs_its_error(model, tmp_path):
    result = run_optimization(
        promst_toy.config(model, score_model_warmup=2, score_model_keep=1), tmp_path / "run"
    )
    filtered_levels = [r for r in result.rounds if r["score_model_abs_error"] is not None]
    assert filtered_levels, "the score model never switched on"
    for r in filtered_levels:
        assert r["evaluated"] == 1 < r["written"]
        assert 0.0 <= r["score_model_abs_error"] <= 1.0
    lineage = json.loads((tmp_path / "run" / "lineage.json").read_text())
    assert any(node.get("filtered_out") for node in lineage["nodes"])
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "score_model" for e in events)


def test_no_score_model_evaluates_every_child(model, tmp_path):
    result = run_optimization(promst_toy.config(model, use_score_model=False), tmp_path / "run")
    assert all(r["evaluated"] == r["written"] for r in result.rounds)


def test_budget_stops_search_deterministically(model, tmp_path):
    cfg = promst_toy.config(model).model_copy(update={"budget_calls": 60})
    a = run_optimization(cfg, tmp_path / "a")
    b = run_optimization(cfg, tmp_path / "b")
    assert a.stopped_by == "budget" and a.lm_calls <= 60
    assert a.best_prompt == b.best_prompt and a.rounds == b.rounds


def test_selection_never_uses_test_split(model, tmp_path):
    result = run_optimization(promst_toy.config(model), tmp_path / "run")
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    test_keys = [e["key"] for e in events if e["type"] == "memo" and e["key"].startswith("score/test/")]
    # only the chosen prompt and the human prompt are ever run on test
    assert sorted(test_keys) == sorted(
        {f"score/test/{result.best_prompt.id}", f"score/test/{result.human_test.prompt_id}"}
    )


def _normalise(result_json: dict) -> dict:
    result_json.pop("run_dir", None)
    return result_json


def _uninterrupted(tmp_path: Path) -> dict:
    run = tmp_path / "full"
    subprocess.run(
        [sys.executable, "-m", "tests.support.promst_toy", str(run)], cwd=ROOT, check=True, timeout=300
    )
    return _normalise(json.loads((run / "result.json").read_text()))


@pytest.mark.parametrize("kill_after_events", [1, 4, 9])
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, kill_after_events):
    expected = _uninterrupted(tmp_path)
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.promst_toy", str(run)], cwd=ROOT)
    events = run / "events.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if events.exists() and len(events.read_bytes().splitlines()) >= kill_after_events:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run / "result.json").exists()
    subprocess.run(
        [sys.executable, "-m", "tests.support.promst_toy", str(run), "--resume"],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    assert _normalise(json.loads((run / "result.json").read_text())) == expected


def test_fell_in_a_row():
    assert _fell_in_a_row([0.5, 0.4, 0.3, 0.2], 3)
    assert not _fell_in_a_row([0.5, 0.4, 0.4, 0.2], 3)
    assert not _fell_in_a_row([0.4, 0.3, 0.2], 3)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Here is the new prompt:\nDo X.", "Do X."),
        ("```text\nDo X.\n```", "Do X."),
        ('"Do X."', "Do X."),
        ("Do X.", "Do X."),
        # Seen from the demo model: a fence around a preamble that opens a second fence.
        ("```prompt\nSure! Here's a revised prompt:\n\n```prompt\nDo X.\n```", "Do X."),
        ("Here is the new prompt:\n```prompt\nDo X.", "Do X."),  # cut off before the fence closed
        ("Use ```code``` fences for code.", "Use ```code``` fences for code."),
        ("<prompt>\nDo X.\n</prompt>", "Do X."),
        # Seen in APOHF's pool on boxnet1: its template's tag echoed, the reply cut off.
        ("<instruction>\nDo X. Reply with", "Do X. Reply with"),
    ],
)
def test_clean_prompt(raw, expected):
    assert clean_prompt(raw) == expected


def test_score_model_ranks_negative_objectives_instead_of_clipping_them_to_zero():
    from agentopt.optimizers.promst.score_model import PromptScoreModel

    prompts = ["walk right now", "walk left now", "stand still here", "run right fast"]
    objectives = [-0.2, -0.9, -0.6, -0.1]  # scores minus a step penalty
    model = PromptScoreModel(embedder="hashing", alpha=0.01, bounds=None).fit(prompts, objectives)
    predicted = model.predict(prompts)
    assert (predicted < 0).all() and list(predicted.argsort()) == [1, 2, 0, 3]
    # The [0, 1] clip that fits a plain task score flattens them all to one value.
    clipped = PromptScoreModel(embedder="hashing", alpha=0.01).fit(prompts, objectives).predict(prompts)
    assert set(clipped.tolist()) == {0.0}


def test_promst_with_a_step_penalty_filters_children_by_their_predicted_objective(model, tmp_path):
    config = promst_toy.config(model, score_model_warmup=2, score_model_keep=1)
    result = run_optimization(config.model_copy(update={"step_penalty": 0.3}), tmp_path / "run")
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    filters = [e for e in events if e["type"] == "score_model"]
    assert filters, "the score model never switched on"
    assert min(h.score for h in result.history) < 0, "this penalty should take objectives below 0"
    assert any(v < 0 for e in filters for v in e["predictions"].values()), "predictions clipped at 0"
    for event in filters:
        predictions = event["predictions"]
        assert predictions[event["kept"][0]] == max(predictions.values())
    several = [e["predictions"] for e in filters if len(e["predictions"]) > 1]
    assert several and all(len(set(p.values())) > 1 for p in several), "children predicted alike"
