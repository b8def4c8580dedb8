"""The confirmation run's table: each chosen prompt against the human prompt on fresh instances.

``confirm.sh`` plays the grid's cells again with 130 test instances. The first 30 are the
grid's own test instances (the cells were picked after their scores were seen); the other 100
were seen by nobody. So the verdict is the paired test on the fresh 100 alone, with Holm's
correction across the cells confirmed together. The grid's 30 are shown beside it to check
that the replay chose the same prompts as the grid (same scores there).

    python benchmarks/methods/confirm.py bench-out/confirm      # writes OUT/confirm.md too
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentopt.optimizers.base import OptimizationResult
from agentopt.runs.bench import per_instance
from agentopt.runs.optimize import load_result
from agentopt.stats import PairedDifference, mean_ci, paired_difference

GRID_TEST = 30  # test instances the grid scored: instance ids task/test/0 .. task/test/29


def instance_index(instance: str) -> int:
    return int(instance.rsplit("/", 1)[1])


def split_scores(scores: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    grid = {k: v for k, v in scores.items() if instance_index(k) < GRID_TEST}
    fresh = {k: v for k, v in scores.items() if instance_index(k) >= GRID_TEST}
    return grid, fresh


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: the family-wise error stays below alpha over all tests."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def load_runs(out: Path) -> list[OptimizationResult]:
    return [load_result(d) for d in sorted(out.glob("*/runs/*")) if (d / "result.json").is_file()]


def confirm_table(runs: list[OptimizationResult]) -> str:
    cells: list[tuple[str, str, PairedDifference, PairedDifference, float, float, str]] = []
    for task in dict.fromkeys(r.task for r in runs):
        human = [r for r in runs if r.task == task and r.method == "human"]
        if not human:
            continue
        human_grid, human_fresh = split_scores(per_instance(human))
        for method in dict.fromkeys(r.method for r in runs if r.task == task and r.method != "human"):
            mine = [r for r in runs if r.task == task and r.method == method]
            grid, fresh = split_scores(per_instance(mine))
            if not fresh or not human_fresh:
                continue
            chosen = ", ".join(
                f"seed {r.seed}: {'human' if r.best_prompt == human[0].best_prompt else 'own'}"
                for r in sorted(mine, key=lambda r: r.seed)
            )
            cells.append((task, f"{method} ({len(mine)} seeds)",
                          paired_difference(grid, human_grid), paired_difference(fresh, human_fresh),
                          mean_ci(list(fresh.values())).mean, mean_ci(list(human_fresh.values())).mean,
                          chosen))
    adjusted = holm([c[3].p_value for c in cells])
    lines = [
        "| task | method | prompt kept | grid's 30: minus human | fresh 100: human | fresh 100: method "
        "| fresh 100: minus human | Holm-adjusted p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (task, method, grid, fresh, mine, theirs, chosen), p in zip(cells, adjusted, strict=True):
        lines.append(f"| {task} | {method} | {chosen} | {grid} | {theirs:.3f} | {mine:.3f} | {fresh} "
                     f"| {p:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder confirm.sh wrote")
    args = parser.parse_args(argv)
    runs = load_runs(args.out)
    if not runs:
        print(f"confirm.py: no finished run under {args.out}", file=sys.stderr)
        return 2
    table = confirm_table(runs)
    (args.out / "confirm.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
