"""Bootstrapped demonstrations on the sums dataset task, with a scripted agent.

The agent adds right only on questions whose first number is even, unless its prompt shows it
examples, in which case it is always right. So the human prompt scores about one half, its right
replies are the only demonstrations, and any example set lifts the agent to 1.0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentopt.lm import register_script
from agentopt.runs.optimize import RunConfig, run_optimization

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def _agent(messages, params) -> str:
    assert messages[0].role == "system", "demos never calls an optimizer model"
    a, b = (int(x) for x in re.findall(r"\d+", messages[-1].content))
    right = a % 2 == 0 or "Example 1\nMessage:" in messages[0].content
    return f"Let me add. Answer: {a + b if right else a + b + 1}"


def _config(model: str, **method_config) -> RunConfig:
    return RunConfig(task="sums", method="demos", model=model, tasks_dirs=[str(FIXTURES)], seed=1,
                     concurrency=2, method_config=method_config)


def _questions(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"Message:\nWhat is (\d+) \+ (\d+) =", text)]


def test_the_chosen_prompt_shows_right_train_replies_and_lifts_the_agent(tmp_path):
    from agentopt.tasks.loader import load_task

    result = run_optimization(_config(register_script("demos-sums", _agent), n_candidates=4),
                              tmp_path / "run")
    assert result.test.score.mean == 1.0 > result.human_test.score.mean
    assert result.vs_human is not None and result.vs_human.losses == 0
    shown = _questions(result.best_prompt.text)
    assert 1 <= len(shown) <= 3
    assert all(a % 2 == 0 for a, _ in shown)  # only replies that were right are shown
    for a, b in shown:
        demo = f"Message:\nWhat is {a} + {b} =\nReply:\nLet me add. Answer: {a + b}"
        assert demo in result.best_prompt.text
    task = load_task("sums", [FIXTURES])
    train = {task.make_env(i).question for i in task.instances("train", 6)}
    assert {f"What is {a} + {b} =" for a, b in shown} <= train  # never a validation or test question
    assert result.best_prompt.text.startswith(task.initial_prompt)
    assert [r["round"] for r in result.rounds] == list(range(1, len(result.rounds) + 1))
    assert result.rounds[-1]["best_overall"] == max(r["score"] for r in result.rounds) == 1.0
    assert result.lm_calls == 6 * (1 + len(result.rounds))  # the agent's episodes, and nothing else


def test_sizes_go_round_robin_and_every_set_is_tried_once_until_none_is_left(tmp_path):
    from itertools import combinations

    result = run_optimization(_config(register_script("demos-sets", _agent), n_candidates=20, max_demos=3),
                              tmp_path / "run")
    sets = [tuple(r["demos"]) for r in result.rounds]
    shown = sorted({d for s in sets for d in s})
    assert len(shown) >= 2  # the human prompt got at least two train questions right
    every = {c for size in (1, 2, 3) for c in combinations(shown, size)}
    assert sorted(sets) == sorted(every) and result.stopped_by == "no_new_sets"
    assert len(sets[0]) == min(3, len(shown))  # the first set is the largest


def test_without_a_right_reply_it_keeps_the_human_prompt(tmp_path):
    def never_right(messages, params):
        return "Answer: -1"

    result = run_optimization(_config(register_script("demos-wrong", never_right)), tmp_path / "run")
    assert result.stopped_by == "no_demonstrations" and result.rounds == []
    assert result.best_prompt.text == "Add the two numbers."
    assert result.test.score.mean == result.human_test.score.mean == 0.0


def test_the_budget_stops_it_and_a_rerun_resumes_to_the_same_result(tmp_path):
    model = register_script("demos-budget", _agent)
    cut = run_optimization(_config(model).model_copy(update={"budget_calls": 9}), tmp_path / "cut")
    assert cut.stopped_by == "budget" and cut.lm_calls <= 9
    full = run_optimization(_config(model), tmp_path / "a").model_dump(exclude={"run_dir"})
    again = run_optimization(_config(model), tmp_path / "a", resume=True).model_dump(exclude={"run_dir"})
    assert again == full
    assert run_optimization(_config(model), tmp_path / "b").model_dump(exclude={"run_dir"}) == full


def test_an_unknown_option_is_one_clear_error():
    from agentopt.errors import UserError
    from agentopt.optimizers import build_optimizer

    with pytest.raises(UserError, match="unknown DemosConfig option"):
        build_optimizer("demos", {"max_demo": 2})


def test_on_a_multi_step_task_the_steps_that_made_progress_are_shown(tmp_path):
    """No linewalk episode succeeds under the human prompt (the agent steps right once, then
    left into the pit), so the demonstrations are the progress-making first steps."""

    def walker(messages, params):
        if "Example 1\nMessage:" in messages[0].content:
            return "{right}"
        return "{right}" if "Action 1" not in messages[-1].content else "{left}"

    config = RunConfig(task="linewalk", method="demos", model=register_script("demos-walk", walker),
                       tasks_dirs=[str(FIXTURES)], seed=0, method_config={"n_candidates": 2})
    result = run_optimization(config, tmp_path / "run")
    assert result.human_test.score.mean < 1.0 == result.test.score.mean
    text = result.best_prompt.text
    assert "Reply:\n{right}" in text and "Reply:\n{left}" not in text
    assert "State 1:" in text and "Action 1" not in text  # no history


def test_a_partly_right_single_reply_is_never_shown(tmp_path):
    """With an F1 metric, "blue red" for "blue green" scores 0.5: progress, but not an example."""
    folder = tmp_path / "tasks" / "colours"
    folder.mkdir(parents=True)
    rows = [f'{{"question": "item {k}", "answer": "blue green"}}' for k in range(12)]
    (folder / "data.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "prompt.md").write_text("Name the colours.")
    (folder / "task.toml").write_text(
        'name = "colours"\n[splits]\ntrain = 6\nvalidation = 3\ntest = 3\n'
        '[dataset]\npath = "data.jsonl"\ninput = "question"\ntarget = "answer"\n'
        'template = "Colours of {question}"\nmetric = "f1"\n'
    )

    def half_right(messages, params):
        return "Answer: blue red"

    config = RunConfig(task="colours", method="demos", model=register_script("demos-f1", half_right),
                       tasks_dirs=[str(tmp_path / "tasks")], seed=0)
    result = run_optimization(config, tmp_path / "run")
    assert result.human_test.score.mean == 0.5
    assert result.stopped_by == "no_demonstrations" and result.best_prompt.text == "Name the colours."


def test_multi_step_examples_are_replayed_in_the_task_frame_and_kept_once(tmp_path):
    """A task whose message reads its own built world (the goal) gets it right in the examples,
    and the many identical first steps of a walk are one example, not several."""
    import shutil

    folder = tmp_path / "tasks" / "linewalk"
    shutil.copytree(FIXTURES / "linewalk", folder)
    with (folder / "task.py").open("a") as fh:
        fh.write("\n\ndef _turn(self, history, observation, history_tokens):\n"
                 "    return f'Goal cell: {self.goal}.\\nState: {observation}'\n\n\n"
                 "Env.turn_message = _turn\n")

    def walker(messages, params):
        return "{right}" if "Example 1" in messages[0].content or "position 0," in messages[-1].content \
            else "{left}"

    config = RunConfig(task="linewalk", method="demos", model=register_script("demos-frame", walker),
                       tasks_dirs=[str(tmp_path / "tasks")], seed=0, method_config={"n_candidates": 4})
    result = run_optimization(config, tmp_path / "run")
    for round_ in result.rounds:
        assert len(set(round_["demos"])) == len(round_["demos"])
    text = result.best_prompt.text
    examples = re.findall(r"Message:\n(.*?)\nReply:\n(.*?)\n", text + "\n", re.DOTALL)
    assert examples and len(set(examples)) == len(examples)
    assert all(m.startswith("Goal cell: ") and "position 0," in m for m, _ in examples)


def test_every_untried_set_is_found_before_the_search_says_none_is_left():
    import random

    from agentopt.optimizers.demos import Demonstration, _draw

    pool = [Demonstration(instance_id=str(k), step=1, message=f"m{k}", reply="r") for k in range(20)]
    for seed in range(20):
        tried: set[tuple[int, ...]] = set()
        picks = [_draw(pool, i, 1, random.Random(f"{seed}/{i}"), tried) for i in range(21)]
        assert sorted(picks[:20]) == [(k,) for k in range(20)] and picks[20] is None


def test_labeled_examples_top_up_the_sets_with_train_answers_only(tmp_path):
    """An agent that never adds right has nothing to bootstrap; with ``max_labeled`` the sets are
    train questions with their reference answers, and showing any lifts it to 1.0."""
    from agentopt.tasks.loader import load_task

    def never_right_unless_shown(messages, params):
        a, b = (int(x) for x in re.findall(r"\d+", messages[-1].content))
        return f"Answer: {a + b if 'Example 1' in messages[0].content else -1}"

    model = register_script("demos-labeled", never_right_unless_shown)
    result = run_optimization(_config(model, max_labeled=3, n_candidates=3), tmp_path / "run")
    assert result.human_test.score.mean == 0.0 and result.test.score.mean == 1.0
    task = load_task("sums", [FIXTURES])
    train = {task.make_env(i).question: str(i.config["target"]) for i in task.instances("train", 6)}
    shown = re.findall(r"Message:\n(What is \d+ \+ \d+ =)\nReply:\n(.*)\n", result.best_prompt.text + "\n")
    assert len(shown) == 3
    for question, reply in shown:
        assert question in train and reply == f"Answer: {train[question]}"  # a train answer, not the agent's
    assert len(result.rounds) == 3 and all(len(r["demos"]) == 3 for r in result.rounds)
    assert all(label.endswith("(labeled)") for r in result.rounds for label in r["demos"])
    assert len({frozenset(r["demos"]) for r in result.rounds}) == 3  # three different sets


def test_labeled_only_sets_are_never_the_same_examples_reordered(tmp_path):
    """Six train questions, five to a set: six sets exist, and asking for ten tries each once."""

    def never_right(messages, params):
        return "Answer: -1"

    model = register_script("demos-labeled-sets", never_right)
    result = run_optimization(_config(model, max_labeled=5, n_candidates=10), tmp_path / "run")
    sets = [frozenset(r["demos"]) for r in result.rounds]
    assert len(sets) == 6 == len(set(sets)) and result.stopped_by == "no_new_sets"


def test_labeled_examples_fill_after_the_agents_own_right_replies(tmp_path):
    model = register_script("demos-mixed", _agent)
    result = run_optimization(_config(model, max_labeled=4, max_demos=2, n_candidates=3), tmp_path / "run")
    plain = run_optimization(_config(model, max_demos=2, n_candidates=3), tmp_path / "plain")
    for mixed, own in zip(result.rounds, plain.rounds, strict=True):
        bootstrapped = [d for d in mixed["demos"] if not d.endswith("(labeled)")]
        assert bootstrapped == own["demos"]  # the same bootstrapped draws as without labeled ones
        assert len(mixed["demos"]) == 4 == len(set(d.split(" ")[0] for d in mixed["demos"]))


def _walk_left(messages, params):
    return "{left}"  # into the pit at once: no step makes progress, nothing to bootstrap


def test_on_a_multi_step_task_a_labeled_example_is_the_oracles_first_step(tmp_path):
    config = RunConfig(task="linewalk", method="demos", model=register_script("demos-walk-left", _walk_left),
                       tasks_dirs=[str(FIXTURES)], seed=0,
                       method_config={"max_labeled": 2, "n_candidates": 1})
    result = run_optimization(config, tmp_path / "run")
    assert result.human_test.score.mean == 0.0 and len(result.rounds) == 1
    candidate = next(p for p in json.loads((tmp_path / "run" / "lineage.json").read_text())["nodes"]
                     if p.get("operator") == "demos")
    examples = re.findall(r"Message:\n(.*?)\nReply:\n(.*?)\n", candidate["text"] + "\n", re.DOTALL)
    assert len(examples) == 2 and all(reply == "{right}" for _, reply in examples)  # linewalk's oracle
    assert all("State 1:" in message and "Action 1" not in message for message, _ in examples)


def test_a_task_without_an_oracle_has_no_labeled_examples(tmp_path):
    """linewalk without its oracle: with nothing right to show, max_labeled changes nothing."""
    import shutil

    from agentopt.optimizers.demos import labeled_examples
    from agentopt.tasks.loader import load_task

    folder = tmp_path / "tasks" / "linewalk"
    shutil.copytree(FIXTURES / "linewalk", folder)
    with (folder / "task.py").open("a") as fh:
        fh.write("\n\ndel oracle\n")
    task = load_task("linewalk", [tmp_path / "tasks"])
    assert task.oracle is None

    class Ctx:
        instances = {"train": task.instances("train", 2)}

    Ctx.task = task
    assert labeled_examples(Ctx(), 2000) == ([], 0)  # type: ignore[arg-type]
    config = RunConfig(task="linewalk", method="demos", model=register_script("demos-no-oracle", _walk_left),
                       tasks_dirs=[str(tmp_path / "tasks")], seed=0, method_config={"max_labeled": 3})
    result = run_optimization(config, tmp_path / "run")
    assert result.rounds == [] and result.stopped_by == "no_demonstrations"


def test_labeled_examples_are_reference_replies_and_too_long_ones_are_counted(tmp_path):
    from agentopt.optimizers.demos import labeled_examples
    from agentopt.tasks.loader import load_task

    task = load_task("sums", [FIXTURES])

    class Ctx:
        instances = {"train": task.instances("train", 6)}

    Ctx.task = task
    examples, too_long = labeled_examples(Ctx(), 2000)  # type: ignore[arg-type]
    assert too_long == 0 and [e.instance_id for e in examples] == [i.id for i in Ctx.instances["train"]]
    assert all(e.reply == f"Answer: {i.config['target']}" and e.labeled and e.step == 1
               for e, i in zip(examples, Ctx.instances["train"], strict=True))
    assert labeled_examples(Ctx(), 5) == ([], 6)  # type: ignore[arg-type]
