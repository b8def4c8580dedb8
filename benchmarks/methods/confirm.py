"""The confirmation run's table: each chosen prompt against the human prompt on fresh instances.

``confirm.sh`` plays the grid's cells again with 130 test instances and writes its plan (the
cells and seeds) to ``OUT/plan.json`` before the first run. The first 30 test instances are
the grid's own (the cells were picked after their scores were seen); the other 100 were seen
by nobody. So the verdict is the paired test on the fresh 100 alone, with Holm's correction
over every planned cell: a cell that has not finished counts as p = 1, so that a partial run
can never make the others look stronger than the plan allows. The grid's 30 are shown beside
it to check that the replay chose what the grid chose (same scores there).

    python benchmarks/methods/confirm.py bench-out/confirm      # writes OUT/confirm.md too
    python benchmarks/methods/confirm.py OUT --plan "task:method,method ..." --seeds 0,1,2
                                                     # what confirm.sh runs first
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentopt.errors import UserError
from agentopt.runs.bench import per_instance
from agentopt.runs.optimize import load_result
from agentopt.stats import PairedDifference, mean_ci, paired_difference
from benchmarks.methods.plan_file import instance_index, keep_plan, read_plan

GRID_TEST = 30  # test instances the grid scored: instance ids task/test/0 .. task/test/29
ALPHA = 0.05


class Plan(BaseModel):
    cells: list[tuple[str, str]]  # (task, method), in the order they are played
    seeds: list[int]


class Cell(BaseModel):
    task: str
    method: str
    seeds_done: int
    kept: str = ""  # per seed: the human prompt or its own
    grid: PairedDifference | None = None
    fresh: PairedDifference | None = None
    human_fresh: float | None = None
    method_fresh: float | None = None


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


def measure(plan: Plan, runs: list[Any]) -> list[Cell]:
    """One row per planned cell; a cell short of a seed, or of the human prompt's run, or of
    fresh instances, is reported unfinished (no test)."""
    cells = []
    for task, method in plan.cells:
        human = [r for r in runs if r.task == task and r.method == "human"]
        mine = sorted((r for r in runs if r.task == task and r.method == method), key=lambda r: r.seed)
        cell = Cell(task=task, method=method, seeds_done=len(mine))
        cells.append(cell)
        if not human or {r.seed for r in mine} != set(plan.seeds):
            continue
        human_grid, human_fresh = split_scores(per_instance(human))
        grid, fresh = split_scores(per_instance(mine))
        if not fresh or not human_fresh:
            continue
        human_id = human[0].best_prompt.id
        cell.kept = ", ".join(f"seed {r.seed}: {'human' if r.best_prompt.id == human_id else 'own'}"
                              for r in mine)
        cell.grid = paired_difference(grid, human_grid)
        cell.fresh = paired_difference(fresh, human_fresh)
        cell.human_fresh = mean_ci(list(human_fresh.values())).mean
        cell.method_fresh = mean_ci(list(fresh.values())).mean
    return cells


def confirm_table(plan: Plan, runs: list[Any]) -> str:
    cells = measure(plan, runs)
    adjusted = holm([c.fresh.p_value if c.fresh else 1.0 for c in cells])
    lines = [
        "| task | method | prompt chosen | grid's 30: minus human | fresh 100: human | fresh 100: method "
        "| fresh 100: minus human | Holm-adjusted p | confirmed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell, p in zip(cells, adjusted, strict=True):
        if cell.fresh is None:
            lines.append(f"| {cell.task} | {cell.method} | not finished ({cell.seeds_done} of "
                         f"{len(plan.seeds)} seeds) | | | | | {p:.3g} | no |")
            continue
        confirmed = "**yes**" if cell.fresh.mean > 0 and p < ALPHA else "no"
        lines.append(f"| {cell.task} | {cell.method} | {cell.kept} | {cell.grid} | {cell.human_fresh:.3f} "
                     f"| {cell.method_fresh:.3f} | {cell.fresh} | {p:.3g} | {confirmed} |")
    return "\n".join(lines)


def read_confirmation_plan(out: Path) -> Plan:
    plan = read_plan(out, Plan, "confirmation")
    if plan is None:
        raise UserError(f"{out} has no plan.json: give the folder confirm.sh wrote")
    return plan


def parse_plan(cells: str, seeds: str) -> Plan:
    """``task:method,method task:method ...`` and ``0,1,2``, as confirm.sh gives them."""
    pairs = []
    for cell in cells.split():
        task, sep, methods = cell.partition(":")
        names = methods.split(",")
        if not (sep and task and all(names)):
            raise UserError(f"cell {cell!r} is not task:method[,method...]")
        pairs += [(task, method) for method in names]
    try:
        return Plan(cells=pairs, seeds=[int(s) for s in seeds.split(",")])
    except ValueError:
        raise UserError(f"--seeds expects comma-separated integers, got {seeds!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder confirm.sh wrote")
    parser.add_argument("--plan", help="write (or check) the plan for these cells, and stop")
    parser.add_argument("--seeds", default="0,1,2", help="the seeds of the plan")
    args = parser.parse_args(argv)
    try:
        if args.plan is not None:
            keep_plan(args.out, parse_plan(args.plan, args.seeds), "confirmation")
            return 0
        plan = read_confirmation_plan(args.out)
        runs = [load_result(d) for d in sorted(args.out.glob("*/runs/*")) if (d / "result.json").is_file()]
    except UserError as exc:
        print(f"confirm.py: {exc}", file=sys.stderr)
        return 2
    table = confirm_table(plan, runs)
    (args.out / "confirm.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
