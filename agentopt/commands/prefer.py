"""``agentopt prefer`` (APOHF from pairwise feedback) and ``agentopt ledger`` (stats, export, import).

Registered on the main app by ``register(app)``; torch and the embedder are imported only when
``prefer`` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agentopt.commands import print_json
from agentopt.errors import UserError

if TYPE_CHECKING:
    from agentopt.lm.client import LM
    from agentopt.optimizers.apohf import ApohfResult
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.preferences.sources import PreferenceSource
    from agentopt.tasks.loader import Task
    from agentopt.types import Instance

console = Console()
err_console = Console(stderr=True)

LedgerOpt = Annotated[
    Path | None, typer.Option("--ledger", help="ledger file (default: $AGENTOPT_HOME/ledger.sqlite)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def register(app: typer.Typer) -> None:
    """Add ``prefer`` and the ``ledger`` group to ``app``."""
    app.command("prefer")(prefer_cmd)
    ledger_app = typer.Typer(no_args_is_help=True, help="The preference ledger: counts, TRL export, import.")
    ledger_app.command("stats")(ledger_stats)
    ledger_app.command("export")(ledger_export)
    ledger_app.command("import")(ledger_import)
    app.add_typer(ledger_app, name="ledger")


# --- agentopt prefer -------------------------------------------------------------------------
def prefer_cmd(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="task name or folder")],
    method: Annotated[
        str, typer.Option(help="apohf, or random (the paper's random-pair baseline)")
    ] = "apohf",
    judge: Annotated[
        str | None, typer.Option("--judge", help="an LLM judge model gives the preferences")
    ] = None,
    human: Annotated[bool, typer.Option("--human", help="you choose at the terminal (the default)")] = False,
    simulated: Annotated[
        bool, typer.Option("--simulated", help="a simulated user whose utility is each prompt's train score")
    ] = False,
    rounds: Annotated[int, typer.Option(min=1, help="preference queries in total")] = 20,
    model: Annotated[str, typer.Option("--model", "-m", help="the task model")] = "local/smollm2-135m",
    optimizer_model: Annotated[
        str | None,
        typer.Option("--optimizer-model", help="model that writes the pool (default: the task model)"),
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="endpoint of the task model")] = None,
    judge_api_base: Annotated[
        str | None, typer.Option("--judge-api-base", help="endpoint of the judge")
    ] = None,
    pool_size: Annotated[
        int, typer.Option("--pool-size", min=2, help="candidate prompts (the paper: 200)")
    ] = 20,
    n_init: Annotated[int, typer.Option("--n-init", min=0, help="random pairs before the bandit")] = 5,
    train_iters: Annotated[
        int, typer.Option("--train-iters", min=1, help="Adam steps per network fit")
    ] = 1000,
    n_train: Annotated[int | None, typer.Option("--n-train", min=1, help="train instances to use")] = None,
    embedder: Annotated[str, typer.Option(help="minilm, or hashing (no model weights needed)")] = "minilm",
    seed: int = 0,
    ledger: LedgerOpt = None,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="where run directories are created")] = Path(
        "runs"
    ),
    tasks_dir: Annotated[
        list[Path] | None, typer.Option("--tasks-dir", help="extra folder of task folders")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Optimise a task's prompt from pairwise preferences (APOHF, Lin et al. 2024)."""
    from agentopt.files import check_writable_dir
    from agentopt.lm import LM
    from agentopt.lm.client import check_model
    from agentopt.optimizers.apohf import Apohf, ApohfConfig
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.store.rundir import RunDir
    from agentopt.tasks.loader import load_task
    from agentopt.tasks.rollout import LMAgent

    if method not in ("apohf", "random"):
        raise UserError(f"unknown method {method!r} for prefer (use apohf or random)")
    check_writable_dir(runs_root, "runs folder")
    if sum([judge is not None, human, simulated]) > 1:
        raise UserError("choose one preference source: --judge MODEL, --human or --simulated")
    kind = "judge" if judge is not None else "simulated" if simulated else "human"
    task = load_task(task_name, tasks_dir or [])
    instances = task.instances("train", n_train)
    if not instances:
        raise UserError(f"task {task.name!r} has no train instances")
    if embedder not in ("minilm", "hashing"):
        raise UserError(f"unknown embedder {embedder!r} (use minilm or hashing)")
    config = ApohfConfig(
        pool_size=pool_size,
        n_init=n_init,
        rounds=rounds,
        train_iters=train_iters,
        seed=seed,
        pair_selection=method,
        embedding=embedder,
    )
    # Every model is checked, and the ledger opened, before a response cache is made.
    check_model(model, api_base=api_base)
    if optimizer_model not in (None, model):
        check_model(optimizer_model)
    if judge is not None:
        check_model(judge, api_base=judge_api_base)
    store = PreferenceLedger(ledger)
    task_lm = LM(model, api_base=api_base, max_concurrency=concurrency)
    optimizer_lm = (
        task_lm if optimizer_model in (None, model) else LM(optimizer_model, max_concurrency=concurrency)
    )
    agent = LMAgent(task_lm, task)
    quiet = as_json
    source = _source(kind, judge, judge_api_base, task, agent, instances, store, seed, quiet)
    rundir = RunDir.new(runs_root, f"prefer-{task.name}")
    rundir.write_json(
        "config.json",
        {
            "command": "prefer",
            "task": task.name,
            "method": method,
            "source": source.name,
            "model": model,
            "optimizer_model": optimizer_model or model,
            "n_train": len(instances),
            "ledger": str(store.path),
            "apohf": config.model_dump(mode="json"),
        },
    )
    try:
        with _Progress(kind, rounds, quiet) as progress:

            def on_event(event: str, data: dict[str, Any]) -> None:
                if event == "round":
                    rundir.append_jsonl("rounds.jsonl", data)
                progress.event(event, data)

            result = Apohf(config).optimize_prompts(
                task,
                agent,
                source,
                optimizer_lm=optimizer_lm,
                instances=instances,
                ledger=store,
                on_event=on_event,
            )
    finally:
        store.close()
    rundir.write_json("result.json", result)
    summary = _summary(result, source, store.path, rundir.path, task_lm)
    rundir.write_json("summary.json", summary)
    if as_json:
        print_json({**summary, "history": [r.model_dump(mode="json") for r in result.history]})
        return
    _print_summary(summary)


