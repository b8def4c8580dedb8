"""``agentopt bench``: methods x tasks, with the human prompt as the baseline.

Each (method, task) pair is an ordinary run directory under ``OUT/runs/``, so an interrupted
benchmark continues where it stopped: finished pairs are read back, unfinished ones resumed.
Outputs in ``OUT``: ``results.md`` (the table), ``results.csv`` (every number) and
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


def run_bench(
    base: RunConfig,
    tasks: Sequence[str],
    methods: Sequence[str],
    out: Path,
    on_start: Callable[[str, str], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[OptimizationResult]:
    results: list[OptimizationResult] = []
    for task in tasks:
        for method in methods:
            run_dir = out / "runs" / f"{method}-{task}"
            if on_start:
                on_start(method, task)
            if (run_dir / "result.json").is_file():
                results.append(load_result(run_dir))
                continue
            config = base.model_copy(update={"task": task, "method": method,
                                             "method_config": base.method_config.get(method, {})})
            resume = (run_dir / "events.jsonl").is_file()
            results.append(run_optimization(config, run_dir, resume=resume, on_event=on_event))
    write_bench_outputs(results, out)
    return results


def write_bench_outputs(results: Sequence[OptimizationResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r.task for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    by_key = {(r.method, r.task): r for r in results}

    header = "| method | " + " | ".join(tasks) + " | mean |"
    lines = ["# Benchmark: test score (mean [95% CI]) on held-out instances", "", header,
             "|" + " --- |" * (len(tasks) + 2)]
    human = {t: next(r.human_test for r in results if r.task == t) for t in tasks}
    lines.append("| human | " + " | ".join(fmt_ci(human[t].score) for t in tasks)
                 + f" | {_mean([human[t].score.mean for t in tasks]):.3f} |")
    for m in methods:
        cells = [fmt_ci(by_key[(m, t)].test.score) if (m, t) in by_key else "-" for t in tasks]
        means = [by_key[(m, t)].test.score.mean for t in tasks if (m, t) in by_key]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_mean(means):.3f} |")
    lines += ["", "LM calls used by each search:", "", "| method | " + " | ".join(tasks) + " |",
              "|" + " --- |" * (len(tasks) + 1)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(str(by_key[(m, t)].lm_calls) if (m, t) in by_key else "-"
                                             for t in tasks) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "method", "test_mean", "test_low", "test_high", "validation_mean",
                         "human_test_mean", "human_validation_mean", "lm_calls", "n_candidates",
                         "stopped_by", "best_prompt_id", "run_dir"])
        for r in results:
            writer.writerow([r.task, r.method, r.test.score.mean, r.test.score.low, r.test.score.high,
                             r.validation.score.mean, r.human_test.score.mean, r.human_validation.score.mean,
                             r.lm_calls, r.n_candidates, r.stopped_by, r.best_prompt.id, r.run_dir])
    for t in tasks:
        plot_score_vs_calls([r for r in results if r.task == t], out / f"score_vs_calls_{t}.png", title=t)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
