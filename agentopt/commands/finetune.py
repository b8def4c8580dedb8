"""``agentopt finetune``: LoRA DPO / IPO / C3PO on the accumulated preferences.

Registered on the main app by ``register(app)`` so the heavy imports (torch, transformers, peft)
happen only when the command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from agentopt.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)


def finetune_cmd(
    ledger: Annotated[
        Path | None, typer.Option("--ledger", help="preference ledger (SQLite) to train on")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="TRL-format JSONL: prompt, chosen, rejected")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="only rows from this source (repeat, or comma-separated; a prefix ending in ':' "
            "matches, e.g. judge:)",
        ),
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option("--task", help="only rows of this task (repeat, or comma-separated)")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help="only rows of this kind: prompt, response, trajectory or unknown (repeat, or "
            "comma-separated)",
        ),
    ] = None,
    mix_kinds: Annotated[
        bool,
        typer.Option("--mix-kinds", help="train on rows of several kinds together (refused otherwise)"),
    ] = False,
    method: Annotated[str, typer.Option("--method", help="dpo, ipo or c3po")] = "dpo",
    base: Annotated[
        str, typer.Option("--base", help="local/smollm2-135m or a transformers model folder")
    ] = "local/smollm2-135m",
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default: runs/<time>-finetune-METHOD)")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the latest checkpoint in --out")
    ] = False,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="optimizer steps (overrides --epochs)")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 1e-4,
    beta: Annotated[float, typer.Option(min=0.0, help="DPO beta / IPO tau")] = 0.1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="pairs per micro-batch")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
    max_length: Annotated[int, typer.Option("--max-length", min=16)] = 512,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = 32,
    eval_fraction: Annotated[float, typer.Option("--eval-fraction", min=0.0, max=0.9)] = 0.1,
    save_every: Annotated[int, typer.Option("--save-every", min=1)] = 50,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
) -> None:
    """Fine-tune a local model (LoRA) on preference pairs: DPO, IPO or C3PO; GPU when present.

    The rows (from --ledger or --data) can be narrowed with --source, --task and --kind. If the
    rows left hold more than one kind of preference (prompt, response, trajectory; unknown
    counts as its own), the command refuses unless --mix-kinds is given. --method c3po needs
    every row to say its scope (metadata.scope in, near or out)."""
    from pydantic import ValidationError

    from agentopt.finetune.config import FinetuneConfig, LoraSettings

    if (ledger is None) == (data is None):
        raise UserError("give exactly one of --ledger PATH or --data JSONL")
    if method not in ("dpo", "ipo", "c3po"):
        raise UserError(f"unknown method {method!r} (use dpo, ipo or c3po)")
    if resume and out is None:
        raise UserError("--resume needs the --out folder of the run to continue")
    from agentopt.files import check_writable_dir

    check_writable_dir(out if out is not None else Path("runs"), "--out folder" if out else "runs folder")
    try:
        config = FinetuneConfig(
            method=method,
            beta=beta,
            learning_rate=lr,
            epochs=epochs,
            max_steps=steps,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_length=max_length,
            max_prompt_length=max(8, max_length * 3 // 4),
            lora=LoraSettings(r=lora_r, alpha=lora_alpha),
            eval_fraction=eval_fraction,
            save_every=save_every,
            seed=seed,
        )
    except ValidationError as exc:
        raise UserError(f"bad fine-tuning settings: {exc.errors()[0]['msg']}") from None

    from agentopt.finetune.data import (
        describe_filters,
        read_jsonl,
        read_ledger,
        select_rows,
    )
    from agentopt.types import kind_filter

    kind_filter(kind)  # a misspelt kind is an error before any file is read
    if data is not None:
        rows = select_rows(read_jsonl(data), source=source, task=task, kind=kind)
        if not rows:
            raise UserError(f"no rows in {data} match {describe_filters(source, task, kind)}")
    else:
        rows = read_ledger(ledger, source=source, task=task, kind=kind)  # type: ignore[arg-type]
    from agentopt.finetune.run import check_finetune_inputs

    # Checked here as well as in finetune(), so a refused run leaves no empty run folder behind.
    check_finetune_inputs(rows, config, base, device, mix_kinds)
    if resume and not (out / "checkpoints").is_dir():  # type: ignore[operator]
        raise UserError(f"--resume: {out} holds no checkpoints of a fine-tuning run to continue")
    if out is None:
        from agentopt.store.rundir import RunDir

        out = RunDir.new(Path("runs"), f"finetune-{method}").path
    metrics = _run_with_progress(rows, out, config, base, device, resume, quiet=as_json, mix_kinds=mix_kinds)
    if as_json:
        sys.stdout.write(json.dumps(metrics, indent=2, default=str) + "\n")
        return
    _print_summary(metrics, out)


def _run_with_progress(
    rows: list[Any],
    out: Path,
    config: Any,
    base: str,
    device: str,
    resume: bool,
    quiet: bool,
    mix_kinds: bool = False,
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agentopt.finetune.run import finetune

    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        disable=quiet,
    ) as progress:
        bar = progress.add_task("training", total=None, info="", visible=False)

        def on_stage(message: str) -> None:
            if not quiet:
                progress.console.print(f"[dim]{message}[/dim]")

        def on_step(log: Any, total: int) -> None:
            progress.update(
                bar,
                total=total,
                completed=log.step,
                visible=True,
                info=f"loss {log.loss:.4f}  margin {log.reward_margin:+.3f}",
            )

        return finetune(
            rows,
            out,
            config,
            base=base,
            device=device,
            resume=resume,
            on_stage=on_stage,
            on_step=on_step,
            mix_kinds=mix_kinds,
        )


def _print_summary(metrics: dict[str, Any], out: Path) -> None:
    console = Console()
    t = metrics["training"]
    console.print(
        f"[bold]{metrics['method'].upper()}[/bold] on {metrics['base']} ({metrics['device']}): "
        f"{t['steps']} steps, {t['tokens_per_s']:.0f} tokens/s, final loss {t['final_loss']:.4f}"
    )
    rows = metrics.get("rows") or {}
    if rows.get("kinds"):
        kinds = ", ".join(f"{k} {n}" for k, n in rows["kinds"].items())
        console.print(f"rows: {rows['total']} ({kinds}), {rows['skipped']} skipped", highlight=False)
    held = metrics.get("heldout") or {}
    pairs = held.get("pairs") or {}
    if pairs.get("n"):
        b, a = pairs["before"], pairs["after"]
        console.print(
            f"held-out pairs (n={pairs['n']}): preference accuracy {b['preference_accuracy']:.2f} -> "
            f"{a['preference_accuracy']:.2f}, reward margin {a['reward_margin']:+.3f}"
        )
    for name in ("near_scope", "out_of_scope"):
        scope = (held.get("c3po") or {}).get(name)
        if scope:
            console.print(
                f"{name.replace('_', ' ')} (n={scope['n']}): mean |change| of per-token log-likelihood "
                f"{scope['logp_change']:.4f}"
            )
    console.print(
        f"adapter: {out / 'adapter'}  merged: {out / 'merged'}  (use it as LM('hf/{out / 'merged'}'))"
    )
    console.print(f"metrics: {out / 'metrics.json'}  loss: {out / 'loss.csv'}, {out / 'loss.png'}")
