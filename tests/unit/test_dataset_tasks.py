"""Single-turn dataset tasks: reading answers, metrics, distinct splits, and optimisers on them."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from agentopt.errors import UserError
from agentopt.lm import register_script
from agentopt.runs.optimize import RunConfig, run_optimization
from agentopt.tasks import metrics
from agentopt.tasks.dataset import DatasetSpec, build_examples
from agentopt.tasks.loader import load_task, load_task_folder
from agentopt.tasks.rollout import run_episode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


# --- reading the answer ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Step 1: 2 + 3 = 5\nAnswer: 5", "5"),
        ("answer: first\nThen I changed my mind.\nFinal answer: **second**.", "second"),
        ("The answer is True.", "True"),
        ("42", "42"),
        ("Answer: \\boxed{7}", "7"),
        ("To answer this question we must think.\nIt is long and commits to nothing at all, so no.", None),
        ("", None),
        ("Answer:   ", None),
    ],
)
def test_extract_answer(reply, answer):
    assert metrics.extract_answer(reply) == answer


def test_metrics_score_what_they_promise():
    assert metrics.exact_match("Beacon, dolphin", {"target": "beacon dolphin"}) == 1.0
    assert metrics.exact_match("dolphin beacon", {"target": "beacon dolphin"}) == 0.0
    assert metrics.numeric("it is 1,024.0 apples", {"target": "1024"}) == 1.0
    assert metrics.numeric("-3", {"target": "3"}) == 0.0
    assert metrics.numeric("none", {"target": "3"}) == 0.0
    mc = {"target": "B", "choices": ["red", "green", "blue"]}
    assert metrics.multiple_choice("(B)", mc) == 1.0
    assert metrics.multiple_choice("B. green", mc) == 1.0
    assert metrics.multiple_choice("green", mc) == 1.0
    assert metrics.multiple_choice("(A)", mc) == 0.0
    assert metrics.multiple_choice("blue", mc) == 0.0
    assert metrics.f1("the cat sat", {"target": "cat sat down"}) == pytest.approx(2 / 3)
    assert metrics.f1("dog", {"target": "cat"}) == 0.0


def test_a_users_own_metric_from_a_file(tmp_path):
    (tmp_path / "my_metric.py").write_text(
        "def close(answer, example):\n"
        "    return 1.0 if abs(float(answer) - float(example['target'])) < 1 else 0.0\n"
    )
    fn = metrics.load_metric("my_metric.py:close", tmp_path)
    assert fn("4.5", {"target": "5"}) == 1.0 and fn("7", {"target": "5"}) == 0.0
    with pytest.raises(UserError, match="no function 'far'"):
        metrics.load_metric("my_metric.py:far", tmp_path)
    with pytest.raises(UserError, match="unknown metric"):
        metrics.load_metric("exactmatch", tmp_path)


# --- examples and splits -----------------------------------------------------------------------
def test_a_jsonl_task_deals_distinct_examples_to_the_splits():
    task = load_task("sums", [FIXTURES])
    questions = {split: [i.config["question"] for i in task.instances(split)]
                 for split in ("train", "validation", "test")}
    assert [len(q) for q in questions.values()] == [6, 6, 12]
    every = [q for qs in questions.values() for q in qs]
    assert len(set(every)) == len(every)  # the duplicate row in sums.jsonl is dealt once
    assert build_examples(task.manifest.dataset, task.manifest.splits.model_dump(), folder=task.folder) \
        == task.examples


def test_the_split_is_bounded_by_its_size():
    task = load_task("sums", [FIXTURES])
    with pytest.raises(UserError, match="holds 6 examples"):
        task.instances("train", 7)


def test_too_few_examples_is_one_clear_error(tmp_path):
    rows = [{"input": f"q{i}", "target": "a"} for i in range(5)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = DatasetSpec(path="d.jsonl")
    with pytest.raises(UserError, match="5 distinct examples but the splits need 6"):
        build_examples(spec, {"train": 2, "validation": 2, "test": 2}, folder=tmp_path)


def test_csv_and_datasets_folders_are_read_like_jsonl(tmp_path):
    rows = [{"q": f"{i} + 1 =", "a": str(i + 1)} for i in range(9)]
    with (tmp_path / "d.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["q", "a"])
        writer.writeheader()
        writer.writerows(rows)
    spec = DatasetSpec(path="d.csv", input="q", target="a")
    sizes = {"train": 3, "validation": 3, "test": 3}
    from_csv = build_examples(spec, sizes, folder=tmp_path)
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    from_hf = build_examples(spec.model_copy(update={"path": "hf"}), sizes, folder=tmp_path)
    assert from_csv == from_hf
    assert sorted(e["target"] for split in from_csv.values() for e in split) == sorted(r["a"] for r in rows)


def test_bad_dataset_input_is_a_user_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"input": "x", "target": "y"}\nnot json\n')
    with pytest.raises(UserError, match="bad.jsonl:2"):
        build_examples(DatasetSpec(path="bad.jsonl"), {"train": 1, "validation": 0, "test": 0},
                       folder=tmp_path)
    (tmp_path / "missing.jsonl").write_text('{"input": "x"}\n')
    with pytest.raises(UserError, match="no 'target' field"):
        build_examples(DatasetSpec(path="missing.jsonl"), {"train": 1, "validation": 0, "test": 0},
                       folder=tmp_path)
    with pytest.raises(ValueError, match="only one"):
        DatasetSpec(path="a.jsonl", generator="generate")
    # A folder task must say where its examples are (only code may hand them over directly).
    folder = tmp_path / "nowhere"
    folder.mkdir()
    (folder / "task.toml").write_text('name = "nowhere"\n[dataset]\nmetric = "numeric"\n')
    with pytest.raises(UserError, match="exactly one of path or generator"):
        load_task_folder(folder)


# --- one episode -------------------------------------------------------------------------------
def test_an_episode_is_one_question_scored_by_the_metric():
    task = load_task("sums", [FIXTURES])
    instance = task.instances("test")[0]
    a, b = (int(x) for x in re.findall(r"\d+", instance.config["question"]))
    seen = []

    def policy(messages):
        seen.append(messages)
        return f"Let me add.\nAnswer: {a + b}", 10, 5

    right = run_episode(task, instance, "Add.", policy)
    assert right.success and right.score == 1.0 and right.n_steps == 1 and right.feedback == []
    # The user message is the rendered question itself, not a multi-step "state" frame.
    assert seen[0][1].content == f"What is {instance.config['question']}"

    wrong = run_episode(task, instance, "Add.", lambda m: (f"Answer: {a + b + 1}", 0, 0))
    assert wrong.score == 0.0 and wrong.terminated_by == "wrong_answer"
    assert f"the correct answer is '{a + b}'" in wrong.feedback[0].text

    chatter = run_episode(task, instance, "Add.", lambda m: ("I would rather talk about the weather "
                                                           "today, and at length, than add anything.", 0, 0))
    assert chatter.terminated_by == "wrong_format" and chatter.steps[0].action is None


# --- an optimiser, with no special case ----------------------------------------------------------
CAREFUL = "Add carefully and end with 'Answer: N'."


def _sums_model(messages, params) -> str:
    """The agent is right only under a prompt that says CAREFUL; any optimizer call returns it."""
    if messages[0].role == "system":
        a, b = (int(x) for x in re.findall(r"\d+", messages[-1].content))
        return f"Answer: {a + b}" if CAREFUL in messages[0].content else f"Answer: {a + b + 1}"
    return CAREFUL


SMALL = {"opro": {"steps": 2}, "ape": {"rounds": 1}, "promst": {"max_levels": 1, "n_children": 2},
         "apo": {"rounds": 1, "bandit_pulls": 2, "paraphrases_per_edit": 0},
         "apohf": {"pool_size": 4, "rounds": 3, "train_iters": 20}}


@pytest.mark.parametrize("method", sorted(SMALL))
def test_optimisers_run_on_a_dataset_task_and_the_lift_is_paired(method, tmp_path):
    model = register_script("sums-careful", _sums_model)
    config = RunConfig(task="sums", method=method, model=model, tasks_dirs=[str(FIXTURES)], concurrency=2,
                       method_config=SMALL[method])
    result = run_optimization(config, tmp_path / "run")
    assert result.human_test.score.mean == 0.0 and result.test.score.mean == 1.0
    diff = result.vs_human
    assert diff is not None and diff.n == 12 and diff.mean == 1.0 and diff.wins == 12
    assert diff.p_value < 0.01


# --- paired comparison -------------------------------------------------------------------------
def test_paired_difference_pairs_by_instance():
    from agentopt.stats import paired_difference

    a = {f"i{k}": 1.0 for k in range(20)}
    b = {f"i{k}": float(k < 4) for k in range(20)}
    diff = paired_difference(a, b)
    assert diff.n == 20 and diff.mean == pytest.approx(0.8) and (diff.wins, diff.losses) == (16, 0)
    assert diff.low > 0.5 and diff.p_value < 0.001
    same = paired_difference(a, dict(a))
    assert same.mean == 0.0 and same.p_value == 1.0
    # Only shared instances are compared; none shared is an error, not a number.
    assert paired_difference(a, {"i0": 0.0, "other": 1.0}).n == 1
    with pytest.raises(ValueError, match="share no instance"):
        paired_difference(a, {"x": 1.0})


def test_equal_scores_averaged_over_seeds_are_no_difference():
    from agentopt.stats import paired_difference

    # The mean of three seeds' 0.1 is 0.10000000000000002: not a win over 0.1.
    seeds = {f"i{k}": (0.1 + 0.1 + 0.1) / 3 for k in range(8)}
    once = {f"i{k}": 0.1 for k in range(8)}
    diff = paired_difference(seeds, once)
    assert (diff.wins, diff.losses, diff.p_value) == (0, 0, 1.0) and diff.mean == 0.0


def test_bench_reports_the_human_row_from_its_own_run_and_pairs_every_seed(tmp_path):
    from agentopt.runs.bench import run_bench

    model = register_script("sums-careful-bench", _sums_model)
    base = RunConfig(task="sums", model=model, tasks_dirs=[str(FIXTURES)], concurrency=2,
                     method_config={"opro": {"steps": 2}})
    results = run_bench(base, ["sums"], ["opro"], tmp_path, seeds=[0, 1])
    assert sorted((r.method, r.seed) for r in results) == [("human", 0), ("opro", 0), ("opro", 1)]
    assert (tmp_path / "runs" / "human-sums-seed0" / "result.json").is_file()
    table = (tmp_path / "results.md").read_text()
    human_row = next(line for line in table.splitlines() if line.startswith("| human |"))
    opro_row = next(line for line in table.splitlines() if line.startswith("| opro |"))
    assert "0.000" in human_row and "| 2 | 1.000" in opro_row and "+1.000" in opro_row
    assert "p=0.000" in opro_row
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("task,method,seed")



def test_a_stopped_bench_leaves_a_partial_table_that_the_rerun_completes(tmp_path):
    from agentopt.runs.bench import run_bench

    calls = {"n": 0}

    def model(messages, params):
        if messages[0].role != "system":
            calls["n"] += 1
            if calls["n"] > 1:  # the second optimiser run's first proposal: the machine stops
                raise KeyboardInterrupt
        return _sums_model(messages, params)

    name = register_script("sums-stopped-bench", model)
    base = RunConfig(task="sums", model=name, tasks_dirs=[str(FIXTURES)], concurrency=2,
                     method_config={"opro": {"steps": 1, "n_per_step": 1}})
    with pytest.raises(KeyboardInterrupt):
        run_bench(base, ["sums"], ["opro"], tmp_path, seeds=[0, 1])
    table = (tmp_path / "results.md").read_text()
    assert "Partial: 2 of 3 runs finished" in table and "| opro | 1 |" in table
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 3
    calls["n"] = -100
    (tmp_path / "score_vs_calls_gone.png").write_bytes(b"from a bench of another task")
    run_bench(base, ["sums"], ["opro"], tmp_path, seeds=[0, 1])
    table = (tmp_path / "results.md").read_text()
    assert "Partial" not in table and "| opro | 2 |" in table
    assert not (tmp_path / "score_vs_calls_gone.png").exists()
    # A bigger grid in the same folder, stopped at its first new run: the complete-looking
    # table of the smaller grid is not left behind.
    calls["n"] = 1
    with pytest.raises(KeyboardInterrupt):
        run_bench(base, ["sums"], ["opro"], tmp_path, seeds=[0, 1, 2])
    assert "Partial: 3 of 4 runs finished" in (tmp_path / "results.md").read_text()

@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Answer: 12\nI hope this answer is helpful!", "12"),
        ("Answer: True\n\nThe answer is correct because of De Morgan.", "True"),
        ("Answer: .5", ".5"),
        ("**Answer:** (B)", "(B)"),
    ],
)
def test_an_answer_line_beats_answer_talk_in_prose(reply, answer):
    assert metrics.extract_answer(reply) == answer


def test_options_are_shown_and_an_options_text_beats_its_letter(tmp_path):
    rows = [{"q": f"Pick {i}", "options": ["A dog", "cat", f"x{i}"], "a": "A"} for i in range(3)]
    (tmp_path / "mc.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = DatasetSpec(path="mc.jsonl", input="q", target="a", choices="options", template="Q: {q}",
                       metric="multiple_choice")
    dealt = build_examples(spec, {"train": 1, "validation": 1, "test": 1}, folder=tmp_path)
    from agentopt.tasks.dataset import render_example

    shown = render_example(spec, dealt["test"][0])
    assert shown.endswith("(A) A dog\n(B) cat\n(C) x" + dealt["test"][0]["q"][-1])
    assert metrics.multiple_choice("A dog", {"target": "C", "choices": ["x", "y", "A dog"]}) == 1.0


def test_csv_keeps_line_breaks_inside_quoted_fields_and_ignores_a_bom(tmp_path):
    (tmp_path / "d.csv").write_bytes('\ufeffquestion,answer\n"line1\nline2",yes\n'.encode())
    from agentopt.tasks.dataset import read_examples

    assert read_examples(tmp_path / "d.csv") == [{"question": "line1\nline2", "answer": "yes"}]


def test_a_generator_missing_a_field_is_one_clear_error(tmp_path):
    spec = DatasetSpec(generator="generate")
    with pytest.raises(UserError, match="no 'target' field"):
        build_examples(spec, {"train": 1, "validation": 0, "test": 0}, folder=tmp_path,
                       generator=lambda rng: {"input": "q"})


def test_bench_overview_marks_only_significant_differences_and_counts_tasks(tmp_path):
    from types import SimpleNamespace

    from agentopt.runs.bench import comparisons, overview

    def run(task, method, scores):
        scores = {f"{task}/{i}": float(s) for i, s in enumerate(scores)}
        return SimpleNamespace(task=task, method=method, pass_at_k=None, test=SimpleNamespace(scores=scores))

    zeros, ones, mixed = [0] * 12, [1] * 12, [1, 0] * 6
    results = [
        run("a", "human", zeros), run("a", "promst", ones), run("a", "opro", mixed),
        run("b", "human", mixed), run("b", "promst", mixed), run("b", "opro", zeros),
    ]
    against = ["human", "promst"]
    table = overview(results, ["a", "b"], ["human", "promst", "opro"], comparisons(results, against), against)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in table if line.startswith("| ") and not line.startswith("| method")}
    # 12 of 12 better, and 6 of 6 differing instances better (exact sign test p = 0.031), are
    # significant; the same scores on the same instances (p = 1) are not.
    assert rows["promst"] == ["promst", "1.000 (+human)", "0.500", "1 / 0 of 2", "-"]
    assert rows["opro"][1] == "0.500 (+human, -promst)" and rows["opro"][2] == "0.000 (-human, -promst)"
    assert rows["opro"][3:] == ["1 / 1 of 2", "0 / 2 of 2"]
    assert rows["human"][1:] == ["0.000 (-promst)", "0.500", "-", "0 / 1 of 2"]
