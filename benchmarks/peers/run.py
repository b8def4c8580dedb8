"""agentopt against DSPy's MIPROv2 and GEPA: same model, same tasks, same budget, same test set.

    pip install -e '.[peers]'
    python -m benchmarks.peers.run --serve local/qwen2.5-coder-0.5b \\
        --tasks multistep_arithmetic,object_counting --seeds 0,1,2 --budget-calls 60 \\
        --n-train 8 --n-validation 8 --n-test 20 --out bench-out/peers

Every call goes through one `CountingProxy` in front of one model server (``--serve`` starts
``agentopt serve`` for a local model; ``--api-base`` uses a running server), each run under its
own tag, so calls and tokens are counted in one place for both sides. Each run starts with an
empty cache (agentopt: a fresh run directory; DSPy: a fresh in-memory cache, disk cache off).

Per (task, seed): agentopt's method (PROMST unless ``--agentopt-method``) with
``--budget-calls`` for its search; MIPROv2 and GEPA sized to spend about as many calls (see
`mipro_trials` and `gepa_metric_calls`; the calls they really made are what the table shows);
then each result scored on the same test instances, one attempt each. The unoptimised DSPy
program is scored once per task, as DSPy's own starting point. ``--agentopt-also`` adds more of
agentopt's methods (cells ``agentopt-NAME``), each with the same budget; they are reported beside
the primary one, which stays the comparison fixed in advance. Finished cells are kept in
``OUT/cells.jsonl``, so an interrupted run continues (the cell it was in is played again from
the start, so the proxy counts all of its calls); ``--report`` rewrites the outputs only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentopt.runs.optimize import RunConfig, run_optimization
from agentopt.tasks.loader import Task, load_task
from benchmarks.peers.proxy import CountingProxy

AGENTOPT_SIDE = "agentopt"
PEERS = ("mipro", "gepa")
BASELINE = "dspy-zero-shot"


class Cell(BaseModel):
    """One method's run on one task and seed, counted at the proxy."""

    task: str
    method: str
    seed: int
    test_scores: dict[str, float]
    search_calls: int
    search_tokens: int
    test_calls: int
    wall_s: float
    budget_calls: int | None = None
    instruction: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def test_mean(self) -> float:
        return sum(self.test_scores.values()) / max(1, len(self.test_scores))


