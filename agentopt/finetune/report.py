"""Files a fine-tuning run leaves behind: loss.csv, loss.png, the adapter and the merged model."""

from __future__ import annotations

import csv
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from torch import nn

from agentopt.finetune.trainer import StepLog


def write_loss_csv(history: list[StepLog], path: Path) -> Path:
    names = [f.name for f in fields(StepLog)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for h in history:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(h).items()})
    return path


def plot_loss(history: list[StepLog], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    steps = [h.step for h in history]
    fig, (ax_loss, ax_margin) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(steps, [h.loss for h in history], label="total loss", marker=".")
    if any(h.nll_near is not None or h.nll_out is not None for h in history):
        ax_loss.plot(steps, [h.dpo_loss for h in history], label="DPO term", linestyle="--")
        ax_loss.plot(steps, [h.nll_out for h in history], label="NLL out-of-scope", linestyle=":")
        ax_loss.plot(steps, [h.nll_near for h in history], label="NLL near-scope", linestyle=":")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_margin.plot(steps, [h.reward_margin for h in history], color="tab:green", marker=".")
    ax_margin.set_xlabel("optimizer step")
    ax_margin.set_ylabel("reward margin (train batch)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_models(model: nn.Module, tokenizer: Any, out: Path) -> dict[str, str]:
    """adapter/ (PEFT format) and merged/ (a plain transformers model with the adapter folded in).

    Merging modifies ``model`` in place, so this is the last thing done with it.
    """
    adapter_dir, merged_dir = out / "adapter", out / "merged"
    # peft warns that a GGUF base folder has no config.json; expected: the vocabulary is unchanged.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Could not find a config file")
        model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    merged = model.merge_and_unload()
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return {"adapter": str(adapter_dir), "merged": str(merged_dir)}
