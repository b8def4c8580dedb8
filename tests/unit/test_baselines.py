"""APE, APO and OPRO on the linewalk fixture task with scripted models.

The scripted agent (the system message is its prompt) always answers {right} when the prompt
holds MAGIC; otherwise it moves right once per "Hint" line, then left into the pit. So the human
prompt scores 0, hints give partial scores and MAGIC solves every instance. Each method's scripted
optimizer recognises that method's meta-prompts by their wording and improves the prompt it is
shown, which lets the tests check that the loops carry information the way the papers describe.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from agentopt.lm import register_script
from agentopt.optimizers.apo import ucb1
from agentopt.runs.optimize import RunConfig, run_optimization
from agentopt.types import Prompt
from tests.support import sample_index

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
MAGIC = "Always answer {right}."
# Texts of the linewalk rules' feedback (tests/fixtures/tasks/linewalk/task.toml).
RULE_TEXTS = ("walked into the pit", "No progress for 3 steps", "query time limit",
              "is in the wrong format. Answer with")


def agent(messages) -> str:
    prompt = messages[0].content
    if MAGIC in prompt:
        return "{right}"
    step = messages[-1].content.count("Action ")
    return "{right}" if step < prompt.count("Hint") else "{left}"


def _between(text: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.DOTALL)


def scripted(name: str, optimizer, log: list[str] | None = None) -> str:
    """A model that plays the agent for chats with a system message, else the optimizer."""

    def script(messages, params):
        if messages[0].role == "system":
            return agent(messages)
        text = messages[-1].content
        if log is not None:
            log.append(text)
        return optimizer(text, sample_index(params))

    return register_script(name, script)


def config(model: str, method: str, **method_config) -> RunConfig:
    return RunConfig(task="linewalk", method=method, model=model, tasks_dirs=[str(FIXTURES)], seed=3,
                     concurrency=2, method_config=method_config)


def train_objectives(run_dir: Path) -> dict[str, float]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return {e["key"].split("/")[-1]: e["value"]["objective"]
            for e in events if e["type"] == "memo" and e["key"].startswith("score/train/")}


def memo_keys(run_dir: Path) -> list[str]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e["key"] for e in events if e["type"] == "memo"]


# --- APE --------------------------------------------------------------------------------
def ape_optimizer(induce_magic: bool):
    def reply(text: str, k: int) -> str:
        if "Infer the instruction" in text:
            if induce_magic:  # the same instruction every time, up to whitespace
                return "Walk along the line" + " " * (k + 1) + f"to the goal. {MAGIC}"
            return "Walk along the line to the goal.\nHint: go right."
        if "Write a variation" in text:
            return _between(text, "prompt")[0] + f"\nHint: keep moving right ({k})."
        raise AssertionError(text)
    return reply


APE = {"n_candidates": 4, "n_induced": 2, "top_k": 2, "rounds": 3}


def test_ape_induces_deduplicates_and_beats_human(tmp_path):
    log: list[str] = []
    model = scripted("ape-magic", ape_optimizer(induce_magic=True), log)
    result = run_optimization(config(model, "ape", **APE), tmp_path / "run")
    assert MAGIC in result.best_prompt.text
    assert result.test.score.mean == 1.0 > result.human_test.score.mean
    # two induced prompts that differ only in whitespace count once
    assert result.rounds[0]["proposed"] == 4 and result.rounds[0]["new"] == 3
    assert result.n_candidates == 1 + 3
    assert result.stopped_by == "no_failures"
    # induction calls show the human prompt and train instances' initial states
    induce = [m for m in log if "Infer the instruction" in m]
    assert len(induce) == 2 and all("You are at a position on a line" in m and "goal" in m for m in induce)


def test_ape_demonstrations_show_the_responses_that_made_progress(tmp_path, monkeypatch):
    from agentopt.tasks.loader import load_task

    task = load_task("linewalk", [FIXTURES])
    # a human prompt that walks right once: partial scores, so there is progress to show
    monkeypatch.setitem(task.__dict__, "initial_prompt", task.initial_prompt + "\nHint: step right first.")
    log: list[str] = []
    model = scripted("ape-demos", ape_optimizer(induce_magic=True), log)
    run_optimization(config(model, "ape", **APE), tmp_path / "run")
    induce = [m for m in log if "Infer the instruction" in m]
    assert induce and all("Responses that made progress" in m for m in induce)
    assert all('In the state "position 0, goal' in m and "answered: {right}" in m for m in induce)
    assert not any("answered: {left}" in m for m in induce)


def test_ape_resamples_around_the_best(tmp_path):
    model = scripted("ape-hints", ape_optimizer(induce_magic=False))
    result = run_optimization(config(model, "ape", **APE), tmp_path / "run")
    assert [r["round"] for r in result.rounds] == [1, 2, 3] and result.stopped_by == "rounds"
    lineage = json.loads((tmp_path / "run" / "lineage.json").read_text())
    nodes = {n["id"]: n for n in lineage["nodes"]}
    for edge in lineage["edges"]:
        child, parent = nodes[edge["target"]], nodes[edge["source"]]
        assert parent["round"] < child["round"]  # variations only of already-scored prompts
    assert any(nodes[e["target"]]["round"] == 3 and nodes[e["source"]]["round"] == 2
               for e in lineage["edges"])
    assert result.rounds[-1]["best_overall"] > result.rounds[0]["best_overall"]
    assert result.test.score.mean > result.human_test.score.mean


# --- APO --------------------------------------------------------------------------------
def apo_optimizer_with(magic: bool):
    def reply(text: str, k: int) -> str:
        if "why the prompt could have led to these failures" in text:
            if "you fell" in text:  # the environment's reply to walking into the pit
                return "<reason>The agent walks left into the pit; it should keep moving right.</reason>"
            return "<reason>unclear</reason>"
        if "Judging by these episodes" in text:
            current = _between(text, "prompt")[0]
            if "keep moving right" not in text:
                return f"<prompt>{current}</prompt>"
            second = MAGIC if magic else f"Hint: do not turn back ({k})."
            return (f"<prompt>{current}\nHint: keep moving right.</prompt>\n"
                    f"<prompt>{current}\n{second}</prompt>")
        if "Paraphrase the following prompt" in text:
            return _between(text, "prompt")[0] + f"\n(Reworded {k}.)"
        raise AssertionError(text)
    return reply


apo_optimizer = apo_optimizer_with(magic=True)


APO = {"beam_width": 2, "rounds": 3, "n_gradients": 2, "errors_per_gradient": 2, "edits_per_gradient": 2,
       "paraphrases_per_edit": 1, "max_successors": 4, "minibatch": 2, "bandit_pulls": 8}


def test_apo_gradients_edits_and_bandit_beat_human(tmp_path):
    log: list[str] = []
    model = scripted("apo-main", apo_optimizer, log)
    result = run_optimization(config(model, "apo", **APO), tmp_path / "run")
    assert MAGIC in result.best_prompt.text
    assert result.test.score.mean == 1.0 > result.human_test.score.mean
    assert result.rounds[0]["bandit_pulls"] == 8
    assert result.rounds[0]["successors"] <= APO["max_successors"]
    # the bandit ran minibatches through the journal; only beam members got a full train score
    keys = memo_keys(tmp_path / "run")
    assert any(k.startswith("apo/minibatch/") for k in keys)
    scored = {k.split("/")[-1] for k in keys if k.startswith("score/train/")}
    beams = {pid for r in result.rounds for pid in r["beam"]}
    assert scored == beams | {Prompt(text=(FIXTURES / "linewalk" / "prompt.md").read_text().strip()).id}
    lineage = json.loads((tmp_path / "run" / "lineage.json").read_text())
    assert any("bandit_mean" in n for n in lineage["nodes"])


def test_apo_gradient_prompt_has_no_rule_feedback(tmp_path):
    log: list[str] = []
    model = scripted("apo-rules", apo_optimizer, log)
    run_optimization(config(model, "apo", **APO), tmp_path / "run")
    gradients = [m for m in log if "why the prompt could have led to these failures" in m]
    assert gradients
    for message in gradients:
        assert "you fell" in message  # environment feedback is shown ...
        assert not any(rule in message for rule in RULE_TEXTS)  # ... the human rules are not


def test_apo_keeps_a_beam_over_rounds(tmp_path):
    model = scripted("apo-hints", apo_optimizer_with(magic=False))
    result = run_optimization(config(model, "apo", **APO), tmp_path / "run")
    assert [r["round"] for r in result.rounds] == [1, 2, 3] and result.stopped_by == "rounds"
    assert all(len(r["beam"]) == APO["beam_width"] for r in result.rounds)
    bests = [r["best"] for r in result.rounds]
    assert bests == sorted(bests) and bests[-1] > bests[0]
    # every round asks n_gradients gradients of each beam prompt with failures
    gradients = [k for k in memo_keys(tmp_path / "run") if k.startswith("apo/gradient/")]
    assert len(gradients) == APO["n_gradients"] * (1 + 2 + 2)


def test_apo_scores_everything_when_train_fits_a_minibatch(tmp_path):
    model = scripted("apo-small", apo_optimizer)
    result = run_optimization(config(model, "apo", **{**APO, "minibatch": 4}), tmp_path / "run")
    assert all(r["bandit_pulls"] == 0 for r in result.rounds)
    assert not any(k.startswith("apo/minibatch/") for k in memo_keys(tmp_path / "run"))
    assert result.n_candidates == 1 + sum(r["successors"] for r in result.rounds)
    assert result.test.score.mean == 1.0


def test_ucb1_pulls_the_best_arm_most():
    rewards = [0.1, 0.9, 0.5, 0.3]
    noise = random.Random(0)
    means, counts = ucb1(range(4), lambda a: min(1.0, max(0.0, rewards[a] + noise.uniform(-0.1, 0.1))),
                         60, 1.0, random.Random(1))
    assert sum(counts) == 60 and min(counts) >= 1
    assert counts.index(max(counts)) == 1 and means.index(max(means)) == 1
    _, few = ucb1(range(4), lambda a: rewards[a], 2, 1.0, random.Random(1))
    assert sorted(few) == [0, 0, 1, 1]  # fewer pulls than arms: each pulled at most once


# --- OPRO -------------------------------------------------------------------------------
def opro_optimizer(text: str, k: int) -> str:
    assert "Write a new prompt that is different from every prompt above" in text, text
    best = _between(text, "prompt")[-1]  # the list is ascending: the best comes last
    if best.count("Hint") >= 2:
        return f"Sure!\n<prompt>{best}\nHint ({k}). {MAGIC}</prompt>"
    return f"Here you go:\n<prompt>{best}\nHint: keep moving right ({k}).</prompt>"


OPRO = {"steps": 4, "n_per_step": 3, "max_history": 3, "n_examples": 2}


def test_opro_meta_prompt_lists_history_ascending_and_beats_human(tmp_path):
    log: list[str] = []
    model = scripted("opro-main", opro_optimizer, log)
    result = run_optimization(config(model, "opro", **OPRO), tmp_path / "run")
    assert MAGIC in result.best_prompt.text
    assert result.test.score.mean == 1.0 > result.human_test.score.mean
    assert len(log) == OPRO["steps"] * OPRO["n_per_step"]
    objectives = train_objectives(tmp_path / "run")
    lengths = []
    for message in log:
        shown = re.findall(r"<prompt>\n(.*?)\n</prompt>\nScore: (\d+)", message, re.DOTALL)
        scores = [int(s) for _, s in shown]
        assert scores == sorted(scores)
        for text, score in shown:  # each score is the prompt's train score as an integer 0-100
            assert int(score) == round(100 * objectives[Prompt(text=text).id])
        assert message.count("Example ") == OPRO["n_examples"] and "goal" in message
        lengths.append(len(shown))
    assert lengths[0] == 1 and max(lengths) == OPRO["max_history"]
    assert [r["step"] for r in result.rounds] == [1, 2, 3, 4]


# --- all three --------------------------------------------------------------------------
CASES = {
    "ape": (lambda: scripted("det-ape", ape_optimizer(induce_magic=False)), APE),
    "apo": (lambda: scripted("det-apo", apo_optimizer_with(magic=False)), APO),
    "opro": (lambda: scripted("det-opro", opro_optimizer), OPRO),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_same_seed_same_result(method, tmp_path):
    make, method_config = CASES[method]
    cfg = config(make(), method, **method_config)
    a = run_optimization(cfg, tmp_path / "a").model_dump(exclude={"run_dir"})
    b = run_optimization(cfg, tmp_path / "b").model_dump(exclude={"run_dir"})
    assert a == b
    # resuming a finished run replays it from the journal to the same result
    replayed = run_optimization(cfg, tmp_path / "a", resume=True).model_dump(exclude={"run_dir"})
    assert replayed == a


@pytest.mark.parametrize("method", sorted(CASES))
def test_budget_stops_search(method, tmp_path):
    make, method_config = CASES[method]
    cfg = config(make(), method, **method_config).model_copy(update={"budget_calls": 30})
    result = run_optimization(cfg, tmp_path / "run")
    assert result.stopped_by == "budget"
    assert result.lm_calls <= 30
    assert result.test.score.mean >= 0.0 and (tmp_path / "run" / "result.json").is_file()


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("cut", [0.2, 0.5, 0.9])
def test_a_run_killed_part_way_resumes_to_the_uninterrupted_result(method, cut, tmp_path):
    """A SIGKILL leaves the journal's fsynced lines and maybe a torn last one: reproduce that
    state at several points of a finished run, resume, and compare."""
    import shutil

    make, method_config = CASES[method]
    cfg = config(make(), method, **method_config)
    expected = run_optimization(cfg, tmp_path / "full").model_dump(exclude={"run_dir"})
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "full", killed)
    (killed / "result.json").unlink()
    lines = (killed / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    kept = lines[: max(1, int(len(lines) * cut))]
    (killed / "events.jsonl").write_text("".join(kept) + lines[len(kept)][:25], encoding="utf-8")

    resumed = run_optimization(cfg, killed, resume=True).model_dump(exclude={"run_dir"})
    assert resumed == expected


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("[1]", "must map methods to objects"),
        ('{"promstt": {}}', "unknown method 'promstt'"),
        ('{"apo": {"beam": 2}}', "unknown ApoConfig option(s): beam"),
        ('{"apo": {"rounds": 0}}', "ApoConfig.rounds"),
    ],
)
def test_bench_refuses_a_bad_config_before_running_anything(config_text, message, tmp_path, capsys):
    from agentopt.cli import main

    path = tmp_path / "config.json"
    path.write_text(config_text)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--tasks", "linewalk", "--tasks-dir", str(FIXTURES), "--methods", "promst,apo",
              "--config", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_apo_cuts_a_long_failure_to_its_end():
    """A multi-step state can be thousands of tokens; three of them overflowed the embedded
    model's 4,096-token context on boxnet1. The cut keeps the end: the last reply and the outcome."""
    from agentopt.optimizers.apo import Apo
    from agentopt.tasks.loader import load_task
    from agentopt.types import Step, Trajectory

    instance = load_task("linewalk", [FIXTURES]).instances("train", 1)[0]
    step = Step(observation="x" * 20_000, raw_output="{left}", action="{left}", valid=True,
                env_feedback="You fell into the pit.", reward=0.0)
    trajectory = Trajectory(instance=instance, prompt_id="p", steps=[step, step], score=0.25)
    text = Apo(failure_tokens=100)._render_failure(trajectory)
    assert len(text) <= 100 * 4 + len("[...]\n") and text.startswith("[...]\n")
    assert text.endswith("The episode ended with 25% of the task done.")
    short = Step(observation="position 3", raw_output="{left}", action="{left}", valid=True,
                 env_feedback="ok", reward=0.0)
    whole = Apo()._render_failure(Trajectory(instance=instance, prompt_id="p", steps=[short], score=0.0))
    assert whole.startswith("State: position 3") and "[...]" not in whole  # short ones are whole
