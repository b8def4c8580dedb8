"""``agentopt reflexion`` and ``agentopt c3po``: learning from verbal feedback.

Registered on the main app by ``register(app)``; each command imports what it needs when it runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentopt.errors import UserError

console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="litellm model string, or local/smollm2-135m")]
ApiBaseOpt = Annotated[
    str | None, typer.Option("--api-base", help="OpenAI-compatible endpoint URL (self-hosted servers)")
]
LedgerOpt = Annotated[
    Path | None, typer.Option("--ledger", help="preference ledger (default: $AGENTOPT_HOME/ledger.sqlite)")
]
NoLedgerOpt = Annotated[bool, typer.Option("--no-ledger", help="do not write preferences anywhere")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="concurrent model calls / episodes")]


def register(app: typer.Typer) -> None:
    app.command("reflexion")(reflexion_cmd)
    app.command("c3po")(c3po_cmd)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _open_ledger(path: Path | None, disabled: bool) -> Any:
    if disabled:
        return None
    from agentopt.preferences.ledger import PreferenceLedger

    return PreferenceLedger(path)


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, disable=quiet)


# --- reflexion ------------------------------------------------------------------------------
def reflexion_cmd(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="task name or folder")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="trials per instance")] = 4,
    model: ModelOpt = "local/smollm2-135m",
    reflect_model: Annotated[
        str | None, typer.Option("--reflect-model", help="self-reflection model (default: --model)")
    ] = None,
    memory_size: Annotated[int, typer.Option("--memory-size", min=1, help="lessons kept in context")] = 3,
    split: Annotated[str, typer.Option(help="train, validation or test")] = "train",
    n: Annotated[int | None, typer.Option("--n", min=1, help="instances (default: the whole split)")] = None,
    api_base: ApiBaseOpt = None,
    ledger: LedgerOpt = None,
    no_ledger: NoLedgerOpt = False,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="where run directories go")] = Path("runs"),
    concurrency: ConcurrencyOpt = 4,
    tasks_dir: Annotated[
        list[Path] | None, typer.Option("--tasks-dir", help="extra folder of task folders")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reflexion: retry each instance with self-written lessons; report success per trial."""
    from agentopt.files import check_writable_dir
    from agentopt.lm import LM
    from agentopt.lm.client import check_models
    from agentopt.store.rundir import RunDir
    from agentopt.tasks.loader import load_task
    from agentopt.tasks.rollout import LMAgent
    from agentopt.verbal.reflexion import Reflexion, ReflexionConfig

    if split not in ("train", "validation", "test"):
        raise UserError(f"unknown split {split!r} (use train, validation or test)")
    check_writable_dir(runs_root, "runs folder")
    task = load_task(task_name, tasks_dir or [])
    instances = task.instances(split, n)  # type: ignore[arg-type]
    if not instances:
        raise UserError(f"task {task.name} has no {split} instances")
    config = ReflexionConfig(max_trials=trials, memory_size=memory_size)
    # Checked, and the ledger opened, before a response cache or run folder is made.
    check_models([model, reflect_model], api_base=api_base)
    store = _open_ledger(ledger, no_ledger)
    actor_lm = LM(model, api_base=api_base, max_concurrency=concurrency)
    reflector_lm = actor_lm if reflect_model in (None, model) else LM(
        reflect_model, api_base=api_base, max_concurrency=concurrency)
    rundir = RunDir.new(runs_root, f"reflexion-{task.name}")
    rundir.write_json("config.json", {"command": "reflexion", "task": task.name, "model": model,
                                      "reflect_model": reflect_model or model, "split": split,
                                      "n": len(instances), "config": config.model_dump()})
    try:
        with _progress(as_json) as progress:
            bar = progress.add_task("trial 1", total=len(instances))

            def on_event(kind: str, data: dict[str, Any]) -> None:
                if kind == "trial_start":
                    progress.reset(bar, total=data["attempted"], description=f"trial {data['trial']}")
                elif kind == "episode":
                    progress.advance(bar)
                elif kind == "trial" and not as_json:
                    progress.console.print(
                        f"  trial {data['trial']}: solved {data['solved']}/{len(instances)}, "
                        f"mean score {data['mean_score']:.3f} "
                        f"(this trial's episodes {data['raw_mean_score']:.3f})",
                        highlight=False)

            result = Reflexion(config).run(
                LMAgent(actor_lm, task), reflector_lm, instances, task=task, ledger=store, rundir=rundir,
                max_concurrency=concurrency, on_event=on_event,
            )
    finally:
        if store is not None:
            store.close()
    ledger_path = str(store.path) if store is not None else None
    if as_json:
        _print_json({**result.model_dump(mode="json"), "model": model,
                     "reflect_model": reflect_model or model, "split": split, "ledger": ledger_path,
                     "lm_usage": actor_lm.usage()})
        return
    table = Table("trial", "ran", "solved", "success", "mean score", "this trial", "reflections",
                  title=f"Reflexion on {task.name} [{split}, n={len(instances)}, {model}]")
    for s in result.trials:
        table.add_row(str(s.trial), str(s.attempted), f"{s.solved}/{result.n_instances}",
                      f"{s.success_rate:.0%}", f"{s.mean_score:.3f}", f"{s.raw_mean_score:.3f}",
                      str(s.reflections))
    console.print(table)
    console.print("mean score = each instance's best so far; 'this trial' = the episodes run in that trial",
                  style="dim")
    where = f" to {ledger_path}" if ledger_path else " (not stored: --no-ledger)"
    console.print(f"preference pairs: {result.preferences} ({result.preferences_added} new){where}")
    console.print(f"run directory: {result.run_dir}")


