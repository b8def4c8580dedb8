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
``--budget-calls`` for its search; MIPROv2 and GEPA stopped before their next step could pass
the same number of calls at the proxy (`stopping.py`); then each result scored on the same test
instances, one attempt each. The unoptimised DSPy program is scored once per task, as DSPy's
own starting point. ``--agentopt-also`` adds more of agentopt's methods (cells
``agentopt-NAME``), each with the same budget; they are reported beside the primary one, which
stays the comparison fixed in advance. Finished cells are kept in
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

from agentopt.runs.optimize import RunConfig, run_optimization
from agentopt.tasks.loader import Task, load_task
from benchmarks.peers.cells import (
    AGENTOPT_SIDE,
    BASELINE,
    INVOCATIONS_FILE,
    PEERS,
    SETTINGS_FILE,
    BadInput,
    Cell,
    load_cells,
)
from benchmarks.peers.proxy import CountingProxy
from benchmarks.peers.report import report_header, write_report
from benchmarks.peers.stopping import BudgetStop, optuna_budget


# --- agentopt's share of the budget -----------------------------------------------------------
def agentopt_search_budget(budget: int, n_validation: int, steps: float, validate_top: int = 3) -> int:
    """agentopt's ``--budget-calls`` so that its search plus its choice on validation (the top
    ``validate_top`` prompts and the human one) spend ``budget``: the peers choose on
    validation inside their search, so the comparison counts agentopt's choice too."""
    return max(1, int(budget - (validate_top + 1) * n_validation * steps))


# --- one cell per method ----------------------------------------------------------------------
def agentopt_method_config(args: argparse.Namespace, method: str) -> dict[str, Any]:
    return dict(args.method_configs.get(method, {}))


def agentopt_cell_name(method: str, args: argparse.Namespace) -> str:
    """``agentopt`` for the primary method (the comparison fixed in advance), else ``agentopt-NAME``."""
    return AGENTOPT_SIDE if method == args.agentopt_method else f"{AGENTOPT_SIDE}-{method}"


def steps_per_episode(task: Task, args: argparse.Namespace) -> float:
    return float(args.steps_per_episode or task.make_env(task.instances("train", 1)[0]).max_steps)


