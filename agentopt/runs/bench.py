"""``agentopt bench``: methods x tasks x seeds, each compared with the human prompt.

Each (method, task, seed) is an ordinary run directory under ``OUT/runs/``, so an interrupted
benchmark continues where it stopped: finished runs are read back, unfinished ones resumed.
A run made with other settings than this bench asks (any but the transport ones, see
`_same_settings`), or on another version of its task, is refused, never reported as this
bench's: one line naming the run directory and the settings.
The human prompt is a run of its own (method ``human``: no search, scored on validation and
test), once per task, so its row never depends on which method ran first. All runs share an LM
response cache (``OUT/cache.sqlite``), so every method's re-scoring of the human prompt, and
anything else two runs ask alike, is answered from it; cached answers still count against each
run's budget, and a sampled call is named by its run's seed, so two seeds never share a draw.

The comparison is paired: every method's test scores are set beside the human prompt's on the
same test instances (a method's score on an instance is its mean over seeds), and the table
gives the mean difference, its bootstrap 95% CI and a Wilcoxon signed-rank p-value
(`agentopt.stats.paired_difference`). ``reference`` adds the same comparison against
another method (for example PROMST against each baseline).

Outputs in ``OUT``: ``results.md`` (the table), ``results.csv`` (one row per run) and
``score_vs_calls_<task>.png`` (one plot per task), rewritten after every run: while a bench
runs, or after it was stopped, they show the runs finished so far and say that they are partial.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.optimizers.base import OptimizationResult
from agentopt.optimizers.registry import build_optimizer
from agentopt.runs.config import TRANSPORT_FIELDS
from agentopt.runs.optimize import (
    RunConfig,
    check_same_task,
    load_config,
    load_result,
    run_optimization,
    task_fingerprint,
)
from agentopt.runs.report import fmt_ci, plot_score_vs_calls
from agentopt.stats import PairedDifference, mean_ci, paired_difference
from agentopt.store.rundir import RunDir
from agentopt.tasks.loader import load_task
from agentopt.tasks.protocol import is_task

HUMAN = "human"


def run_bench(
    base: RunConfig,
    tasks: Sequence[Any],
    methods: Sequence[str],
    out: Path,
    *,
    seeds: Sequence[int] = (0,),
    reference: str | None = None,
    on_start: Callable[[str, str, int], None] | None = None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[OptimizationResult]:
    tasks, methods, seeds = _checked_grid(base, tasks, methods, seeds)
    # One bench per output folder at a time: a second would run (and pay for) the same cells.
    lock = RunDir(out).lock()
    try:
        results = _run_cells(base, tasks, methods, out, seeds, on_start, on_event, reference)
    finally:
        lock.unlock()
    return results


def _checked_grid(
    base: RunConfig, tasks: Sequence[Any], methods: Sequence[str], seeds: Sequence[int]
) -> tuple[list[Any], list[str], list[int]]:
    """The bench's tasks, methods and seeds, each once, in the order given; refused in one
    line, before anything runs, when they cannot be what was meant."""
    for what, given in (("tasks", tasks), ("methods", methods), ("seeds", seeds)):
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise UserError(f"bench {what} must be a list, got {type(given).__name__} {given!r} "
                            f"(one {what[:-1]}: [{given!r}])")
        if not given:
            raise UserError(f"bench needs at least one of its {what}")
    methods = list(dict.fromkeys(methods))  # a method named twice is run (and reported) once
    seeds = list(dict.fromkeys(seeds))
    tasks = list(dict.fromkeys(tasks))
    asked = [HUMAN, *(m for m in methods if m != HUMAN)]
    for method in asked:  # an unknown method or a bad option fails now, not after others ran
        build_optimizer(method, base.method_config.get(method, {}))
    seen: dict[str, str] = {}  # a task's name (lower case) -> how the bench was given it
    for task in tasks:
        name = _task(task, base).name
        given = repr(task) if isinstance(task, str) else f"a task object named {name!r}"
        if name.lower() in seen:  # two spellings (or objects) of one name would share run directories
            raise UserError(f"bench tasks {seen[name.lower()]} and {given} are both the task {name!r}: "
                            "give it once")
        seen[name.lower()] = given
    stray = [key for key in base.method_config if key not in asked]
    if stray:
        raise UserError(
            f"method_config has {', '.join(map(repr, stray))}, which is not one of this bench's methods "
            f"({', '.join(asked)}): method_config maps a method to its options, e.g. "
            f"{{{asked[-1]!r}: {{...}}}}")
    return tasks, methods, seeds


def _task(given: Any, base: RunConfig) -> Any:
    """A bench task: an object as it is, else the task its spelling names."""
    return given if is_task(given) else load_task(given, base.tasks_dirs)


def _run_cells(
    base: RunConfig,
    tasks: Sequence[str],
    methods: Sequence[str],
    out: Path,
    seeds: Sequence[int],
    on_start: Callable[[str, str, int], None] | None,
    on_event: Callable[[str, dict[str, Any]], None] | None,
    reference: str | None,
) -> list[OptimizationResult]:
    results: list[OptimizationResult] = []
    cells = [(task, HUMAN, seeds[0]) for task in tasks]
    cells += [(task, m, s) for task in tasks for m in methods if m != HUMAN for s in seeds]
    # A task may be given as a folder path, module:attribute or a task object: its run
    # directories are named by the task's own name, and an object is handed to each run as it is.
    for given, method, seed in cells:
        task = _task(given, base)
        spelling = given if isinstance(given, str) else task.name
        run_dir = out / "runs" / f"{method}-{task.name}-seed{seed}"
        if on_start:
            on_start(method, task.name, seed)
        config = base.model_copy(update={"task": spelling, "method": method, "seed": seed,
                                         "method_config": base.method_config.get(method, {})})
        if (run_dir / "config.json").is_file():
            _same_settings(run_dir, config)
        if (run_dir / "result.json").is_file():
            _same_task(run_dir, config, task)
            results.append(load_result(run_dir))
            continue
        resume = (run_dir / "events.jsonl").is_file()
        # The outputs are rewritten before every run that has to be played, so a long bench
        # can be read (and plotted) while it runs, and one that was stopped shows what it had
        # finished, marked partial, never an older table that looks complete.
        if results:
            write_bench_outputs(results, out, reference=reference, of=len(cells))
        # One cache for every run: a sampled call is named by its run's seed (`LM.chat`), so
        # seeds never share a draw, while greedy episodes that two runs play alike are shared.
        results.append(run_optimization(config, run_dir, resume=resume, on_event=on_event,
                                        cache_path=out / "cache.sqlite",
                                        task=None if isinstance(given, str) else task))
    write_bench_outputs(results, out, reference=reference)
    return results


# Fields a bench's cell does not compare with its stored run: how the run reaches its model
# (`TRANSPORT_FIELDS`), and the task's spelling and where it was looked for, since the task's
# fingerprint (task.json) says whether it is the same task.
_NOT_COMPARED = TRANSPORT_FIELDS | {"task", "tasks_dirs"}


def _same_settings(run_dir: Path, config: RunConfig) -> None:
    """Refuse to reuse (or continue) a cell's run made with other settings than this bench's:
    its results would be reported as this bench's. The gate asked as None ("decide") agrees
    with whatever the run decided; the optimizer model left out is the task model."""
    stored = load_config(run_dir)
    differ = []
    for name in RunConfig.model_fields:
        if name in _NOT_COMPARED or (name == "significance_gate" and config.significance_gate is None):
            continue
        was, now = getattr(stored, name), getattr(config, name)
        if name == "optimizer_model":  # None: the task model, compared as model
            if was is None and now is None:
                continue
            was, now = was or stored.model, now or config.model
        if was != now:
            differ.append((name, was, now))
    if differ:
        was = ", ".join(f"{name}={value!r}" for name, value, _ in differ)
        now = ", ".join(f"{name}={value!r}" for name, _, value in differ)
        raise UserError(f"{run_dir} was run with {was}; this bench asks {now}: use another output "
                        "folder (--out), or the settings it was run with")


def _same_task(run_dir: Path, config: RunConfig, task: Any) -> None:
    """Refuse a finished cell whose task has changed since it ran (its prompt, rules or
    instances), as a resume does."""
    check_same_task(run_dir, task.name, task_fingerprint(task, load_config(run_dir)),
                    advice="use another output folder (--out)")


def single_attempts(runs: Sequence[OptimizationResult]) -> list[OptimizationResult]:
    """The runs whose ``test`` is one attempt per instance: a Reflexion result written before
    pass@k had its own field holds its best of k in ``test``, and is left out of comparisons."""
    return [r for r in runs if not (r.method == "reflexion" and r.pass_at_k is None)]


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
    mine = single_attempts([r for r in results if r.task == task and r.method == method])
    theirs = single_attempts([r for r in results if r.task == task and r.method == baseline])
    if not mine or not theirs:
        return None
    return paired_difference(per_instance(mine), per_instance(theirs))


Comparisons = dict[tuple[str, str, str], PairedDifference | None]


def comparisons(results: Sequence[OptimizationResult], against: Sequence[str]) -> Comparisons:
    """Every (task, method, baseline) comparison the tables show, made once: each is a
    bootstrap, and the per-task tables and the overview show the same ones."""
    pairs = dict.fromkeys((r.task, r.method) for r in results)
    return {(task, method, baseline): compare(results, task, method, baseline)
            for task, method in pairs for baseline in against if baseline != method}


def overview(
    results: Sequence[OptimizationResult], tasks: Sequence[str], methods: Sequence[str],
    diffs: Comparisons, against: Sequence[str], alpha: float = 0.05,
) -> list[str]:
    """One table for the whole bench: each method's test mean on each task, marked where its
    paired comparison with each of ``against`` (the human prompt, and the reference method if
    any) is significant, and how many tasks it won and lost. The per-task tables above carry
    the intervals and p-values."""

    def mark(diff: PairedDifference | None) -> str:
        if diff is None or diff.p_value >= alpha or diff.mean == 0:
            return ""
        return "+" if diff.mean > 0 else "-"

    lines = [
        "## All tasks",
        "",
        f"Test mean per task. A mark after a score, such as (+{against[-1]}), says the method is "
        f"better (+) or worse (-) than that method on that task, paired over the test instances, "
        f"p < {alpha}. Each mark is a test of its own, with no correction for the many in this "
        f"table: of the comparisons between methods that do not differ, about one in "
        f"{round(1 / alpha)} comes out marked by chance.",
        "",
        "| method | " + " | ".join(tasks) + " | "
        + " | ".join(f"better / worse than {b} (of tasks run)" for b in against) + " |",
        "|" + " --- |" * (1 + len(tasks) + len(against)),
    ]
    for method in methods:
        cells, counts = [method], {b: [0, 0] for b in against}
        for task in tasks:
            runs = [r for r in results if r.task == task and r.method == method]
            if not runs:
                cells.append("-")
                continue
            marks = []
            for baseline in against:
                sign = mark(diffs.get((task, method, baseline)))
                if sign:
                    counts[baseline][0 if sign == "+" else 1] += 1
                    marks.append(sign + baseline)
            score = mean_ci(list(per_instance(runs).values())).mean
            cells.append(f"{score:.3f}" + (f" ({', '.join(marks)})" if marks else ""))
        ran = sum(any(r.task == t and r.method == method for r in results) for t in tasks)
        cells += ["-" if b == method else f"{counts[b][0]} / {counts[b][1]} of {ran}" for b in against]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def write_bench_outputs(
    results: Sequence[OptimizationResult], out: Path, *, reference: str | None = None,
    of: int | None = None,
) -> None:
    """Write the bench's table, CSV and plots for ``results``; ``of``: how many runs the bench
    has in all, when these are only the ones finished so far."""
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r.task for r in results))
    methods = [HUMAN] + [m for m in dict.fromkeys(r.method for r in results) if m != HUMAN]
    lines = ["# Benchmark: held-out test scores", ""]
    if of is not None and len(results) < of:
        lines += [f"**Partial: {len(results)} of {of} runs finished.** The bench is still running, or "
                  "was stopped; run it again to finish it.", ""]
    lines += [
        "Test mean [95% CI] over the test instances (a method's instance score is its mean over "
        "seeds); the paired difference with the human prompt on the same instances, with its "
        "bootstrap 95% CI and Wilcoxon signed-rank p-value; LM calls of the search and of the whole "
        "run, validation and test scoring included (means over seeds). Every test score is one "
        "attempt per instance. A method that retries until the environment says it succeeded "
        "(Reflexion) has its best-of-k score in the pass@k column only: it is never compared "
        "with single attempts.",
        "",
    ]
    against = [HUMAN] + ([reference] if reference and reference != HUMAN else [])
    diffs = comparisons(results, against)
    for task in tasks:
        header = ("| method | seeds | test | " + " | ".join(f"vs {b}" for b in against)
                  + " | pass@k (k) | search calls | all calls |")
        lines += [f"## {task}", "", header, "|" + " --- |" * (6 + len(against))]
        for method in methods:
            runs = [r for r in results if r.task == task and r.method == method]
            if not runs:
                continue
            scores = per_instance(runs)
            cells = [method, str(len(runs)), fmt_ci(mean_ci(list(scores.values())))]
            for baseline in against:
                diff = diffs.get((task, method, baseline))
                cells.append(str(diff) if diff else "-")
            best_of_k = [r for r in runs if r.pass_at_k is not None]
            if best_of_k:
                mean = sum(r.pass_at_k.score.mean for r in best_of_k) / len(best_of_k)  # type: ignore[union-attr]
                cells.append(f"{mean:.3f} ({best_of_k[0].attempts})")
            else:
                cells.append("-")
            cells.append(f"{sum(r.lm_calls for r in runs) / len(runs):.0f}")
            cells.append(f"{sum(r.total_calls or r.lm_calls for r in runs) / len(runs):.0f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if len(tasks) > 1:
        lines += overview(results, tasks, methods, diffs, against)
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")

    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "method", "seed", "test_mean", "test_low", "test_high", "test_n",
                         "validation_mean", "lm_calls", "total_calls", "pass_at_k_mean", "attempts",
                         "gate_checked", "gate_refused", "n_candidates", "stopped_by", "best_prompt_id",
                         "run_dir"])
        for r in results:
            writer.writerow([r.task, r.method, r.seed, r.test.score.mean, r.test.score.low,
                             r.test.score.high, r.test.score.n, r.validation.score.mean, r.lm_calls,
                             r.total_calls, r.pass_at_k.score.mean if r.pass_at_k else "", r.attempts,
                             r.gate["checked"] if r.gate else "", r.gate["refused"] if r.gate else "",
                             r.n_candidates, r.stopped_by, r.best_prompt.id, r.run_dir])
    plots: set[str] = set()
    for t in tasks:
        searched = [r for r in results if r.task == t and r.method != HUMAN]
        if searched:
            plots.add(plot_score_vs_calls(searched, out / f"score_vs_calls_{t}.png", title=t).name)
    for stale in out.glob("score_vs_calls_*.png"):  # from an earlier bench in this folder
        if stale.name not in plots:
            stale.unlink()
