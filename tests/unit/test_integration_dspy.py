"""agentopt.integrations.dspy: a DSPy program's instructions optimised by agentopt.

The scripted model answers DSPy's chat format. Asked for ``numbers`` it lists every number of the
question only when its instruction says LIST EVERY NUMBER (else the first); asked for ``answer``
it adds the numbers it is given only when its instruction says ADD THE NUMBERS (else it repeats
the first). Asked anything else (an optimiser's meta-prompt), it proposes the instruction with
the key phrase for the predictor whose instruction it is shown. So the original program is
wrong, and an optimiser that tries the proposal finds the right one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

dspy = pytest.importorskip("dspy")

from dspy import lm15  # noqa: E402

from agentopt.errors import UserError  # noqa: E402
from agentopt.integrations import dspy as integration  # noqa: E402
from agentopt.integrations.dspy import AgentoptTeleprompter, optimize_program  # noqa: E402
from agentopt.lm import LM, CallJournal, register_script  # noqa: E402

LIST, ADD = "LIST EVERY NUMBER", "ADD THE NUMBERS"
PROMST = {"embedder": "hashing", "n_children": 1, "n_expand": 1, "max_levels": 1, "use_score_model": False}
_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond|\Z)", re.S)


class Model:
    """The scripted model, counting what it is asked (task calls and optimiser calls)."""

    def __init__(self) -> None:
        self.task_calls = 0
        self.meta_prompts: list[str] = []
        self._lock = threading.Lock()
        self.name = register_script(f"dspy-{uuid.uuid4().hex[:8]}", self)

    @property
    def calls(self) -> int:
        return self.task_calls + len(self.meta_prompts)

    def __call__(self, messages, params) -> str:
        system, user = messages[0].content, messages[-1].content
        if "[[ ## completed ## ]]" not in system:
            with self._lock:
                self.meta_prompts.append(user)
            if "produce the fields `numbers`" in user:
                return f"Copy the numbers of the question, separated by spaces. {LIST}."
            return f"Reply with the sum of the numbers you are given. {ADD}."
        with self._lock:
            self.task_calls += 1
        outputs = system.split("Your output fields are:")[1].split("All interactions")[0]
        wanted = re.findall(r"`(\w+)`", outputs)
        given = " ".join(value for _, value in _FIELD.findall(user))
        numbers = [int(n) for n in re.findall(r"\d+", given)]
        if wanted == ["numbers"]:
            value = " ".join(map(str, numbers if LIST in system else numbers[:1]))
        else:
            value = str(sum(numbers) if ADD in system else numbers[0])
        return f"[[ ## {wanted[0]} ## ]]\n{value}\n\n[[ ## completed ## ]]"


def examples(start: int, n: int, *fields: str) -> list:
    rows = []
    for i in range(start, start + n):
        a, b = 2 + i, 11 + 3 * i
        row = {"question": f"What is {a} + {b}?", "numbers": f"{a} {b}", "answer": str(a + b)}
        example = dspy.Example(question=row["question"], **{f: row[f] for f in fields})
        rows.append(example.with_inputs("question"))
    return rows


def data(*fields: str) -> dict:
    return {"trainset": examples(0, 4, *fields), "valset": examples(4, 4, *fields),
            "testset": examples(8, 6, *fields)}


def exact(example, prediction, trace=None) -> bool:
    return prediction.answer == example.answer


def half_each(example, prediction) -> float:
    return 0.5 * (prediction.numbers == example.numbers) + 0.5 * (prediction.answer == example.answer)


class TwoSteps(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.extract = dspy.Predict("question -> numbers")
        self.solve = dspy.Predict("numbers -> answer")

    def forward(self, question):
        numbers = self.extract(question=question).numbers
        return dspy.Prediction(numbers=numbers, answer=self.solve(numbers=numbers).answer)


def journals(run_dir: Path) -> list:
    return [record for path in sorted(run_dir.glob("*/calls.jsonl")) for record in CallJournal(path).read()]


def instructions(program) -> dict[str, str]:
    return {name: p.signature.instructions for name, p in program.named_predictors()}


@pytest.fixture(autouse=True)
def no_global_lm():
    # A call that escaped agentopt's LM would reach DSPy's global LM: there is none.
    assert dspy.settings.lm is None


# --- one predictor ----------------------------------------------------------------------------
def test_the_optimised_program_beats_the_original_and_every_call_went_through_agentopt(tmp_path):
    model, program = Model(), dspy.Predict("question -> answer")
    before = instructions(program)
    result = optimize_program(program, metric=exact, model=model.name, run_dir=tmp_path, method_config=PROMST,
                              **data("answer"))
    assert ADD in result.instructions["self"] and ADD in result.program.signature.instructions
    assert result.test.score.mean == 1.0 and result.original_test.score.mean == 0.0
    assert result.vs_original.mean == 1.0 and result.vs_original.p_value < 0.05
    # The input program is untouched; the result is a copy.
    assert instructions(program) == before and result.program is not program
    # Every call was made, counted and journalled by agentopt's LM; DSPy's cache served none.
    records = journals(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["01-self"]
    assert len(records) == result.total_calls == result.runs[0].total_calls
    assert sum(not r.cached for r in records) == model.calls
    # The metric's verdict reached the optimiser as feedback.
    assert any("wrong answer: expected answer='" in p for p in model.meta_prompts)
    episodes = [json.loads(x) for x in (tmp_path / "01-self" / "trajectories.jsonl").read_text().splitlines()]
    assert {e["score"] for e in episodes} == {0.0, 1.0}
    assert all(e["prompt_tokens"] > 0 for e in episodes)


def test_a_metric_with_feedback_is_what_the_optimiser_reads(tmp_path):
    def gepa_metric(gold, prediction, trace, pred_name, pred_trace):
        right = prediction.answer == gold.answer
        feedback = f"The numbers were meant to be added: {gold.answer}."
        return dspy.Prediction(score=float(right), feedback=feedback)

    model = Model()
    result = optimize_program(dspy.Predict("question -> answer"), metric=gepa_metric, model=model.name,
                              run_dir=tmp_path, method_config=PROMST, **data("answer"))
    assert result.test.score.mean == 1.0
    assert any("The numbers were meant to be added" in p for p in model.meta_prompts)
    assert not any("wrong answer: expected" in p for p in model.meta_prompts)


def test_a_budget_cap_is_respected(tmp_path):
    model = Model()
    result = optimize_program(dspy.Predict("question -> answer"), metric=exact, model=model.name,
                              run_dir=tmp_path, budget_calls=6, method_config=PROMST, **data("answer"))
    run = result.runs[0]
    assert run.stopped_by == "budget" and run.lm_calls == result.lm_calls <= 6
    refused = [r for r in journals(tmp_path) if r.error]
    assert refused and all("budget" in r.error.lower() for r in refused)


def test_resume_pays_nothing_again(tmp_path):
    model = Model()
    first = optimize_program(dspy.Predict("question -> answer"), metric=exact, model=model.name,
                             run_dir=tmp_path, method_config=PROMST, **data("answer"))
    paid = model.calls
    again = optimize_program(dspy.Predict("question -> answer"), metric=exact, model=model.name,
                             run_dir=tmp_path, method_config=PROMST, resume=True, **data("answer"))
    assert model.calls == paid
    assert again.model_dump(exclude={"runs"}) == first.model_dump(exclude={"runs"})
    with pytest.raises(UserError, match="already holds a run"):
        optimize_program(dspy.Predict("question -> answer"), metric=exact, model=model.name,
                         run_dir=tmp_path, method_config=PROMST, **data("answer"))
    with pytest.raises(UserError, match="cannot be resumed as method='apo'"):
        optimize_program(dspy.Predict("question -> answer"), metric=exact, model=model.name,
                         run_dir=tmp_path, method="apo", resume=True, **data("answer"))
    with pytest.raises(UserError, match="another program or other examples"):
        other = {**data("answer"), "testset": examples(20, 3, "answer")}
        optimize_program(dspy.Predict("question -> answer"), metric=exact, model=model.name, run_dir=tmp_path,
                         method_config=PROMST, resume=True, **other)


# --- two predictors ---------------------------------------------------------------------------
def test_two_predictors_are_optimised_in_turn_and_a_killed_run_resumes_without_paying(tmp_path):
    model, program = Model(), TwoSteps()
    before = instructions(program)
    full = tmp_path / "full"
    teleprompter = AgentoptTeleprompter(half_each, model=model.name, run_dir=full, method_config=PROMST,
                                        budget_calls=60)
    d = data("numbers", "answer")
    compiled = teleprompter.compile(program, d["trainset"], d["valset"], testset=d["testset"])
    result = teleprompter.result
    assert result.predictors == ["extract", "solve"]
    assert LIST in compiled.extract.signature.instructions and ADD in compiled.solve.signature.instructions
    # Each run scored its predictor's candidates with the other at its best so far.
    assert result.runs[0].human_test.score.mean == 0.0 and result.runs[0].test.score.mean == 0.5
    assert result.runs[1].human_test.score.mean == 0.5 and result.runs[1].test.score.mean == 1.0
    assert result.vs_original.mean == 1.0 and instructions(program) == before
    assert all(run.lm_calls <= 30 for run in result.runs)
    assert len(journals(full)) == result.total_calls

    # Killed while optimising the second predictor: its journal cut short, no result.
    killed = tmp_path / "killed"
    shutil.copytree(full, killed)
    second = killed / "02-solve"
    (second / "result.json").unlink()
    lines = (second / "events.jsonl").read_text().splitlines(keepends=True)
    (second / "events.jsonl").write_text("".join(lines[: len(lines) // 2]))
    paid = model.calls
    resumed = AgentoptTeleprompter(half_each, model=model.name, run_dir=killed, method_config=PROMST,
                                   budget_calls=60, resume=True)
    resumed.compile(TwoSteps(), d["trainset"], d["valset"], testset=d["testset"])
    assert model.calls == paid, "the resumed run called the model again"
    assert resumed.result.instructions == result.instructions


def test_without_a_valset_the_trainset_is_halved_with_the_seed(tmp_path):
    from agentopt.integrations._dspy_program import split_trainset

    rows = examples(0, 7, "answer")
    train, validation = split_trainset(rows, seed=3)
    assert (len(train), len(validation)) == (4, 3) and set(train).isdisjoint(validation)
    assert split_trainset(rows, seed=3) == (train, validation) != split_trainset(rows, seed=4)
    model = Model()
    result = optimize_program(dspy.Predict("question -> answer"), rows, exact, model=model.name,
                              run_dir=tmp_path, method_config=PROMST, seed=3)
    assert len(result.runs[0].validation.scores) == 3 and result.test.score.n == 0


# --- the LM bridge ----------------------------------------------------------------------------
def test_agentopt_lm_bypasses_dspys_cache_and_passes_tool_calls_through(tmp_path):
    asked = []

    def tool_model(messages, params):
        asked.append((messages, params))
        if messages[-1].role == "tool":
            return f"It is {messages[-1].content}."
        return {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "add", "arguments": json.dumps({"a": 2, "b": 3})}}]}

    agent_lm = LM(register_script(f"tools-{uuid.uuid4().hex[:8]}", tool_model), cache=tmp_path / "c.sqlite",
                  journal=tmp_path / "calls.jsonl")
    lm = integration.AgentoptLM(agent_lm)
    assert isinstance(lm, dspy.BaseLM) and lm.cache is False
    add = lm15.FunctionTool(name="add", description="Add two integers.", parameters={
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    question = lm15.Message.user("What is 2 + 3?")
    reply = lm(lm15.Request(model=lm.model, messages=(question,), tools=(add,)))
    call = reply.message.parts[0]
    assert (call.name, call.input) == ("add", {"a": 2, "b": 3})
    five = lm15.ToolResultPart(id=call.id, content=(lm15.TextPart("5"),))
    result = lm15.Message(role="tool", parts=(five,))
    answer = lm(lm15.Request(model=lm.model, messages=(question, reply.message, result), tools=(add,)))
    assert answer.message.parts[0].text == "It is 5."
    messages, params = asked[-1]
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0]["function"]["name"] == "add" and messages[2].tool_call_id == "c1"
    assert params["tools"][0]["function"]["name"] == "add" and params["temperature"] == 0.0
    # The same request again: answered by agentopt's cache (DSPy's is off), and journalled.
    lm(lm15.Request(model=lm.model, messages=(question,), tools=(add,)))
    assert len(asked) == 2 and agent_lm.cache_hits == 1
    assert [r.cached for r in CallJournal(tmp_path / "calls.jsonl").read()] == [False, False, True]


def test_sampled_calls_in_an_episode_are_named_samples_served_again_on_replay(tmp_path):
    from agentopt.integrations._dspy_lm import episode

    drawn = []
    model = register_script(f"draw-{uuid.uuid4().hex[:8]}",
                            lambda messages, params: drawn.append(params["sample"]) or f"draw {len(drawn)}")
    lm = integration.AgentoptLM(LM(model, cache=tmp_path / "c.sqlite", journal=False))
    # An explicit Request carries its own settings (the LM's defaults are for DSPy's adapters).
    request = lm15.Request(model=lm.model, messages=(lm15.Message.user("pick one"),),
                           config=lm15.Config(temperature=0.7))

    def play() -> list[str]:
        with episode("seed0/t/train/3"):
            return [lm(request).message.parts[0].text for _ in range(2)]

    first = play()
    assert drawn == ["seed0/t/train/3/0", "seed0/t/train/3/1"] and first == ["draw 1", "draw 2"]
    assert play() == first and len(drawn) == 2  # a replay (a resumed run) draws nothing new
    lm(request)  # outside an episode a sampled call is a fresh draw (agentopt's rule): never cached
    lm(request)
    assert drawn[2:] == [None, None]


def test_a_metric_outside_zero_one_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"scores are in \[0, 1\]"):
        optimize_program(dspy.Predict("question -> answer"), metric=lambda e, p: 5, model=Model().name,
                         run_dir=tmp_path, method_config=PROMST, **data("answer"))


def test_bad_arguments_are_user_errors(tmp_path, monkeypatch):
    program, d = dspy.Predict("question -> answer"), data("answer")
    with pytest.raises(UserError, match="no predictor named nope"):
        optimize_program(program, metric=exact, predictors=["nope"], run_dir=tmp_path, **d)
    with pytest.raises(UserError, match="with_inputs"):
        optimize_program(program, [dspy.Example(question="q", answer="a")], exact, run_dir=tmp_path)
    with pytest.raises(UserError, match="unknown setting"):
        optimize_program(program, metric=exact, run_dir=tmp_path, n_trian=3, **d)
    with pytest.raises(UserError, match="nothing to resume"):
        optimize_program(program, metric=exact, run_dir=tmp_path / "none", resume=True, **d)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="unknown method"):
        optimize_program(program, metric=exact, method="nope", **d)
    assert not (tmp_path / "runs").exists()  # checked before the run folder is made
    with pytest.raises(UserError, match="cannot be shared by 2"):
        optimize_program(TwoSteps(), metric=half_each, run_dir=tmp_path, budget_calls=1, **d)


# --- without DSPy -----------------------------------------------------------------------------
def test_a_missing_dspy_is_one_line_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dspy", None)  # what `import dspy` finds when it is not installed
    for name in [m for m in sys.modules if m.startswith("agentopt.integrations._dspy")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(UserError) as error:
        optimize_program(object(), [], exact)
    assert "\n" not in str(error.value) and "pip install 'agentopt[dspy]'" in str(error.value)
    with pytest.raises(UserError, match="needs DSPy"):
        integration.AgentoptLM  # noqa: B018


def test_importing_agentopt_or_the_integration_does_not_import_dspy():
    code = ("import sys, agentopt, agentopt.api, agentopt.integrations.dspy; "
            "sys.exit('dspy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