def _source(
    kind: str,
    judge: str | None,
    judge_api_base: str | None,
    task: Task,
    agent: Any,
    instances: list[Instance],
    ledger: PreferenceLedger,
    seed: int,
    quiet: bool,
) -> PreferenceSource:
    from agentopt.preferences.sources import TASK_RUBRIC, LLMJudge, SimulatedUser

    if kind == "judge":
        from agentopt.lm import LM

        return LLMJudge(LM(judge or "", api_base=judge_api_base), rubric=TASK_RUBRIC)
    if kind == "simulated":
        from agentopt.tasks.evaluate import evaluate

        def train_score(prompt: str) -> float:
            evaluation, _ = evaluate(agent, task, prompt, instances)
            if not quiet:
                err_console.print(
                    f"  simulated user: train score {evaluation.score.mean:.3f} for {evaluation.prompt_id}",
                    style="dim",
                    highlight=False,
                    soft_wrap=True,
                )
            return evaluation.score.mean

        return SimulatedUser(train_score, seed=seed)
    from agentopt.preferences.terminal import HumanSource

    return HumanSource(console=err_console, ledger=ledger, seed=seed)


class _Progress:
    """A bar for judges and simulated users; one plain line per round for a person, whose
    panels a live bar would fight with."""

    def __init__(self, kind: str, rounds: int, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.kind = kind
        self.quiet = quiet
        self.bar = (
            None
            if quiet or kind == "human"
            else Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
            )
        )
        self.task_id: Any = None
        self.rounds = rounds

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "pool_start":
            err_console.print(f"generating a pool of up to {data['size']} candidate prompts ...", style="dim")
        elif kind == "pool":
            err_console.print(f"pool: {data['size']} distinct prompts", style="dim")
            if self.bar is not None:
                self.task_id = self.bar.add_task("preferences", total=self.rounds)
        elif kind == "round":
            line = (
                f"round {data['round']}/{self.rounds}: {data['pair_ids'][0]} vs {data['pair_ids'][1]} -> "
                f"{data['verdict']}; reported {data['reported_id']}"
            )
            if data.get("latent") is not None:
                line += f" (latent {data['latent']:.3f})"
            if self.bar is not None and self.task_id is not None:
                self.bar.update(self.task_id, advance=1, description=line)
            else:
                err_console.print(line, highlight=False, soft_wrap=True)


