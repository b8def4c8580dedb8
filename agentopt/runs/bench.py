"""``agentopt bench``: methods x tasks x seeds, each compared with the human prompt.

Each (method, task, seed) is an ordinary run directory under ``OUT/runs/``, so an interrupted
benchmark continues where it stopped: finished runs are read back, unfinished ones resumed.
The human prompt is a run of its own (method ``human``: no search, scored on validation and
test), once per task, so its row never depends on which method ran first. The runs of one
seed share an LM response cache (``OUT/cache-seed<N>.sqlite``), so every method's re-scoring of
the human prompt, and anything else two runs ask alike, is answered from it; cached answers
still count against each run's budget.

The comparison is paired: every method's test scores are set beside the human prompt's on the
same test instances (a method's score on an instance is its mean over seeds), and the table
gives the mean difference, its bootstrap 95% CI and a Wilcoxon signed-rank p-value
(`agentopt.runs.stats.paired_difference`). ``reference`` adds the same comparison against
another method (for example PROMST against each baseline).

Outputs in ``OUT``: ``results.md`` (the table), ``results.csv`` (one row per run) and
``score_vs_calls_<task>.png`` (one plot per task).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentopt.optimizers.base import OptimizationResult
from agentopt.runs.optimize import RunConfig, load_result, run_optimization
from agentopt.runs.report import fmt_ci, plot_score_vs_calls
from agentopt.runs.stats import PairedDifference, mean_ci, paired_difference

HUMAN = "human"
# Methods whose test score is the best of several attempts judged by the environment: never
# paired with a single-attempt score as if they were the same kind of number.
NOT_ONE_ATTEMPT = {"reflexion"}


def run_bench(
    base: RunConfig,
    tasks: Sequence[str],
    methods: Sequence[str],
    out: Path,
    *,
    seeds: Sequence[int] = (0,),
    reference: str | None = None,
    on_start: Callable[[str, str, int], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[OptimizationResult]:
    results: list[OptimizationResult] = []
    cells = [(task, HUMAN, seeds[0]) for task in tasks]
    cells += [(task, m, s) for task in tasks for m in methods if m != HUMAN for s in seeds]
    for task, method, seed in cells:
        run_dir = out / "runs" / f"{method}-{task}-seed{seed}"
        if on_start:
            on_start(method, task, seed)
        if (run_dir / "result.json").is_file():
            results.append(load_result(run_dir))
            continue
        config = base.model_copy(update={"task": task, "method": method, "seed": seed,
                                         "method_config": base.method_config.get(method, {})})
        resume = (run_dir / "events.jsonl").is_file()
        # One cache per seed: optimizer calls are told apart by their sample index, not by the
        # seed, so a shared cache would hand seed 1 the samples seed 0 drew.
        results.append(run_optimization(config, run_dir, resume=resume, on_event=on_event,
                                        cache_path=out / f"cache-seed{seed}.sqlite"))
    write_bench_outputs(results, out, reference=reference)
    return results


def per_instance(runs: Sequence[OptimizationResult]) -> dict[str, float]:
    """Test score per instance, averaged over the runs (seeds) that scored it."""
    sums: dict[str, list[float]] = {}
    for run in runs:
        for instance, score in run.test.scores.items():
            sums.setdefault(instance, []).append(score)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def compare(
    results: Sequence[OptimizationResult], task: str, method: str, baseline: str
) -> PairedDifference | None:
    mine = [r for r in results if r.task == task and r.method == method]
    theirs = [r for r in results if r.task == task and r.method == baseline]
    if not mine or not theirs or NOT_ONE_ATTEMPT & {method, baseline}:
        return None
    return paired_difference(per_instance(mine), per_instance(theirs))


def write_bench_outputs(
    results: Sequence[OptimizationResult], out: Path, *, reference: str | None = None
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r.task for r in results))
    methods = [HUMAN] + [m for m in dict.fromkeys(r.method for r in results) if m != HUMAN]
    lines = [
        "# Benchmark: held-out test scores",
        "",
        "Test mean [95% CI] over the test instances (a method's instance score is its mean over "
        "seeds); the paired difference with the human prompt on the same instances, with its "
        "bootstrap 95% CI and Wilcoxon signed-rank p-value; LM calls of the search (mean over seeds).",
        "",
    ]
    for task in tasks:
        against = [HUMAN] + ([reference] if reference and reference != HUMAN else [])
        header = "| method | seeds | test | " + " | ".join(f"vs {b}" for b in against) + " | search calls |"
        lines += [f"## {task}", "", header, "|" + " --- |" * (4 + len(against))]
        for method in methods:
            runs = [r for r in results if r.task == task and r.method == method]
            if not runs:
                continue
            scores = per_instance(runs)
            cells = [method, str(len(runs)), fmt_ci(mean_ci(list(scores.values())))]
            for baseline in against:
                diff = compare(results, task, method, baseline) if baseline != method else None
                cells.append(str(diff) if diff else "-")
            cells.append(f"{sum(r.lm_calls for r in runs) / len(runs):.0f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")

    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "method", "seed", "test_mean", "test_low", "test_high", "test_n",
                         "validation_mean", "lm_calls", "n_candidates", "stopped_by", "best_prompt_id",
                         "run_dir"])
        for r in results:
            writer.writerow([r.task, r.method, r.seed, r.test.score.mean, r.test.score.low,
                             r.test.score.high, r.test.score.n, r.validation.score.mean, r.lm_calls,
                             r.n_candidates, r.stopped_by, r.best_prompt.id, r.run_dir])
    for t in tasks:
        plot_score_vs_calls([r for r in results if r.task == t and r.method != HUMAN],
                            out / f"score_vs_calls_{t}.png", title=t)
