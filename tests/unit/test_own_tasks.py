"""A user's own tasks: built in code, registered, installed as a plugin, a folder that imports
its own modules, or a class of the user's that only has `TaskProtocol`'s members; and
``agentopt tasks check`` telling a task author what breaks.

The scripted agent answers a sum right only when its prompt says "Add", and the scripted
optimiser (OPRO's meta-prompt) proposes exactly that, so a search has a lift to find.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import agentopt
from agentopt.errors import UserError
from agentopt.lm import register_script
from agentopt.runs.optimize import load_result
from agentopt.tasks.check import check_task
from agentopt.tasks.env import Outcome, TextEnv
from agentopt.tasks.loader import Task, list_tasks, load_task
from agentopt.tasks.registry import unregister_task
from agentopt.types import Instance
from tests.support.cli import one_error_line, run_main

SUMS = [{"question": f"{a} + {b}", "answer": str(a + b)} for a in range(12) for b in range(12)]
HUMAN = "Reply with a number."
BETTER = "Add the two numbers, then end with 'Answer: N'."
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
OPRO = {"steps": 1, "n_per_step": 2, "max_history": 2, "n_examples": 1}


def sums_script(messages, params) -> str:
    if messages[0].role == "system":  # the agent
        if "Add" not in messages[0].content:
            return "Answer: 0"
        numbers = [int(x) for x in re.findall(r"\d+", messages[-1].content)]
        return f"{' + '.join(map(str, numbers))} = {sum(numbers)}\nAnswer: {sum(numbers)}"
    return f"<prompt>{BETTER}</prompt>"  # the optimiser


MODEL = register_script("own-sums", sums_script)
SMALL = {"n_train": 4, "n_validation": 4, "n_test": 6, "concurrency": 1, "method_config": OPRO}


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    for name in ("sums", "walk", "plugin_sums", "protocol_walk", "lazy_sums"):
        unregister_task(name)


def read_trajectories(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "trajectories.jsonl").read_text().splitlines()]


def sums_task(**overrides) -> Task:
    settings = {"input": "question", "target": "answer", "metric": "numeric", "prompt": HUMAN,
                "template": "What is {question}?"} | overrides
    return agentopt.dataset_task("sums", SUMS, **settings)


# --- a dataset task built in code --------------------------------------------------------------
def test_a_dataset_task_made_in_code_is_optimised_like_a_bundled_one(tmp_path):
    task = sums_task()
    assert task.single_turn and task.name == "sums"
    # Distinct examples in three splits: a fifth, a fifth, the rest.
    assert (task.splits.train, task.splits.validation, task.splits.test) == (28, 28, 88)
    everything = [i for s in ("train", "validation", "test") for i in task.instances(s)]
    questions = [task.make_env(i).reset()[0] for i in everything]
    assert len(set(questions)) == len(questions) == len(SUMS)

    result = agentopt.optimize(task, method="opro", model=MODEL, run_dir=tmp_path / "run", **SMALL)
    assert result.best_prompt.text == BETTER
    assert result.test.score.mean == 1.0 and result.human_test.score.mean == 0.0
    # The run records the task's name; the object is used as given, not registered.
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"] == "sums"


def test_a_metric_function_and_rules_of_ones_own(tmp_path):
    seen = []

    def within_one(answer: str, example: dict) -> float:
        seen.append(answer)
        return float(abs(float(answer) - float(example["target"])) <= 1)

    rule = {"name": "wrong_answer", "on": "event:wrong_answer", "feedback": "OFF BY MORE: {response}"}
    task = sums_task(metric=within_one, rules=[rule], splits={"train": 2, "validation": 2, "test": 4})
    result = agentopt.optimize(task, method="human", model=MODEL, run_dir=tmp_path / "run",
                               n_train=2, n_validation=2, n_test=4, concurrency=1)
    assert seen and result.test.score.mean < 1.0
    trajectories = read_trajectories(tmp_path / "run")
    texts = [fb["text"] for t in trajectories for fb in t["feedback"]]
    assert texts and all(t.startswith("OFF BY MORE: Answer: 0") for t in texts)


def test_bench_takes_task_objects_and_names_alike(tmp_path):
    results = agentopt.bench([sums_task(), "multistep_arithmetic"], ["opro"], tmp_path / "bench",
                             model=MODEL, **SMALL | {"method_config": {"opro": OPRO}})
    assert sorted({(r.task, r.method) for r in results}) == [
        ("multistep_arithmetic", "human"), ("multistep_arithmetic", "opro"),
        ("sums", "human"), ("sums", "opro")]
    assert (tmp_path / "bench" / "runs" / "opro-sums-seed0" / "result.json").is_file()
    assert "## sums" in (tmp_path / "bench" / "results.md").read_text()


def test_a_rebuilt_task_object_resumes_the_run_and_a_name_needs_a_registration(tmp_path):
    run = tmp_path / "run"
    agentopt.optimize(sums_task(), method="human", model=MODEL, run_dir=run, **SMALL | {"method_config": {}})
    again = sums_task()  # a notebook cell run twice: the same task, another object
    result = agentopt.optimize(again, method="human", model=MODEL, run_dir=run, resume=True)
    assert result.test.score.mean == 0.0
    # By name, the run finds its task only once it is registered.
    with pytest.raises(UserError, match="unknown task 'sums'.*register_task"):
        agentopt.optimize("sums", method="human", model=MODEL, run_dir=run, resume=True)
    agentopt.register_task(again)
    assert agentopt.optimize("sums", run_dir=run, resume=True).test.score.mean == 0.0


def test_bad_dataset_task_arguments_are_one_line_errors():
    with pytest.raises(UserError, match="human-written prompt"):
        agentopt.dataset_task("sums", SUMS, prompt=" ", input="question", target="answer")
    with pytest.raises(UserError, match="no 'target' field"):
        agentopt.dataset_task("sums", SUMS, prompt=HUMAN, input="question").instances("train")
    with pytest.raises(UserError, match="metric must be a name or a function"):
        agentopt.dataset_task("sums", SUMS, prompt=HUMAN, metric=3)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="splits need"):
        agentopt.dataset_task("sums", SUMS, prompt=HUMAN, input="question", target="answer",
                              splits={"train": 100, "validation": 100, "test": 100}).instances("test")
    with pytest.raises(UserError, match=r"rules\[0\]: on: unknown rule trigger"):
        agentopt.dataset_task("sums", SUMS, prompt=HUMAN,
                              rules=[{"name": "x", "on": "never", "feedback": "f"}])


def test_a_misspelt_key_in_a_task_made_in_code_is_refused_not_ignored():
    with pytest.raises(UserError, match=r"^splits: trian: unknown key \(known: train, validation, test\)$"):
        sums_task(splits={"trian": 2})
    with pytest.raises(UserError, match=r"^rules\[0\]: terminate: unknown key \(known: name, on, feedback, "
                                        r"terminates, steps\)$"):
        sums_task(rules=[{"name": "r", "on": "stuck", "feedback": "f", "terminate": False}])
    with pytest.raises(UserError, match=r"^actions: regexp: unknown key \(known: regex, json_schema\)$"):
        walk_task(actions={"regexp": "left|right"})
    with pytest.raises(UserError, match="splits must be a dict"):
        sums_task(splits=[2, 2, 2])


def test_default_splits_count_distinct_examples_not_rows():
    rows = SUMS[:30] + SUMS[:3]  # 33 rows, 30 distinct questions
    task = agentopt.dataset_task("sums", rows, prompt=HUMAN, input="question", target="answer",
                                 metric="numeric")
    assert (task.splits.train, task.splits.validation, task.splits.test) == (6, 6, 18)
    assert len(task.instances("test")) == 18


def test_a_question_asked_twice_with_two_answers_names_both_rows(tmp_path):
    rows = [*SUMS[:5], {"question": SUMS[1]["question"], "answer": "999"}]
    with pytest.raises(UserError, match=r"^examples\[1\] and examples\[5\] ask the same question "
                                        r"\('0 \+ 1'\) with different answers \('1' and '999'\)"):
        agentopt.dataset_task("sums", rows, prompt=HUMAN, input="question", target="answer")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" + ("\n" if i == 2 else "") for i, r in enumerate(rows)))
    with pytest.raises(UserError, match=r"d\.jsonl:2 and .*d\.jsonl:7 ask the same question"):
        agentopt.dataset_task("sums", data, prompt=HUMAN, input="question", target="answer")
    # The same question with the same answer is a duplicate, dropped in silence.
    splits = agentopt.dataset_task("sums", [*SUMS[:5], SUMS[1]], prompt=HUMAN, input="question",
                                   target="answer").splits
    assert (splits.train, splits.validation, splits.test) == (1, 1, 3)


def test_rows_and_families_that_are_not_dicts_are_refused_when_the_task_is_made():
    with pytest.raises(UserError, match=r"^examples\[0\] is a str, not a dict of fields"):
        agentopt.dataset_task("sums", ["a", "b"], prompt=HUMAN)
    with pytest.raises(UserError, match="examples must be a list of dicts or the path of a file, got int"):
        agentopt.dataset_task("sums", 3, prompt=HUMAN)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^families\[0\] is a int, not a dict"):
        agentopt.env_task("walk", Walk, prompt="Walk.", families=[3, 5])  # type: ignore[list-item]
    with pytest.raises(UserError, match="families must be a list of dicts"):
        agentopt.env_task("walk", Walk, prompt="Walk.", families={"length": 3})  # type: ignore[arg-type]


def test_a_metric_that_raises_is_one_error_naming_the_metric_the_instance_and_the_answer(tmp_path):
    def fragile(answer: str, example: dict) -> float:
        return 1 / int(answer)

    task = sums_task(metric=fragile, splits={"train": 2, "validation": 2, "test": 2})
    with pytest.raises(UserError, match=r"^the metric '.*fragile' on sums/\w+/\d \(answer '0'\) raised "
                                        r"ZeroDivisionError: division by zero$"):
        agentopt.optimize(task, method="human", model=MODEL, run_dir=tmp_path / "run", concurrency=1)
    for bad, said in ((None, "returned None, not a number"), (float("nan"), "returned NaN")):
        task = sums_task(metric=lambda answer, example, bad=bad: bad,
                         splits={"train": 2, "validation": 2, "test": 2})
        with pytest.raises(UserError, match=said):
            agentopt.optimize(task, method="human", model=MODEL, run_dir=tmp_path / f"run{bad}",
                              concurrency=1)


# --- an environment task built in code ---------------------------------------------------------
class Walk(TextEnv):
    """Walk right to the end of a line of ``length`` cells."""

    @property
    def max_steps(self) -> int:
        return self.instance.config["length"] + 2

    def build(self, rng: random.Random) -> None:
        self.at = rng.randrange(2)

    def render(self) -> str:
        return f"You are at {self.at} of {self.instance.config['length']}."

    def parse_action(self, text: str) -> str | None:
        found = re.findall(r"\b(left|right)\b", text)
        return found[-1] if found else None

    def format_action(self, action: str) -> str:
        return action

    def apply(self, action: str) -> Outcome:
        self.at += 1 if action == "right" else -1
        if self.at < 0:
            return Outcome(feedback="You fell off.", events=["fell"], terminated=True)
        return Outcome(feedback=f"Moved {action}.")

    def progress(self) -> float:
        return float(self.at)

    def score(self) -> float:
        return max(0.0, min(1.0, self.at / self.instance.config["length"]))


def walker(messages, params) -> str:
    """Walks the way its prompt says."""
    return "right" if "right" in messages[0].content else "left"


def walk_task(**overrides) -> Task:
    settings = {"prompt": "Walk.", "families": [{"length": 3}, {"length": 4}], "oracle": lambda env: "right",
                "rules": [{"name": "fell", "on": "event:fell", "feedback": "You walked left off the line."}],
                "actions": {"regex": "left|right"}, "splits": {"train": 3, "validation": 3, "test": 4}}
    env = overrides.pop("env", Walk)
    return agentopt.env_task("walk", env, **settings | overrides)


def test_an_environment_task_made_in_code_passes_the_checks_and_runs(tmp_path):
    task = walk_task()
    assert all(r.ok is True for r in check_task(task)), check_task(task)
    model = register_script("own-walker", walker)
    evaluation, _ = agentopt.evaluate(agentopt.LMAgent(agentopt.LM(model), task), task, "Go right.",
                                      task.instances("test"))
    assert evaluation.score.mean == 1.0
    result = agentopt.optimize(task, method="human", model=model, run_dir=tmp_path / "run", concurrency=1)
    trajectories = read_trajectories(tmp_path / "run")
    assert result.test.score.mean == 0.0 and result.test.score.n == 4
    assert {t["terminated_by"] for t in trajectories} == {"fell"}


def test_env_task_refuses_what_is_not_an_environment():
    with pytest.raises(UserError, match="TextEnv subclass"):
        agentopt.env_task("walk", object, prompt="Walk.")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="at least one instance family"):
        agentopt.env_task("walk", Walk, prompt="Walk.", families=[])


# --- a class of one's own with only the protocol's members ---------------------------------------
class ProtocolWalk:
    """Not an agentopt Task: only the members `TaskProtocol` names."""

    name = "protocol_walk"
    initial_prompt = "Go left."
    rules: list = []
    splits = SimpleNamespace(train=2, validation=2, test=3)
    actions = None
    single_turn = False

    def instances(self, split, n=None):
        count = getattr(self.splits, split) if n is None else n
        return [Instance(task=self.name, split=split, index=i, seed=1000 * len(split) + i,
                         config={"length": 2})
                for i in range(count)]

    def make_env(self, instance):
        return Walk(instance)


def test_any_object_with_the_protocols_members_is_a_task(tmp_path):
    mine = ProtocolWalk()
    assert [r.check for r in check_task(mine) if r.ok is False] == []
    model = register_script("own-walker2", walker)
    result = agentopt.optimize(mine, method="human", model=model, run_dir=tmp_path / "run", concurrency=1)
    assert result.task == "protocol_walk" and result.test.score.mean == 0.0


# --- registration by name, lazily, and from an installed package ----------------------------------
def test_register_task_by_name_with_a_function_builds_it_once_when_asked():
    built = []

    def make():
        built.append(1)
        return agentopt.dataset_task("lazy_sums", SUMS, prompt=HUMAN, input="question", target="answer")

    agentopt.register_task(make, "lazy_sums")
    assert built == []
    assert load_task("LAZY_SUMS") is load_task("lazy_sums") and built == [1]
    assert "lazy_sums" in [t.name for t in list_tasks()]
    with pytest.raises(UserError, match="already registered"):
        agentopt.register_task(lambda: None, "lazy_sums")
    with pytest.raises(UserError, match="must be letters"):
        agentopt.register_task(make, "lazy sums")
    with pytest.raises(UserError, match="needs a task object.*missing name, initial_prompt"):
        agentopt.register_task(object())


PLUGIN = '''
import agentopt

ROWS = [{"input": f"{a} + {b}", "target": str(a + b)} for a in range(10) for b in range(10)]

def make_plugin_sums():
    return agentopt.dataset_task("plugin_sums", ROWS, prompt="Reply with a number.", metric="numeric",
                                 splits={"train": 4, "validation": 4, "test": 6})

def broken():
    raise RuntimeError("the plugin's data server is down")
'''


def install_plugin(root: Path, entries: str) -> None:
    """A distribution on sys.path, as pip would leave it: a package and its .dist-info."""
    (root / "sums_plugin").mkdir()
    (root / "sums_plugin" / "__init__.py").write_text(PLUGIN)
    info = root / "sums_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sums-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[agentopt.tasks]\n{entries}\n")


def test_an_installed_package_adds_its_tasks_through_an_entry_point(tmp_path, monkeypatch, capsys):
    install_plugin(tmp_path, "plugin_sums = sums_plugin:make_plugin_sums\nbroken_sums = sums_plugin:broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    try:
        code, out, err = run_main(capsys, "tasks", "--json")
        assert code == 0, err  # the broken plugin task is listed with its error...
        rows = {r["name"]: r for r in json.loads(out)}
        assert re.search("broken_sums.*sums-plugin.*data server is down", rows["broken_sums"]["error"])
        assert rows["plugin_sums"]["error"] is None and "gridworld1" in rows
        with pytest.raises(UserError, match="broken_sums.*sums-plugin.*data server is down"):
            load_task("broken_sums")
        # ...and does not stop its sibling from being used.
        assert load_task("plugin_sums").name == "plugin_sums"
        code, out, err = run_main(capsys, "optimize", "plugin_sums", "--method", "human", "-m", MODEL,
                                  "--run-dir", str(tmp_path / "run"))
        assert code == 0, err
        assert load_result(tmp_path / "run").human_test.score.n == 6
    finally:
        sys.modules.pop("sums_plugin", None)
        unregister_task("plugin_sums")


def test_tasks_lists_plugin_tasks(tmp_path, monkeypatch, capsys):
    install_plugin(tmp_path, "plugin_sums = sums_plugin:make_plugin_sums")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code, out, err = run_main(capsys, "tasks", "--json")
        assert code == 0, err
        rows = {r["name"]: r for r in json.loads(out)}
        assert rows["plugin_sums"]["splits"] == {"train": 4, "validation": 4, "test": 6}
        assert "gridworld1" in rows  # the built-in suite is still there
    finally:
        sys.modules.pop("sums_plugin", None)


def test_module_attribute_names_a_task_on_the_command_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_sums.py").write_text(PLUGIN.replace("def make_plugin_sums", "def task"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code, out, err = run_main(capsys, "run", "my_sums:task", "-m", MODEL, "--n", "2",
                                  "--runs-root", str(tmp_path / "runs"), "--json")
        assert code == 0, err
        code, _, err = run_main(capsys, "run", "my_sums:nothing", "-m", MODEL)
        assert "has no 'nothing'" in one_error_line(code, err)
    finally:
        sys.modules.pop("my_sums", None)


def test_module_attribute_whose_module_fails_to_import_is_one_line_with_file_and_line(
        tmp_path, monkeypatch, capsys):
    (tmp_path / "bad_sums.py").write_text("import agentopt\n\nraise RuntimeError('no data today')\n")
    (tmp_path / "needs_dep.py").write_text("\nimport no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code, _, err = run_main(capsys, "run", "bad_sums:task", "-m", MODEL)
        line = one_error_line(code, err)
        assert "bad_sums.py:3" in line and "RuntimeError: no data today" in line, line
        code, _, err = run_main(capsys, "run", "needs_dep:task", "-m", MODEL)
        line = one_error_line(code, err)
        assert "needs_dep.py:2" in line and "no_such_dependency_xyz" in line, line
        code, _, err = run_main(capsys, "run", "not_a_module_xyz:task", "-m", MODEL)
        assert "cannot import 'not_a_module_xyz'" in one_error_line(code, err)
    finally:
        for name in ("bad_sums", "needs_dep"):
            sys.modules.pop(name, None)


# --- a task folder is a package ----------------------------------------------------------------------
def write_folder_task(root: Path) -> Path:
    folder = root / "walk_pkg"
    (folder / "parts").mkdir(parents=True)
    (folder / "parts" / "__init__.py").write_text("")
    (folder / "parts" / "world.py").write_text(textwrap.dedent('''
        from ..lengths import LENGTHS  # two levels: a real package, not a loose file

        def length_of(config):
            return LENGTHS[config["size"]]
    '''))
    (folder / "lengths.py").write_text("LENGTHS = {'small': 2, 'large': 4}\n")
    (folder / "task.py").write_text(textwrap.dedent('''
        from agentopt.tasks.env import Outcome, TextEnv
        from .parts.world import length_of
        from . import lengths

        FAMILIES = [{"size": size} for size in lengths.LENGTHS]

        class Env(TextEnv):
            max_steps = property(lambda self: length_of(self.instance.config) + 1)
            def build(self, rng): self.at = 0
            def render(self): return f"at {self.at}"
            def parse_action(self, text): return "right" if "right" in text else None
            def format_action(self, action): return action
            def apply(self, action):
                self.at += 1
                return Outcome(feedback="moved")
            def progress(self): return float(self.at)
            def score(self): return min(1.0, self.at / length_of(self.instance.config))

        def oracle(env):
            return "right"
    '''))
    (folder / "task.toml").write_text('name = "walk_pkg"\n[splits]\ntrain = 2\nvalidation = 2\ntest = 2\n')
    (folder / "prompt.md").write_text("Walk right.\n")
    return folder


def test_a_task_folder_imports_its_own_modules(tmp_path, capsys):
    folder = write_folder_task(tmp_path)
    task = load_task(str(folder))
    assert [task.make_env(i).max_steps for i in task.instances("train")] == [3, 5]
    code, out, err = run_main(capsys, "tasks", "check", str(folder))
    assert code == 0 and "every check passed" in out, out + err


def test_a_task_folder_with_the_old_name_configs_still_loads(tmp_path, capsys):
    folder = write_folder_task(tmp_path)
    (folder / "task.py").write_text((folder / "task.py").read_text().replace("FAMILIES = ", "CONFIGS = "))
    task = load_task(str(folder))
    assert [i.config for i in task.instances("train")] == [{"size": "small"}, {"size": "large"}]
    code, out, err = run_main(capsys, "tasks", "check", str(folder))
    assert code == 0 and "every check passed" in out, out + err

    nameless = write_folder_task(tmp_path / "nameless")
    (nameless / "task.py").write_text((nameless / "task.py").read_text().replace("FAMILIES = ", "SIZES = "))
    code, _, err = run_main(capsys, "tasks", "check", str(nameless))
    assert "must define FAMILIES" in one_error_line(code, err)


# --- agentopt tasks check ----------------------------------------------------------------------------
class Fragile(Walk):
    def parse_action(self, text: str) -> str | None:
        if text.count("{") != text.count("}"):
            raise ValueError("unbalanced braces")
        return super().parse_action(text)


class SameForEverySplit(ProtocolWalk):
    name = "protocol_walk"

    def instances(self, split, n=None):  # every split hands out the same instances
        return [Instance(task=self.name, split=split, index=i, seed=i, config={"length": 2})
                for i in range(getattr(self.splits, split) if n is None else n)]


def test_check_names_what_breaks():
    fragile = walk_task(env=Fragile)
    failed = {r.check: r.detail for r in check_task(fragile) if r.ok is False}
    assert list(failed) == ["any_reply"] and "raised ValueError: unbalanced braces" in failed["any_reply"]

    wrong_oracle = walk_task(oracle=lambda env: "left")
    failed = {r.check: r.detail for r in check_task(wrong_oracle) if r.ok is False}
    assert set(failed) == {"oracle"} and "the oracle fails walk/train/0" in failed["oracle"]
    results = {r.check: r for r in check_task(wrong_oracle)}
    assert results["grammar"].ok is None and "needs oracle" in results["grammar"].detail

    narrow = walk_task(actions={"regex": "right"}, oracle=lambda env: "left" if env.at > 1 else "right")
    assert any(r.check == "grammar" and r.ok is False or r.check == "oracle" and r.ok is False
               for r in check_task(narrow))

    failed = {r.check: r.detail for r in check_task(SameForEverySplit()) if r.ok is False}
    assert set(failed) == {"disjoint"} and "is the same instance" in failed["disjoint"]

    typo = walk_task(rules=[{"name": "fell", "on": "event:fell", "feedback": "You said {reponse}."}])
    failed = {r.check: r.detail for r in check_task(typo) if r.ok is False}
    assert set(failed) == {"rules"} and "{reponse}" in failed["rules"]

    assert [r.check for r in check_task(object()) if r.ok is False] == ["members"]


def test_tasks_check_exits_1_on_a_failed_check_and_2_on_no_task(tmp_path, capsys):
    folder = write_folder_task(tmp_path)
    (folder / "task.py").write_text((folder / "task.py").read_text().replace(
        'return "right" if "right" in text else None', 'return text.split()[0]'))
    code, out, err = run_main(capsys, "tasks", "check", str(folder))
    assert code == 1 and "FAIL any_reply" in out and "IndexError" in out, out + err
    code, out, err = run_main(capsys, "tasks", "check", str(tmp_path / "nothing_here"))
    assert "not a task folder" in one_error_line(code, err) or "unknown task" in err


def test_a_task_folder_whose_code_fails_to_import_is_one_error_line(tmp_path, capsys):
    folder = write_folder_task(tmp_path / "broken")
    (folder / "task.py").write_text("from .missing import thing\n")
    code, _, err = run_main(capsys, "tasks", "check", str(folder))
    line = one_error_line(code, err)
    assert "task.py" in line and "missing" in line


def test_a_task_folder_whose_init_fails_is_one_error_line(tmp_path, capsys):
    folder = write_folder_task(tmp_path / "broken_init")
    (folder / "__init__.py").write_text("\nraise ValueError('bad package')\n")
    code, _, err = run_main(capsys, "tasks", "check", str(folder))
    line = one_error_line(code, err)
    assert "__init__.py:2" in line and "ValueError: bad package" in line, line


# --- one broken source never hides the others; who wins a name -------------------------------------
def linewalk_folder(root: Path, folder_name: str, task_name: str | None = None) -> Path:
    folder = root / folder_name
    shutil.copytree(FIXTURES / "linewalk", folder)
    toml = (folder / "task.toml").read_text()
    toml = toml.replace('name = "linewalk"', f'name = "{task_name or folder_name}"')
    (folder / "task.toml").write_text(toml)
    return folder


def test_tasks_lists_the_good_tasks_and_a_row_per_broken_source(tmp_path, monkeypatch, capsys):
    tasks = tmp_path / "tasks"
    linewalk_folder(tasks, "linewalk")
    broken = write_folder_task(tasks)  # walk_pkg, made to fail as it is imported
    (broken / "task.py").write_text("raise RuntimeError('half-written')\n")
    linewalk_folder(tasks, "alias", "gridworld2")  # a folder not named after its task
    install_plugin(tmp_path, "broken_sums = sums_plugin:broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    agentopt.register_task(lambda: 1 / 0, "lazy_sums")
    try:
        code, out, err = run_main(capsys, "tasks", "--json", "--tasks-dir", str(tasks))
        assert code == 0, err
        rows = json.loads(out)
        names = [r["name"] for r in rows]
        assert len(names) == len(set(names)), names  # gridworld2 once, not also as "alias"
        by_name = {r["name"]: r for r in rows}
        errors = {name: r["error"] for name, r in by_name.items() if r["error"]}
        assert set(errors) == {"walk_pkg", "alias", "broken_sums", "lazy_sums"}, errors
        assert "task.py:1: RuntimeError: half-written" in errors["walk_pkg"]
        assert "holds the task 'gridworld2'" in errors["alias"] and "rename one" in errors["alias"]
        assert "data server is down" in errors["broken_sums"]
        assert "ZeroDivisionError" in errors["lazy_sums"]
        assert by_name["linewalk"]["splits"] == {"train": 4, "validation": 2, "test": 3}
        assert by_name["gridworld2"]["found_in"] == "built-in"
        code, out, err = run_main(capsys, "tasks", "--tasks-dir", str(tasks))
        assert code == 0 and re.search(r"walk_pkg\s*│\s*broken", out), out + err
        assert "walk_pkg is broken: " in err and "task.py:1: RuntimeError: half-written" in err, err
        # Each good task still loads by name.
        assert load_task("linewalk", [tasks]).name == "linewalk"
        assert load_task("gridworld2", [tasks]).source.endswith("gridworld2")
        with pytest.raises(UserError, match="rename one"):
            load_task(str(tasks / "alias"))
    finally:
        sys.modules.pop("sums_plugin", None)


def test_a_built_in_name_wins_over_a_plugin_and_a_tasks_dir_folder_says_it_hides_one(
        tmp_path, monkeypatch, capsys):
    install_plugin(tmp_path, "gridworld1 = sums_plugin:make_plugin_sums")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_task("gridworld1").source.endswith("gridworld1")  # the built-in, not the plugin's
        code, out, err = run_main(capsys, "tasks", "--json")
        row = next(r for r in json.loads(out) if r["name"] == "gridworld1")
        assert row["found_in"] == "built-in" and row["error"] is None
        plugin = "entry point gridworld1 = 'sums_plugin:make_plugin_sums' (package sums-plugin)"
        assert row["hides"] == [plugin]
        # A --tasks-dir folder stands in for a built-in (as documented), and the listing says so.
        tasks = tmp_path / "tasks"
        mine = linewalk_folder(tasks, "gridworld1")
        assert load_task("gridworld1", [tasks]).source == str(mine.resolve())
        code, out, err = run_main(capsys, "tasks", "--json", "--tasks-dir", str(tasks))
        row = next(r for r in json.loads(out) if r["name"] == "gridworld1")
        assert row["found_in"] == str(mine) and row["hides"][0] == "built-in" and len(row["hides"]) == 2
        code, out, err = run_main(capsys, "tasks", "--tasks-dir", str(tasks))
        assert f"gridworld1 is taken from {mine}; it hides built-in; {plugin}" in err
    finally:
        sys.modules.pop("sums_plugin", None)


def test_register_task_checks_what_it_can_when_it_is_called(tmp_path):
    with pytest.raises(UserError, match="'gridworld1' is a built-in task's name.*replace=True"):
        agentopt.register_task(agentopt.dataset_task("gridworld1", SUMS, prompt=HUMAN, input="question",
                                                     target="answer"))
    with pytest.raises(UserError, match="named 'sums', not 'other'"):
        agentopt.register_task(sums_task(), "other")
    with pytest.raises(UserError, match="/no/such/folder does not exist"):
        agentopt.register_task("/no/such/folder", "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no task.toml"):
        agentopt.register_task(tmp_path / "empty", "empty")
    folder = linewalk_folder(tmp_path, "walk")
    with pytest.raises(UserError, match="holds the task 'walk'.*not 'sums'"):
        agentopt.register_task(folder, "sums")
    assert agentopt.register_task(folder) == "walk" and load_task("walk").source == str(folder.resolve())
    # A function is checked when it is first called: the task it builds must bear its name.
    agentopt.register_task(lambda: sums_task(), "lazy_sums")
    with pytest.raises(UserError, match="gave the task 'sums'; its name must be 'lazy_sums'"):
        load_task("lazy_sums")
    # With replace=True, a task of one's own may stand in for a built-in in this process.
    mine = agentopt.dataset_task("gridworld1", SUMS, prompt=HUMAN, input="question", target="answer")
    try:
        agentopt.register_task(mine, replace=True)
        assert load_task("gridworld1") is mine
    finally:
        unregister_task("gridworld1")
