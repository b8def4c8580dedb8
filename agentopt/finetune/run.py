"""One fine-tuning run end to end: rows -> split -> model -> train -> evaluate -> files.

Output folder::

    adapter/        LoRA adapter (PEFT format) + tokenizer
    merged/         base + adapter folded in (safetensors + tokenizer); usable as LM("hf/<path>")
    metrics.json    before/after evaluation on held-out pairs (and C3PO's scope metrics)
    loss.csv        one row per optimizer step
    loss.png        loss and reward-margin curves
    checkpoints/    resumable state every `save_every` steps
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from agentopt.errors import UserError
from agentopt.finetune.config import FinetuneConfig
from agentopt.finetune.data import (
    Encoded,
    PreferenceRow,
    check_kinds,
    check_scopes,
    encode,
    kind_counts,
    pad_id_of,
    split_rows,
)
from agentopt.finetune.evaluate import evaluate
from agentopt.finetune.model import EMBEDDED_BASE, add_lora, check_base, load_base, pick_device
from agentopt.finetune.report import plot_loss, save_models, write_loss_csv
from agentopt.finetune.trainer import PreferenceTrainer, StepLog
from agentopt.rng import private_torch_rng

Stage = Callable[[str], None]
# Training-set metrics re-score at most this many pairs: enough to see the margin move.
TRAIN_EVAL_CAP = 256


def encode_groups(
    rows: list[PreferenceRow], tokenizer: Any, config: FinetuneConfig
) -> tuple[list[Encoded], list[Encoded], list[Encoded]]:
    """(in-scope pairs, near-scope keeps, out-of-scope keeps) as token ids."""
    enc = [
        encode(r, tokenizer, config.max_length, config.max_prompt_length)
        for r in rows
        if r.is_pair or r.scope != "in"
    ]
    pairs = [e for e in enc if e.scope == "in" and e.chosen_ids and e.rejected_ids]
    near = [e for e in enc if e.scope == "near" and e.chosen_ids]
    out = [e for e in enc if e.scope == "out" and e.chosen_ids]
    return pairs, near, out


def finetune(
    rows: list[PreferenceRow],
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    base: str = EMBEDDED_BASE,
    device: str = "auto",
    resume: bool = False,
    on_stage: Stage | None = None,
    on_step: Callable[[StepLog, int], None] | None = None,
    mix_kinds: bool = False,
) -> dict[str, Any]:
    """Train LoRA adapters on ``rows`` and write the run's files; returns the metrics dict.

    The rows must be of one kind (prompt, response, trajectory, or all unknown) unless
    ``mix_kinds`` is set: choose them with ``read_ledger(path, kind=...)`` or
    `agentopt.finetune.data.select_rows`. With ``method="c3po"`` every row must carry
    ``metadata.scope``. Both are checked before anything is loaded or written (UserError)."""
    config = config or FinetuneConfig()
    check_finetune_inputs(rows, config, base, device, mix_kinds)
    # LoRA's initial weights and dropout come from torch's global generators: seed a private
    # fork of them, so training is repeatable and the caller's random state is left alone.
    with private_torch_rng(config.seed):
        return _train(rows, out_dir, config, base, device, resume, on_stage, on_step)


def check_finetune_inputs(
    rows: list[PreferenceRow], config: FinetuneConfig, base: str, device: str, mix_kinds: bool = False
) -> None:
    """Everything a run would refuse before training, checked before it writes any file: the
    rows' kinds and scopes, that some pair is usable, the base model and the device."""
    check_kinds(rows, mix_kinds)
    check_scopes(rows, config.method)
    if not any(r.is_pair for r in _usable(rows, config)):
        raise UserError("no usable preference pairs (rows need a prompt, a chosen and a non-empty rejected)")
    check_base(base)
    pick_device(device)


def _usable(rows: list[PreferenceRow], config: FinetuneConfig) -> list[PreferenceRow]:
    """Pairs, and for C3PO the near- and out-of-scope keep examples too."""
    return [r for r in rows if r.is_pair or (config.method == "c3po" and r.scope != "in")]


def _train(
    rows: list[PreferenceRow],
    out_dir: str | Path,
    config: FinetuneConfig,
    base: str,
    device: str,
    resume: bool,
    on_stage: Stage | None,
    on_step: Callable[[StepLog, int], None] | None,
) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = on_stage or (lambda message: None)

    usable = _usable(rows, config)
    skipped = len(rows) - len(usable)
    train_rows, held_rows = split_rows(usable, config.eval_fraction, config.seed)

    dev = pick_device(device)
    stage(f"loading {base} on {dev}")
    t0 = time.perf_counter()
    model, tokenizer = load_base(base, dev)
    load_s = time.perf_counter() - t0
    pairs, near, keep_out = encode_groups(train_rows, tokenizer, config)
    held_pairs, held_near, held_out = encode_groups(held_rows, tokenizer, config)
    if not pairs:
        raise UserError("every preference pair went to the held-out split; lower --eval-fraction")
    model = add_lora(model, config.lora, config.seed)
    trainer = PreferenceTrainer(
        config, model, pad_id_of(tokenizer), dev, out_dir=out, on_step=on_step, model_tag=base
    )

    stage(f"reference log-probs for {len(pairs)} pairs")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    result = trainer.fit(pairs, near, keep_out, resume=resume)
    peak_gpu = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None

    stage("evaluating before/after")
    c3po = config.method == "c3po"
    held = (
        evaluate(trainer, held_pairs, held_near, held_out, c3po=c3po)
        if held_pairs or held_near or held_out
        else None
    )
    train_eval = evaluate(trainer, pairs[:TRAIN_EVAL_CAP], [], [], c3po=False)

    metrics: dict[str, Any] = {
        "method": config.method,
        "base": base,
        "device": str(dev),
        "dtype": str(next(model.parameters()).dtype),
        "rows": {
            "total": len(rows),
            "kinds": kind_counts(rows),
            "skipped": skipped,
            "train_pairs": len(pairs),
            "train_near": len(near),
            "train_out": len(keep_out),
            "heldout_pairs": len(held_pairs),
            "heldout_near": len(held_near),
            "heldout_out": len(held_out),
        },
        "heldout": held,
        "train": train_eval,
        "training": {
            "steps": result.steps,
            "resumed_from": result.resumed_from,
            "final_loss": result.history[-1].loss if result.history else None,
            "tokens": result.train_tokens,
            "seconds": round(result.train_s, 3),
            "reference_seconds": round(result.ref_s, 3),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "load_seconds": round(load_s, 3),
            "peak_gpu_mb": peak_gpu,
        },
        "config": config.model_dump(mode="json"),
    }
    stage("writing adapter, merged model and plots")
    write_loss_csv(result.history, out / "loss.csv")
    if result.history:
        plot_loss(result.history, out / "loss.png", f"{config.method.upper()} on {base}")
    metrics["files"] = save_models(model, tokenizer, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
