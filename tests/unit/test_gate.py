"""The significance gate: a child is kept over its parent only when validation says so."""

from __future__ import annotations

from pathlib import Path

from agentopt.lm import LM
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.optimizers.base import RunContext, SignificanceGate
from agentopt.runs.optimize import RunConfig, run_optimization
from agentopt.store.journal import RunJournal
from agentopt.tasks.loader import load_task
from agentopt.types import Instance, Prompt, Trajectory

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
HUMAN = "Add the numbers."
NOISY = "Add the numbers. Lucky hint."  # better on train only: noise of a small split
REAL = "Add the numbers, carrying tens."  # better everywhere


def table_agent(prompt: str, instance: Instance) -> Trajectory:
    """Scores by prompt and split, without a model, so each case is exactly what it claims."""
    train = instance.split == "train"
    if prompt == REAL:
        score = 1.0
    elif prompt == NOISY:  # all of train; on validation one instance more than the human prompt
        score = 1.0 if train else float(instance.index == 0)
    else:
        score = float(instance.index % 2) if train else 0.0
    return Trajectory(instance=instance, prompt_id=Prompt(text=prompt).id, score=score, success=score == 1.0)


def context(tmp_path: Path, gate: SignificanceGate | None) -> RunContext:
    task = load_task("sums", [FIXTURES])
    meter = BudgetMeter(Budget())
    return RunContext(
        task=task, agent=table_agent, optimizer_lm=LM("scripted/echo", cache=False, journal=False),
        meter=meter, journal=RunJournal(tmp_path / "events.jsonl", meter=meter),
        train=task.instances("train"), validation=task.instances("validation"), test=task.instances("test"),
        gate=gate,
    )


def children(ctx: RunContext):
    human = Prompt(text=HUMAN)
    ctx.add_candidate(human)
    parent = ctx.score(human)
    kids = [Prompt(text=t, parents=(human.id,), operator="test") for t in (NOISY, REAL)]
    for kid in kids:
        ctx.add_candidate(kid)
    return human, parent, [ctx.score(k) for k in kids]


def test_the_gate_refuses_a_child_that_is_better_on_train_only(tmp_path):
    ctx = context(tmp_path, SignificanceGate())
    human, parent, (noisy, real) = children(ctx)
    assert noisy.objective > parent.objective and real.objective > parent.objective
    assert not ctx.keeps_over_parent(noisy) and ctx.keeps_over_parent(real)
    assert ctx.gate_counts == {"checked": 2, "refused": 1}
    assert [s.prompt.text for s in ctx.gated_beam([parent], [noisy, real], 2)] == [REAL, HUMAN]
    # The refused child never becomes the reported prompt, however well it did on train.
    assert NOISY not in [s.prompt.text for s in ctx.best(3)]
    result = ctx.finish("test", human, "done", [])
    assert result.best_prompt.text == REAL
    # Counts are of the search's checks; the final check is reported on its own.
    assert result.gate == {"alpha": 0.05, "checked": 2, "refused": 1, "final_refused": False}


def test_without_the_gate_the_train_score_decides(tmp_path):
    ctx = context(tmp_path, None)
    _, parent, (noisy, real) = children(ctx)
    assert ctx.keeps_over_parent(noisy) and ctx.keeps_over_parent(real)
    assert ctx.gate_counts["checked"] == 0


def test_the_final_choice_must_beat_the_human_prompt_significantly(tmp_path):
    ctx = context(tmp_path, SignificanceGate())
    human = Prompt(text=HUMAN)
    ctx.add_candidate(human)
    ctx.score(human)
    noisy = Prompt(text=NOISY)  # no parent recorded: only the final check can stop it
    ctx.add_candidate(noisy)
    ctx.score(noisy)
    result = ctx.finish("test", human, "done", [], validate_top=1)
    assert result.best_prompt.text == HUMAN and result.gate["final_refused"] is True


def test_the_gate_is_on_by_default_only_where_validation_is_big_enough(tmp_path):
    import json

    base = RunConfig(task="sums", method="human", model="scripted/echo", tasks_dirs=[str(FIXTURES)])
    small = run_optimization(base, tmp_path / "six")  # 6 validation instances: too few to gate
    forced = run_optimization(base.model_copy(update={"significance_gate": True}), tmp_path / "on")
    assert small.gate is None and forced.gate is not None
    # The decision is written down, so a resumed run makes the same one.
    assert json.loads((tmp_path / "six" / "config.json").read_text())["significance_gate"] is False
    assert SignificanceGate().min_instances == 10


def test_the_gate_compares_objectives_so_a_step_penalty_counts():
    from agentopt.optimizers.base import Objective
    from agentopt.stats import MeanCI
    from agentopt.tasks.evaluate import Evaluation

    evaluation = Evaluation(task="t", split="validation", prompt_id="p", scores={"a": 1.0, "b": 1.0},
                            steps={"a": 2, "b": 5}, score=MeanCI(mean=1, low=1, high=1, n=2),
                            success_rate=1, mean_steps=3.5, prompt_tokens=0, completion_tokens=0,
                            rules_fired={})
    assert Objective(step_penalty=0.1).per_instance(evaluation) == {"a": 0.8, "b": 0.5}


def test_token_and_dollar_budgets_reach_the_run_and_the_cli(tmp_path):
    from typer.testing import CliRunner

    from agentopt.cli import app
    from tests.support import promst_toy

    model = promst_toy.register()
    config = promst_toy.config(model).model_copy(update={"budget_tokens": 300})
    result = run_optimization(config, tmp_path / "run")
    assert result.stopped_by == "budget"
    unlimited = run_optimization(promst_toy.config(model), tmp_path / "free")
    assert result.lm_calls < unlimited.lm_calls
    for command in ("optimize", "bench"):
        text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "--budget-tokens" in text and "--budget-usd" in text and "--gate" in text