# --- c3po -----------------------------------------------------------------------------------
def c3po_cmd(
    feedback: Annotated[str, typer.Argument(metavar="FEEDBACK", help="one piece of verbal feedback")],
    model: ModelOpt = "local/smollm2-135m",
    judge: Annotated[
        str | None, typer.Option("--judge", help="judge model for the metrics (default: --model)")
    ] = None,
    generator: Annotated[
        str | None, typer.Option("--generator", help="writes categories and prompts (default: --model)")
    ] = None,
    domain: Annotated[
        str | None, typer.Option("--domain", help="where the feedback applies, if not obvious")
    ] = None,
    n_prompts: Annotated[int, typer.Option("--n-prompts", min=1, help="prompts per scope")] = 12,
    n_categories: Annotated[int, typer.Option("--n-categories", min=1)] = 4,
    test_fraction: Annotated[float, typer.Option("--test-fraction", min=0.0, max=0.9)] = 0.2,
    seed: int = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default: runs/<time>-c3po)")
    ] = None,
    ledger: LedgerOpt = None,
    no_ledger: NoLedgerOpt = False,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="skip the judge metrics")] = False,
    api_base: ApiBaseOpt = None,
    concurrency: ConcurrencyOpt = 4,
    as_json: JsonOpt = False,
) -> None:
    """C3PO: turn one feedback sentence into DPO pairs + keep examples; measure adherence."""
    from agentopt.files import check_writable_dir
    from agentopt.lm import LM
    from agentopt.lm.client import check_models
    from agentopt.store.rundir import RunDir
    from agentopt.verbal.c3po import C3POConfig, VerbalFeedback, run_c3po

    if not feedback.strip():
        raise UserError("the feedback is empty")
    check_writable_dir(out if out is not None else Path("runs"), "--out folder" if out else "runs folder")
    config = C3POConfig(n_prompts=n_prompts, n_categories=n_categories, test_fraction=test_fraction)

    def lm(name: str | None) -> Any:
        return base if name in (None, model) else LM(name, api_base=api_base, max_concurrency=concurrency)

    # Checked, and the ledger opened, before a response cache or run folder is made.
    check_models([model, judge, generator], api_base=api_base)
    store = _open_ledger(ledger, no_ledger)
    base = LM(model, api_base=api_base, max_concurrency=concurrency)
    judge_lm, generator_lm = lm(judge), lm(generator)
    folder = out if out is not None else RunDir.new(Path("runs"), "c3po").path
    try:
        with _progress(as_json) as progress:
            bar = progress.add_task("c3po", total=None)

            def on_event(kind: str, data: dict[str, Any]) -> None:
                if kind == "stage":
                    progress.reset(bar, total=data["total"], description=data["name"])
                elif kind == "advance":
                    progress.advance(bar)

            result, _ = run_c3po(
                VerbalFeedback(content=feedback.strip(), domain=domain), base, judge_lm=judge_lm,
                generator_lm=generator_lm, config=config, seed=seed, out_dir=folder, ledger=store,
                evaluate=not no_eval, max_concurrency=concurrency, on_event=on_event,
            )
    finally:
        if store is not None:
            store.close()
    ledger_path = str(store.path) if store is not None else None
    if as_json:
        _print_json({**result.model_dump(mode="json"), "judge": judge or model, "ledger": ledger_path})
        return
    console.print(f"[bold]C3PO[/bold] for feedback: {result.feedback!r} ({model})", highlight=False)
    console.print("categories: " + "; ".join(result.categories), highlight=False)
    table = Table("scope", "train", "test", "ledger target")
    keep = "keep baseline (SFT)"
    targets = {"in": "DPO pair: revised > baseline", "near": keep, "out": keep}
    for scope, c in result.counts.items():
        table.add_row(scope, str(c["train"]), str(c["test"]), targets[scope])
    console.print(table)
    where = f" to {ledger_path}" if ledger_path else " (not stored: --no-ledger)"
    console.print(f"preferences: {result.preferences} ({result.preferences_added} new){where}")
    m = result.metrics
    if m is not None:
        console.print(f"In-Context baseline, judged by {m.judge} (n in/near/out = "
                      f"{m.n['in']}/{m.n['near']}/{m.n['out']}): S_in {m.s_in:+.3f}  S_out {m.s_out:.3f} "
                      f"(near {m.near_change:.3f}, out {m.out_change:.3f})  S_overall {m.s_overall:.3f}"
                      + (f"  [{m.unparsed} unparsed ratings]" if m.unparsed else ""), highlight=False)
    console.print(f"data: {folder / 'dataset.jsonl'} (train, TRL format), {folder / 'data.json'} (all)")