# --- sizing the peers to the budget -----------------------------------------------------------
def mipro_trials(budget: int, n_train: int, n_validation: int, num_candidates: int, steps: float) -> int:
    """Trials that leave MIPROv2 at about ``budget`` calls. Bootstrapping plays the train set at
    most once per few-shot candidate past the first two (zero-shot and labelled-only need no
    calls); proposing takes about ``num_candidates + 8`` calls (a data summary, a program
    description, one instruction per candidate); each trial scores the validation set."""
    bootstrap = max(0, num_candidates - 2) * n_train * steps
    overhead = bootstrap + num_candidates + 8
    return max(1, int((budget - overhead) // max(1.0, n_validation * steps)))


def agentopt_search_budget(budget: int, n_validation: int, steps: float, validate_top: int = 3) -> int:
    """agentopt's ``--budget-calls`` so that its search plus its choice on validation (the top
    ``validate_top`` prompts and the human one) spend ``budget``: the peers choose on
    validation inside their search, so the comparison counts agentopt's choice too."""
    return max(1, int(budget - (validate_top + 1) * n_validation * steps))


def gepa_metric_calls(budget: int, steps: float, minibatch: int) -> int:
    """Metric calls (episodes) for GEPA at about ``budget`` LM calls: every reflection costs one
    call per ``2 * minibatch`` episodes (a minibatch before and after the proposal)."""
    per_episode = steps + 1.0 / (2 * minibatch)
    return max(1, int(budget / per_episode))


# --- one cell per method ----------------------------------------------------------------------
def agentopt_method_config(args: argparse.Namespace, method: str) -> dict[str, Any]:
    return json.loads(Path(args.config).read_text()).get(method, {}) if args.config else {}


def agentopt_cell_name(method: str, args: argparse.Namespace) -> str:
    """``agentopt`` for the primary method (the comparison fixed in advance), else ``agentopt-NAME``."""
    return AGENTOPT_SIDE if method == args.agentopt_method else f"{AGENTOPT_SIDE}-{method}"


def steps_per_episode(task: Task, args: argparse.Namespace) -> float:
    return float(args.steps_per_episode or task.make_env(task.instances("train", 1)[0]).max_steps)


def search_budget_for(task: Task, args: argparse.Namespace, method_config: dict[str, Any]) -> int:
    """agentopt's search budget on ``task``; refused (SystemExit, one line) when it cannot even
    score the human prompt on the train instances, which every search starts with."""
    steps = steps_per_episode(task, args)
    n_validation = min(args.n_validation, task.splits.validation)
    budget = agentopt_search_budget(args.budget_calls, n_validation, steps,
                                    method_config.get("validate_top", 3))
    root = min(args.n_train, task.splits.train) * steps
    if budget < root:
        raise SystemExit(
            f"error: --budget-calls {args.budget_calls} leaves agentopt {budget} calls of search on "
            f"{task.name} after choosing on validation, and scoring the human prompt on train "
            f"takes {root:.0f} ({steps:g} steps per episode): raise --budget-calls, or give "
            "--steps-per-episode "
            "(the default assumes every episode runs to the task's step limit)"
        )
    return budget


def check_method(name: str) -> None:
    """An agentopt method name that no optimiser answers to stops the run before it starts."""
    from agentopt.errors import UserError
    from agentopt.optimizers import method_class

    try:
        method_class(name)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None


def run_agentopt(task: Task, seed: int, args: argparse.Namespace, proxy: CountingProxy, out: Path,
                 method: str) -> Cell:
    cell_name = agentopt_cell_name(method, args)
    tag = f"{cell_name}-{task.name}-seed{seed}"
    method_config = agentopt_method_config(args, method)
    budget = search_budget_for(task, args, method_config)
    config = RunConfig(
        task=task.name,
        method=method,
        model=f"openai/{args.served_model}",
        api_base=proxy.url(tag),
        seed=seed,
        n_train=args.n_train,
        n_validation=args.n_validation,
        n_test=args.n_test,
        budget_calls=budget,
        agent_max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        concurrency=1,
        method_config=method_config,
        tasks_dirs=args.tasks_dir,
    )
    search_end: dict[str, Any] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        # The search, choice on validation included, ends where test scoring begins; the
        # proxy's count at that moment is what it spent.
        if kind == "phase" and data.get("phase") == "test" and "tally" not in search_end:
            search_end["tally"] = proxy.tally(tag)
            search_end["t"] = time.monotonic()

    run_dir = out / "runs" / tag
    if run_dir.exists():
        # A cell cut short is played again from the start, not resumed: a resumed run would
        # replay its journal for free, and the proxy, which counted the first attempt's calls,
        # would then show less than the search spent. The cut run is kept beside it.
        k = 1
        while run_dir.with_name(f"{tag}.interrupted-{k}").exists():
            k += 1
        run_dir.rename(run_dir.with_name(f"{tag}.interrupted-{k}"))
        print(f"    {tag} was cut short before: played again from the start", flush=True)
    t0 = time.monotonic()
    result = run_optimization(config, run_dir, on_event=on_event)
    wall = search_end.get("t", time.monotonic()) - t0
    final = proxy.tally(tag)
    search = search_end.get("tally", final)
    return Cell(
        task=task.name,
        method=cell_name,
        seed=seed,
        test_scores=result.test.scores,
        search_calls=search.calls,
        search_tokens=search.tokens,
        test_calls=final.calls - search.calls,
        wall_s=wall,
        budget_calls=args.budget_calls,
        instruction=result.best_prompt.text,
        extra={
            "method": method,
            "search_budget": budget,
            "own_count": result.lm_calls,
            "gate": result.gate,
            "human_test": result.human_test.score.mean,
        },
    )


def dspy_lm(
    proxy: CountingProxy, tag: str, args: argparse.Namespace, max_tokens: int, temperature: float = 0.0
) -> Any:
    """A DSPy LM through the proxy. The agent plays greedily, as agentopt's does; the model that
    writes proposals samples (``--proposal-temperature``), as GEPA's and MIPROv2's docs advise
    and as agentopt's PROMST does (0.8 in benchmarks/demo/config.json)."""
    import dspy

    return dspy.LM(
        f"openai/{args.served_model}",
        api_base=proxy.url(tag),
        api_key="no-key-needed",
        temperature=temperature,
        max_tokens=max_tokens,
        cache=True,
        num_retries=2,
        timeout=args.timeout,
    )


def fresh_dspy_cache() -> None:
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)


def score_program(program: Any, instances: Sequence[Any], lm: Any) -> dict[str, float]:
    import dspy

    scores: dict[str, float] = {}
    with dspy.context(lm=lm):
        for instance in instances:
            scores[instance.id] = float(program(episode=instance.model_dump(mode="json")).score)
    return scores


def run_peer(method: str, task: Task, seed: int, args: argparse.Namespace, proxy: CountingProxy) -> Cell:
    import dspy

    from benchmarks.peers.programs import EnvProgram, examples, feedback_metric, score_metric

    fresh_dspy_cache()
    tag = f"{method}-{task.name}-seed{seed}"
    task_lm = dspy_lm(proxy, tag, args, args.max_tokens)
    prompt_lm = dspy_lm(proxy, tag, args, args.optimizer_max_tokens, args.proposal_temperature)
    train = task.instances("train", args.n_train)
    validation = task.instances("validation", args.n_validation)
    test = task.instances("test", args.n_test)
    steps = steps_per_episode(task, args)
    program = EnvProgram(task)
    t0 = time.monotonic()
    with dspy.context(lm=task_lm):
        if method == "mipro":
            trials = mipro_trials(
                args.budget_calls, len(train), len(validation), args.mipro_candidates, steps
            )
            optimizer = dspy.MIPROv2(
                metric=score_metric,
                prompt_model=prompt_lm,
                task_model=task_lm,
                auto=None,
                num_candidates=args.mipro_candidates,
                max_bootstrapped_demos=2,
                max_labeled_demos=2,
                num_threads=1,
                seed=seed,
                verbose=False,
            )
            compiled = optimizer.compile(
                program,
                trainset=examples(train),
                valset=examples(validation),
                num_trials=trials,
                minibatch=False,
            )
            sizing = {"num_trials": trials, "num_candidates": args.mipro_candidates}
        else:
            metric_calls = gepa_metric_calls(args.budget_calls, steps, args.gepa_minibatch)
            optimizer = dspy.GEPA(
                metric=feedback_metric,
                max_metric_calls=metric_calls,
                reflection_lm=prompt_lm,
                reflection_minibatch_size=args.gepa_minibatch,
                num_threads=1,
                seed=seed,
                track_stats=False,
            )
            compiled = optimizer.compile(program, trainset=examples(train), valset=examples(validation))
            sizing = {"max_metric_calls": metric_calls}
    search = proxy.tally(tag)
    wall = time.monotonic() - t0
    test_tag = f"{tag}-test"
    scores = score_program(compiled, test, dspy_lm(proxy, test_tag, args, args.max_tokens))
    demos = len(getattr(compiled.act, "demos", []) or [])
    return Cell(
        task=task.name,
        method=method,
        seed=seed,
        test_scores=scores,
        search_calls=search.calls,
        search_tokens=search.tokens,
        test_calls=proxy.tally(test_tag).calls,
        wall_s=wall,
        budget_calls=args.budget_calls,
        instruction=compiled.instruction(),
        extra={**sizing, "proposal_temperature": args.proposal_temperature, "demos": demos,
               "failed_calls": search.failed},
    )


def run_baseline(task: Task, args: argparse.Namespace, proxy: CountingProxy) -> Cell:
    from benchmarks.peers.programs import EnvProgram

    fresh_dspy_cache()
    tag = f"{BASELINE}-{task.name}"
    program = EnvProgram(task)
    t0 = time.monotonic()
    scores = score_program(
        program, task.instances("test", args.n_test), dspy_lm(proxy, tag, args, args.max_tokens)
    )
    return Cell(
        task=task.name,
        method=BASELINE,
        seed=0,
        test_scores=scores,
        search_calls=0,
        search_tokens=0,
        test_calls=proxy.tally(tag).calls,
        wall_s=time.monotonic() - t0,
        instruction=program.instruction(),
    )


# --- the model server ---------------------------------------------------------------------------
def start_server(model: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agentopt = Path(sys.executable).with_name("agentopt")
    server = subprocess.Popen(
        [str(agentopt), "serve", "-m", model, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/v1/models", timeout=2).read()
            return server, base
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"agentopt serve -m {model} exited with code {server.returncode}") from None
            time.sleep(1)
    server.kill()
    raise SystemExit(f"agentopt serve -m {model} did not start within 300 s")


# --- driving and reporting --------------------------------------------------------------------
def load_cells(path: Path) -> list[Cell]:
    if not path.is_file():
        return []
    return [Cell.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> list[Cell]:
    # Cell name -> agentopt method: the primary one first, then those added beside it.
    ours = {agentopt_cell_name(m, args): m for m in (args.agentopt_method, *args.agentopt_also)}
    for method in ours.values():
        check_method(method)
    out = Path(args.out)
    cells_path = out / "cells.jsonl"
    kept = load_cells(cells_path)
    primary = {c.extra.get("method") for c in kept if c.method == AGENTOPT_SIDE}
    if primary - {args.agentopt_method}:
        raise SystemExit(f"error: {out} holds runs of agentopt method {', '.join(sorted(primary))} as the "
                         f"primary comparison, not {args.agentopt_method}: give --agentopt-method "
                         f"{', '.join(sorted(primary))} (and --agentopt-also for more), or another --out")
    out.mkdir(parents=True, exist_ok=True)
    done = {(c.task, c.method, c.seed) for c in kept}
    server = None
    upstream = args.api_base
    if upstream is None:
        server, upstream = start_server(args.serve)
    started = time.monotonic()
    try:
        with CountingProxy(upstream.removesuffix("/v1")) as proxy:
            tasks = {name: load_task(name, args.tasks_dir) for name in args.tasks}
            for task in tasks.values():  # a budget too small for any task fails before anything runs
                for method in ours.values():
                    search_budget_for(task, args, agentopt_method_config(args, method))
            # Seed-major, so a run cut short still has every task at the seeds it finished.
            plan = [(name, BASELINE, 0) for name in tasks]
            added = [m for m in ours if m != AGENTOPT_SIDE]
            plan += [(name, m, s) for s in args.seeds for name in tasks
                     for m in (AGENTOPT_SIDE, *args.peers, *added)]
            for name, method, seed in plan:
                task = tasks[name]
                if (task.name, method, seed) in done:
                    continue
                print(
                    f"[{time.monotonic() - started:7.0f}s] {method} on {task.name}, seed {seed}", flush=True
                )
                if method == BASELINE:
                    cell = run_baseline(task, args, proxy)
                elif method in ours:
                    cell = run_agentopt(task, seed, args, proxy, out, ours[method])
                else:
                    cell = run_peer(method, task, seed, args, proxy)
                with cells_path.open("a", encoding="utf-8") as fh:
                    fh.write(cell.model_dump_json() + "\n")
                print(
                    f"    test {cell.test_mean:.3f}, search calls {cell.search_calls}, {cell.wall_s:.0f}s",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return load_cells(cells_path)


def per_instance(cells: Sequence[Cell]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for cell in cells:
        for key, score in cell.test_scores.items():
            sums.setdefault(key, []).append(score)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def added_methods(cells: Sequence[Cell]) -> list[str]:
    """The cell names of agentopt methods run beside the primary one, in a fixed order."""
    return sorted({c.method for c in cells} - {BASELINE, AGENTOPT_SIDE, *PEERS})


def cell_label(cell: Cell) -> str:
    """How a row is named in the report: the method, with agentopt's added methods marked."""
    if cell.method == AGENTOPT_SIDE:
        return f"agentopt {cell.extra.get('method', '')}".strip()
    if cell.method.startswith(AGENTOPT_SIDE + "-"):
        return f"agentopt {cell.extra.get('method', '')} (added)"
    return cell.method


def write_report(cells: Sequence[Cell], out: Path, header: Sequence[str] = ()) -> Path:
    from agentopt.runs.report import fmt_ci
    from agentopt.stats import mean_ci, paired_difference

    lines = ["# agentopt vs DSPy MIPROv2 and GEPA", "", *header, ""]
    lines += [
        "Test mean [95% CI] over the test instances (an instance's score is its mean over seeds); search "
        "calls and tokens as counted by the proxy in front of the server (mean over seeds); the paired "
        "difference of agentopt's primary method (the comparison fixed in advance) with each other row on "
        "the same test instances, with its bootstrap 95% CI and p-value (Wilcoxon signed-rank, or the exact "
        "sign test for 0/1 scores). Rows marked (added) are agentopt methods run beside the primary one with "
        "the same budget; they were not the comparison fixed in advance, and the line under the table pairs "
        "each of them with each peer.",
        "",
    ]
    for task in dict.fromkeys(c.task for c in cells):
        mine = [c for c in cells if c.task == task]
        ours = [c for c in mine if c.method == AGENTOPT_SIDE]
        lines += [
            f"## {task}",
            "",
            "| method | seeds | test | search calls | search tokens | test calls | "
            f"search wall s | {cell_label(ours[0]) if ours else 'agentopt'} minus this |",
            "|" + " --- |" * 8,
        ]
        more = added_methods(mine)
        for method in (BASELINE, AGENTOPT_SIDE, *more, *PEERS):
            group = [c for c in mine if c.method == method]
            if not group:
                continue
            scores = per_instance(group)
            diff = "-"
            if ours and method != AGENTOPT_SIDE:
                diff = str(paired_difference(per_instance(ours), scores))
            n = len(group)
            name = cell_label(group[0])
            means = [
                sum(getattr(c, f) for c in group) / n
                for f in ("search_calls", "search_tokens", "test_calls", "wall_s")
            ]
            cells_text = " | ".join(f"{m:.0f}" for m in means)
            lines.append(
                f"| {name} | {n} | {fmt_ci(mean_ci(list(scores.values())))} | {cells_text} | {diff} |"
            )
        lines.append("")
        # A method added beside the primary one is paired with each peer too, on its own line.
        for method in more:
            theirs = per_instance([c for c in mine if c.method == method])
            pairs = [f"minus {peer}: {paired_difference(theirs, per_instance(group))}"
                     for peer in PEERS if (group := [c for c in mine if c.method == peer])]
            if pairs:
                label = cell_label(next(c for c in mine if c.method == method))
                lines += [f"{label} " + "; ".join(pairs), ""]
    (out / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    plot(cells, out)
    return out / "RESULTS.md"


def plot(cells: Sequence[Cell], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task in dict.fromkeys(c.task for c in cells):
        fig, ax = plt.subplots(figsize=(6, 4))
        more = added_methods([c for c in cells if c.task == task])
        markers = [(AGENTOPT_SIDE, "o"), *((m, "D") for m in more), ("mipro", "s"), ("gepa", "^"),
                   (BASELINE, "x")]
        for method, marker in markers:
            group = [c for c in cells if c.task == task and c.method == method]
            if group:
                ax.scatter([c.search_calls for c in group], [c.test_mean for c in group], marker=marker,
                           label=cell_label(group[0]))
        ax.set_xlabel("LM calls in the search (counted at the proxy)")
        ax.set_ylabel("test score (one attempt per instance)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"score_vs_calls_{task}.png", dpi=120)
        plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--serve", help="a local model to serve with `agentopt serve` (local/NAME)")
    where.add_argument("--api-base", help="a running OpenAI-compatible server (http://HOST:PORT/v1)")
    p.add_argument("--served-model", help="the model name the server answers to (default: from --serve)")
    p.add_argument("--tasks", type=lambda s: [t for t in s.split(",") if t], required=True)
    p.add_argument("--tasks-dir", action="append", default=[])
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--peers", type=lambda s: [m for m in s.split(",") if m], default=list(PEERS))
    p.add_argument("--agentopt-method", default="promst",
                   help="agentopt's method for the comparison fixed in advance (default promst)")
    p.add_argument("--agentopt-also", type=lambda s: [m for m in s.split(",") if m], default=[],
                   help="more agentopt methods to run beside it, same budget (e.g. demos)")
    p.add_argument("--config", help="agentopt method hyperparameters, JSON {method: {...}}")
    p.add_argument("--budget-calls", type=int, default=60)
    p.add_argument("--n-train", type=int, default=8)
    p.add_argument("--n-validation", type=int, default=8)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=256, help="per agent step, both sides")
    p.add_argument("--optimizer-max-tokens", type=int, default=512, help="per proposal call (DSPy side)")
    p.add_argument("--proposal-temperature", type=float, default=1.0,
                   help="DSPy's proposal model (MIPROv2's prompt model, GEPA's reflection LM)")
    p.add_argument("--steps-per-episode", type=float, help="for sizing the peers (default: the task's limit)")
    p.add_argument("--mipro-candidates", type=int, default=3)
    p.add_argument("--gepa-minibatch", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per call, both sides")
    p.add_argument("--out", default="bench-out/peers")
    p.add_argument("--report", action="store_true", help="only rewrite RESULTS.md and plots from cells.jsonl")
    args = p.parse_args(argv)
    if args.served_model is None:
        if args.serve is None:
            p.error("--api-base needs --served-model")
        from agentopt.lm.serve import served_name

        args.served_model = served_name(args.serve)
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        p.error(f"unknown peer(s) {sorted(unknown)}: use {', '.join(PEERS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.monotonic()
    # A terminated benchmark still stops the model server it started (`run`'s finally).
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cells = load_cells(Path(args.out) / "cells.jsonl") if args.report else run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    command = "python -m benchmarks.peers.run " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; this invocation took "
        f"{time.monotonic() - t0:.0f} s; the searches in the table took {sum(c.wall_s for c in cells):.0f} s",
        f"- model: {args.served_model} behind one counting proxy; budget {args.budget_calls} LM calls "
        f"per search; n train/validation/test {args.n_train}/{args.n_validation}/{args.n_test}",
    ]
    print(write_report(cells, Path(args.out), header).read_text())


if __name__ == "__main__":
    main()