def search_budget_for(task: Task, args: argparse.Namespace, method_config: dict[str, Any]) -> int:
    """agentopt's search budget on ``task``; refused (`BadInput`) when it cannot even score the
    human prompt on the train instances, which every search starts with."""
    steps = steps_per_episode(task, args)
    n_validation = min(args.n_validation, task.splits.validation)
    validate_top = method_config.get("validate_top", 3)
    budget = agentopt_search_budget(args.budget_calls, n_validation, steps, validate_top)
    left = args.budget_calls - (validate_top + 1) * n_validation * steps
    root = min(args.n_train, task.splits.train) * steps
    if left < root:
        raise BadInput(
            f"--budget-calls {args.budget_calls} leaves agentopt {max(0, left):.0f} calls of search on "
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
        raise BadInput(str(exc)) from None


def read_config(path: str | None) -> dict[str, Any]:
    """``--config``: agentopt's method hyperparameters, ``{method: {...}}``."""
    if not path:
        return {}
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(f"--config {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"--config {path} is not JSON: {exc}") from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise BadInput(f"--config {path} must be a JSON object of {{method: {{setting: value}}}}")
    return config


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What every cell of one folder must share for its rows to be compared and pooled."""
    return {
        "served_model": args.served_model,
        "budget_calls": args.budget_calls,
        "n_train": args.n_train,
        "n_validation": args.n_validation,
        "n_test": args.n_test,
        "max_tokens": args.max_tokens,
        "optimizer_max_tokens": args.optimizer_max_tokens,
        "proposal_temperature": args.proposal_temperature,
        "steps_per_episode": args.steps_per_episode,
        "mipro_candidates": args.mipro_candidates,
        "gepa_minibatch": args.gepa_minibatch,
        "agentopt_config": args.method_configs,
        "peer_stopping": "at the budget, counted at the proxy",
    }


def check_settings(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The folder's recorded settings; a run with other settings is refused, so that no table
    mixes cells run under different budgets, splits or models."""
    path = out / SETTINGS_FILE
    mine = settings(args)
    if not path.is_file():
        if (out / "cells.jsonl").is_file():
            raise BadInput(f"{out} holds cells but no {SETTINGS_FILE}, so nothing says how they were run: "
                           "give another --out (or write the file, if you know)")
        return mine
    recorded = json.loads(path.read_text(encoding="utf-8"))
    differ = [k for k in mine if recorded.get(k) != mine[k]]
    if differ:
        shown = ", ".join(f"{k} {recorded.get(k)!r} there, {mine[k]!r} here" for k in differ)
        raise BadInput(f"{out} was run with other settings ({shown}): give the same ones, or another --out")
    return recorded


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
            "failed_calls": final.failed,
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
    and as agentopt's PROMST does (0.8 in benchmarks/demo/config.json).

    The proposal model is not cached: DSPy's cache would answer a repeated reflection with the
    sample it drew before, so GEPA would propose the same child again for free, where agentopt
    draws a new sample for each of its proposals. (MIPROv2's proposer gives each of its calls a
    rollout id of its own, so for it this changes nothing.)"""
    import dspy

    return dspy.LM(
        f"openai/{args.served_model}",
        api_base=proxy.url(tag),
        # The key agentopt's side reads too (litellm's openai/ provider); the proxy passes it on.
        api_key=os.environ.get("OPENAI_API_KEY") or "no-key-needed",
        temperature=temperature,
        max_tokens=max_tokens,
        cache=temperature == 0.0,
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


PEER_ATTEMPTS = 3


def run_peer(method: str, task: Task, seed: int, args: argparse.Namespace, proxy: CountingProxy) -> Cell:
    """One peer cell. A search that stops on a prompt longer than the server's context window, or
    on a proposal DSPy cannot parse (MIPROv2's proposer can pile long sampled instructions into
    one prompt, and the 0.5B model does not always keep DSPy's reply format; DSPy catches
    neither there) is played again from the start under a tag of its own, at most `PEER_ATTEMPTS` times in
    all: its proposals are sampled, so another attempt proposes other text. The failed attempts'
    calls are kept in the cell (``extra.failed_attempts``), not added to its spend, since no
    result came of them; the report says so."""
    from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError

    failed: list[dict[str, Any]] = []
    for attempt in range(1, PEER_ATTEMPTS + 1):
        tag = f"{method}-{task.name}-seed{seed}" + (f"-attempt{attempt}" if attempt > 1 else "")
        try:
            cell = run_peer_once(method, task, seed, args, proxy, tag)
        except (ContextWindowExceededError, AdapterParseError) as exc:
            error = str(exc).splitlines()[0][:300]
            failed.append({"tag": tag, "calls": proxy.tally(tag).calls, "error": error})
            print(f"    {tag}: {type(exc).__name__}; played again from the start", flush=True)
            continue
        cell.extra["failed_attempts"] = failed
        return cell
    raise SystemExit(f"error: {method} on {task.name}, seed {seed}, failed {PEER_ATTEMPTS} times: "
                     f"{failed[-1]['error']}")


def run_peer_once(method: str, task: Task, seed: int, args: argparse.Namespace, proxy: CountingProxy,
                  tag: str) -> Cell:
    import dspy

    from benchmarks.peers.programs import (
        EnvProgram,
        EpisodeLengths,
        examples,
        feedback_metric,
        score_metric,
    )

    fresh_dspy_cache()
    task_lm = dspy_lm(proxy, tag, args, args.max_tokens)
    prompt_lm = dspy_lm(proxy, tag, args, args.optimizer_max_tokens, args.proposal_temperature)
    train = task.instances("train", args.n_train)
    validation = task.instances("validation", args.n_validation)
    test = task.instances("test", args.n_test)
    lengths = EpisodeLengths()
    program = EnvProgram(task, lengths=lengths)
    a_priori = steps_per_episode(task, args)

    def episodes(n: int) -> float:
        """The most calls ``n`` more episodes can make: the longest episode played so far in
        this search, or the length assumed in advance before there is one."""
        return n * float(lengths.longest or a_priori)

    t0 = time.monotonic()
    # Sized far past the budget and stopped from outside at it (stopping.py): sized in
    # evaluations, with DSPy's cache answering repeats, they would stop well short of it.
    with dspy.context(lm=task_lm):
        if method == "mipro":
            stop = BudgetStop(lambda: proxy.tally(tag).calls, args.budget_calls,
                              step_cost=lambda: episodes(len(validation)))
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
                init_temperature=args.proposal_temperature,
            )
            trial_cap = args.budget_calls  # a new trial costs a call at least; repeats are free
            with optuna_budget(stop):
                compiled = optimizer.compile(
                    program,
                    trainset=examples(train),
                    valset=examples(validation),
                    num_trials=trial_cap,
                    minibatch=False,
                )
            sizing = {"num_trials_cap": trial_cap, "num_candidates": args.mipro_candidates,
                      "distinct_configs": stop.distinct_configs}
        else:
            stop = BudgetStop(lambda: proxy.tally(tag).calls, args.budget_calls,
                              step_cost=lambda: episodes(2 * args.gepa_minibatch + len(validation)) + 1)
            metric_cap = 10 * args.budget_calls
            optimizer = dspy.GEPA(
                metric=feedback_metric,
                max_metric_calls=metric_cap,
                reflection_lm=prompt_lm,
                reflection_minibatch_size=args.gepa_minibatch,
                num_threads=1,
                seed=seed,
                track_stats=False,
                gepa_kwargs={"stop_callbacks": [stop.gepa]},
            )
            compiled = optimizer.compile(program, trainset=examples(train), valset=examples(validation))
            sizing = {"max_metric_calls_cap": metric_cap}
        # "its own end": it ran out of trials or metric calls (the caps above) before reaching
        # the budget, with every further step a repeat that DSPy's cache answered for free.
        sizing |= {"stopped_by": "budget" if stop.stopped else "its own end",
                   "next_step_cost": stop.next_step_cost, "progress": stop.progress}
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
def start_server(model: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agentopt = Path(sys.executable).with_name("agentopt")
    with log.open("ab") as sink:
        server = subprocess.Popen([str(agentopt), "serve", "-m", model, "--port", str(port)],
                                  stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/v1/models", timeout=2).read()
                return server, base
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"error: agentopt serve -m {model} exited with code "
                                     f"{server.returncode} (its output: {log})") from None
                time.sleep(1)
        raise SystemExit(f"error: agentopt serve -m {model} did not start within 300 s (its output: {log})")
    except BaseException:  # Ctrl-C or SIGTERM while it loads included: no server is left behind
        server.kill()
        server.wait()
        raise


# --- driving and reporting --------------------------------------------------------------------
def run(args: argparse.Namespace) -> list[Cell]:
    # Cell name -> agentopt method: the primary one first, then those added beside it.
    ours = {agentopt_cell_name(m, args): m for m in (args.agentopt_method, *args.agentopt_also)}
    for method in ours.values():
        check_method(method)
    out = Path(args.out)
    cells_path = out / "cells.jsonl"
    recorded = check_settings(out, args)
    kept = load_cells(cells_path)
    primary = {c.extra.get("method") for c in kept if c.method == AGENTOPT_SIDE}
    if primary - {args.agentopt_method}:
        raise BadInput(f"{out} holds runs of agentopt method {', '.join(sorted(primary))} as the "
                       f"primary comparison, not {args.agentopt_method}: give --agentopt-method "
                       f"{', '.join(sorted(primary))} (and --agentopt-also for more), or another --out")
    from agentopt.errors import UserError

    try:
        tasks = {name: load_task(name, args.tasks_dir) for name in args.tasks}
    except UserError as exc:
        raise BadInput(str(exc)) from None
    for task in tasks.values():  # a budget too small for any task fails before anything runs
        for method in ours.values():
            search_budget_for(task, args, agentopt_method_config(args, method))
    out.mkdir(parents=True, exist_ok=True)
    args.started = True  # past every check: this invocation goes into the folder's log
    if not (out / SETTINGS_FILE).is_file():
        (out / SETTINGS_FILE).write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")
    done = {(c.task, c.method, c.seed) for c in kept}
    server = None
    started = time.monotonic()
    try:
        upstream = args.api_base
        if upstream is None:
            server, upstream = start_server(args.serve, out / "server.log")
        with CountingProxy(upstream.rstrip("/").removesuffix("/v1"), timeout_s=args.timeout) as proxy:
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
                done.add((task.name, method, seed))
                print(
                    f"    test {cell.test_mean:.3f}, search calls {cell.search_calls}, {cell.wall_s:.0f}s",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return load_cells(cells_path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def names(text: str) -> list[str]:
        return list(dict.fromkeys(t for t in text.split(",") if t))  # a name given twice runs once

    def seeds(text: str) -> list[int]:
        try:
            return list(dict.fromkeys(int(x) for x in text.split(",") if x))
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds are integers joined by commas, not {text!r}") from None

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--serve", help="a local model to serve with `agentopt serve` (local/NAME)")
    where.add_argument("--api-base", help="a running OpenAI-compatible server (http://HOST:PORT/v1)")
    p.add_argument("--served-model", help="the model name the server answers to (default: from --serve)")
    p.add_argument("--tasks", type=names)
    p.add_argument("--tasks-dir", action="append", default=[])
    p.add_argument("--seeds", type=seeds, default=[0, 1, 2])
    p.add_argument("--peers", type=names, default=list(PEERS))
    p.add_argument("--agentopt-method", default="promst",
                   help="agentopt's method for the comparison fixed in advance (default promst)")
    p.add_argument("--agentopt-also", type=names, default=[],
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
    p.add_argument("--steps-per-episode", type=float,
                   help="an episode's length in calls, assumed in advance: what agentopt keeps for "
                   "its choice on validation, and a peer's next step before it has played an "
                   "episode (default: the task's step limit)")
    p.add_argument("--mipro-candidates", type=int, default=3)
    p.add_argument("--gepa-minibatch", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per call, both sides")
    p.add_argument("--out", default="bench-out/peers")
    p.add_argument("--report", action="store_true",
                   help="only rewrite RESULTS.md and plots from OUT's cells (needs --out only)")
    args = p.parse_args(argv)
    if args.report:
        return args
    if args.serve is None and args.api_base is None:
        p.error("give --serve (a local model) or --api-base (a running server)")
    if not args.tasks:
        p.error("--tasks is required")
    for name in ("budget_calls", "n_train", "n_validation", "n_test", "max_tokens", "optimizer_max_tokens",
                 "mipro_candidates", "gepa_minibatch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.served_model is None:
        if args.serve is None:
            p.error("--api-base needs --served-model")
        from agentopt.lm.serve import served_name

        args.served_model = served_name(args.serve)
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        p.error(f"unknown peer(s) {sorted(unknown)}: use {', '.join(PEERS)}")
    args.method_configs = read_config(args.config)  # read once; every cell and the settings use it
    return args


def main(argv: Sequence[str] | None = None) -> None:
    try:
        args = parse_args(argv)
        out = Path(args.out)
        if args.report:
            cells = load_cells(out / "cells.jsonl")
            if not cells:
                raise BadInput(f"{out} holds no finished cells (cells.jsonl) to report")
        else:
            cells = run_logged(args, argv)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(write_report(cells, out, report_header(out, cells)).read_text())


def run_logged(args: argparse.Namespace, argv: Sequence[str] | None) -> list[Cell]:
    """`run`, with the invocation (command, machine, start, end) added to OUT's log."""
    command = "python -m benchmarks.peers.run " + " ".join(sys.argv[1:] if argv is None else argv)
    start, t0 = datetime.now(UTC), time.monotonic()
    before = len(load_cells(Path(args.out) / "cells.jsonl"))
    # A terminated benchmark still stops the model server it started (`run`'s finally).
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
        log = Path(args.out) / INVOCATIONS_FILE
        if getattr(args, "started", False):
            entry = {
                "command": command,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                           f"{platform.system()} {platform.release()}",
                "start": f"{start:%Y-%m-%d %H:%M}", "end": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
                "wall_s": time.monotonic() - t0,
                "cells": len(load_cells(Path(args.out) / "cells.jsonl")) - before,
            }
            with log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