def _summary(
    result: ApohfResult, source: PreferenceSource, ledger_path: Path, run_dir: Path, task_lm: LM
) -> dict[str, Any]:
    initial = result.arms[0]
    summary: dict[str, Any] = {
        "task": result.task,
        "method": result.pair_selection,
        "source": result.source,
        "queries": result.queries,
        "verdicts": result.verdicts,
        "stopped_by": result.stopped_by,
        "pool_size": len(result.arms),
        "best_prompt": result.best_prompt.text,
        "best_prompt_id": result.best_prompt.id,
        "best_is_initial": result.best_index == 0,
        "ledger": str(ledger_path),
        "ledger_added": result.ledger_added,
        "run_dir": str(run_dir),
        "lm_usage": task_lm.usage(),
    }
    if source.latent(initial.text) is not None:
        summary["latent"] = {
            "initial": source.latent(initial.text),
            "best": source.latent(result.best_prompt.text),
            "pool_max": max(source.latent(a.text) or 0.0 for a in result.arms),
        }
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(summary["verdicts"].items())) or "none"
    console.print(
        f"[bold]{summary['method']}[/bold] on [bold]{summary['task']}[/bold] with "
        f"{summary['source']}: {summary['queries']} queries ({verdicts}), stopped by "
        f"{summary['stopped_by']}; pool of {summary['pool_size']}",
        highlight=False,
        soft_wrap=True,
    )
    if "latent" in summary:
        lat = summary["latent"]
        console.print(
            f"  train score: initial {lat['initial']:.3f}, reported {lat['best']:.3f}, "
            f"best in pool {lat['pool_max']:.3f}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"  ledger: {summary['ledger']} (+{summary['ledger_added']})  run directory: {summary['run_dir']}",
        highlight=False,
        soft_wrap=True,
    )
    console.rule("best prompt" + (" (the initial one)" if summary["best_is_initial"] else ""))
    console.print(summary["best_prompt"], markup=False, highlight=False, soft_wrap=True)


# --- agentopt ledger ... -------------------------------------------------------------------
def _open_existing(path: Path | None) -> PreferenceLedger:
    from agentopt.preferences.ledger import PreferenceLedger, default_ledger_path

    target = path or default_ledger_path()
    if not target.is_file():
        raise UserError(f"no preference ledger at {target}")
    # Read-only: counting or exporting must work on a file we may not write, and must not
    # migrate an old one in passing.
    return PreferenceLedger(target, read_only=True)


def ledger_stats(ledger: LedgerOpt = None, as_json: JsonOpt = False) -> None:
    """Count the preferences in the ledger, by source, by task and by kind."""
    with _open_existing(ledger) as store:
        stats = store.stats()
    if as_json:
        print_json(stats.model_dump(mode="json"))
        return
    console.print(f"[bold]{stats.total}[/bold] preferences in {stats.path}", highlight=False, soft_wrap=True)
    if stats.total:
        console.print(
            f"  first {stats.first_created}, last {stats.last_created}", highlight=False, soft_wrap=True
        )
    for title, counts in (("source", stats.by_source), ("task", stats.by_task), ("kind", stats.by_kind)):
        if counts:
            table = Table(title, "preferences")
            for key, n in counts.items():
                table.add_row(key, str(n))
            console.print(table)


def ledger_export(
    out: Annotated[
        Path, typer.Option("--out", help="the JSONL file to write (TRL's prompt/chosen/rejected)")
    ],
    source: Annotated[
        str | None,
        typer.Option("--source", help="only this source (a prefix ending in ':' matches, e.g. judge:)"),
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="only this task")] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="only this kind: prompt, response, trajectory or unknown (comma list)"),
    ] = None,
    minimal: Annotated[
        bool, typer.Option("--minimal", help="only the prompt, chosen and rejected columns")
    ] = False,
    ledger: LedgerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export preferences as TRL-format JSONL (extra columns: source, task, kind, weight, metadata)."""
    with _open_existing(ledger) as store:
        n = store.export_jsonl(out, source=source, task=task, kind=kind, minimal=minimal)
    if as_json:
        print_json({"exported": n, "out": str(out)})
    else:
        console.print(f"exported {n} preferences to {out}", highlight=False, soft_wrap=True)


def ledger_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="TRL-format JSONL (prompt, chosen, rejected)")],
    source: Annotated[str, typer.Option("--source", help="source for rows that name none")] = "import",
    ledger: LedgerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Append the rows of a TRL-format JSONL file to the ledger (duplicates are skipped)."""
    from agentopt.preferences.ledger import PreferenceLedger, load_jsonl

    rows = load_jsonl(file, default_source=source)
    with PreferenceLedger(ledger) as store:
        added = store.add_many(rows)
        path = store.path
    if as_json:
        print_json({"read": len(rows), "added": added, "ledger": str(path)})
    else:
        console.print(
            f"read {len(rows)} rows from {file}: {added} new, {len(rows) - added} already in {path}",
            highlight=False,
            soft_wrap=True,
        )


__all__ = ["register"]
