"""Throughput and peak memory: agentopt's DPO trainer against TRL's DPOTrainer, in one run.

Same model (SmolLM2-135M from the packaged GGUF, or a tiny random llama with --tiny), same
synthetic pairs, same LoRA (all linear layers but lm_head), same batch, steps, optimiser settings,
precision (fp32 on CPU, bf16 on GPU), reference log-probs precomputed by both. Each trainer runs
in its own subprocess so its peak memory is its own; with --repeats > 1 they alternate (A B A B)
so background load on a shared machine hits both alike, and the best run of each is kept.

    .venv/bin/python benchmarks/finetune/bench_dpo.py              # SmolLM2, writes RESULTS.md
    .venv/bin/python benchmarks/finetune/bench_dpo.py --tiny --no-write

Measures, per trainer:
- tokens/s end to end: non-padding tokens of the training batches / (tokenisation + reference
  pass + training loop); tokens/s of the training loop alone.
- peak memory while training: CPU: the process's peak RSS (VmHWM, reset after loading the
  model); GPU: torch.cuda.max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

NAMES = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lea"]
TOPICS = [
    "the quarterly report",
    "a team lunch",
    "the server outage",
    "a vacation request",
    "the new hire",
    "a budget review",
    "the project deadline",
    "a customer complaint",
]


def synthetic_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Email-style pairs in the spirit of C3PO's "no emojis to my boss": polite vs. emoji-laden."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name, topic = NAMES[i % len(NAMES)], rng.choice(TOPICS)
        extra = " ".join(["Please let me know if you have any questions."] * rng.randint(0, 2))
        rows.append(
            {
                "prompt": f"Write a short email to my boss {name} about {topic}.",
                "chosen": f"Dear {name}, I am writing to update you on {topic}. Everything is on track. "
                f"{extra} Best regards.",
                "rejected": f"Hey {name}!!! 🎉 Quick note on {topic} 😀👍 all good!!! {extra} Cheers 🙌",
            }
        )
    return rows


# --- worker side -------------------------------------------------------------------------------
def _reset_peak_rss() -> bool:
    try:  # Linux: writing 5 to clear_refs resets VmHWM, the peak resident set size
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _load(args: argparse.Namespace, device: Any) -> tuple[Any, Any]:
    import torch

    from agentopt.finetune.model import load_base, train_dtype

    if args.tiny:
        from tiny import tiny_model, tiny_tokenizer

        tok = tiny_tokenizer()
        return tiny_model(tok, hidden=args.tiny_hidden, layers=args.tiny_layers).to(
            device, train_dtype(device)
        ), tok
    model, tok = load_base("local/smollm2-135m", device)
    torch.manual_seed(0)
    return model, tok


def run_ours(
    args: argparse.Namespace, rows: list[dict[str, str]], model: Any, tok: Any, device: Any
) -> dict[str, Any]:
    from agentopt.finetune.config import FinetuneConfig, LoraSettings
    from agentopt.finetune.data import PreferenceRow, encode, pad_id_of
    from agentopt.finetune.model import add_lora
    from agentopt.finetune.trainer import PreferenceTrainer

    cfg = FinetuneConfig(
        batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=args.lr,
        max_length=args.max_length,
        max_prompt_length=args.max_length - 1,
        lora=LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=0.0),
        warmup_ratio=0.0,
        schedule="linear",
        gradient_checkpointing=args.gradient_checkpointing,
    )
    model = add_lora(model, cfg.lora, 0)
    t0 = time.perf_counter()
    enc = [encode(PreferenceRow(**r), tok, cfg.max_length, cfg.max_prompt_length) for r in rows]
    trainer = PreferenceTrainer(cfg, model, pad_id_of(tok), device)
    result = trainer.fit(enc)
    total = time.perf_counter() - t0
    loop = result.history[-1].elapsed_s
    elapsed = [0.0] + [h.elapsed_s for h in result.history]
    return {
        "step_s": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
        "tokens": result.train_tokens,
        "total_s": total,
        "loop_s": loop,
        "final_loss": result.history[-1].loss,
        "first_loss": result.history[0].loss,
    }


def run_trl(
    args: argparse.Namespace, rows: list[dict[str, str]], model: Any, tok: Any, device: Any
) -> dict[str, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from agentopt.finetune.model import lora_targets

    if getattr(tok, "chat_template", None):  # conversational rows: TRL applies the chat template as we do
        data = [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    else:
        data = rows
    marks: dict[str, float] = {}
    steps: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            marks["begin"] = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            marks["end"] = time.perf_counter()

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            marks["step"] = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            steps.append(time.perf_counter() - marks["step"])

    out = tempfile.mkdtemp(prefix="trl-bench-")
    config = DPOConfig(
        output_dir=out,
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        beta=0.1,
        loss_type="sigmoid",
        max_length=args.max_length,
        precompute_ref_log_probs=True,
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=device.type == "cuda",
        use_cpu=device.type == "cpu",
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.0,
        bias="none",
        target_modules=lora_targets(model),
        task_type="CAUSAL_LM",
    )
    t0 = time.perf_counter()
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(data),
        processing_class=tok,
        peft_config=lora,
        callbacks=[Clock()],
    )
    tokens = sum(
        2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
        for r in trainer.train_dataset
    )
    trainer.train()
    total = time.perf_counter() - t0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "step_s": steps,
        "tokens": int(tokens),
        "total_s": total,
        "loop_s": marks["end"] - marks["begin"],
        "final_loss": losses[-1] if losses else None,
        "first_loss": losses[0] if losses else None,
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    rows = synthetic_pairs(args.steps * args.batch, seed=0)  # one epoch: both trainers see every pair once
    model, tok = _load(args, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated() / 2**20
    reset = _reset_peak_rss()
    rss_before = _rss_mb("VmRSS")
    result = (run_ours if args.worker == "ours" else run_trl)(args, rows, model, tok, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_over_model_mb"] = result["peak_mb"] - base_mem
        result["memory_kind"] = "torch.cuda.max_memory_allocated"
    else:
        result["peak_mb"] = _rss_mb("VmHWM") if reset else float("nan")
        result["peak_over_model_mb"] = result["peak_mb"] - rss_before
        result["memory_kind"] = "peak RSS while training (VmHWM reset after model load)"
    result.update(
        device=str(device), dtype=str(next(model.parameters()).dtype), threads=torch.get_num_threads()
    )
    Path(args.result).write_text(json.dumps(result))


# --- driver side -------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random llama instead of SmolLM2")
    parser.add_argument("--tiny-hidden", type=int, default=64)
    parser.add_argument("--tiny-layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per trainer; best kept")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--no-write", action="store_true", help="print the table, don't touch RESULTS.md")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    forwarded = [a for a in sys.argv[1:] if a not in ("--no-write",)]
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    for rep in range(args.repeats):
        for name in ("ours", "trl") if rep % 2 == 0 else ("trl", "ours"):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                target = fh.name
            print(f"[{rep + 1}/{args.repeats}] {name} ...", file=sys.stderr, flush=True)
            env = {**os.environ, "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error"}
            proc = subprocess.run(
                [sys.executable, __file__, *forwarded, "--worker", name, "--result", target],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"{name} worker failed")
            runs[name].append(json.loads(Path(target).read_text()))
            Path(target).unlink()
    best = {k: max(v, key=lambda r: r["tokens"] / r["total_s"]) for k, v in runs.items()}
    table = render(args, best, runs)
    print(table)
    if not args.no_write:
        (HERE / "RESULTS.md").write_text(table, encoding="utf-8")


def median_step_tps(r: dict[str, Any]) -> float:
    """Throughput from the median optimiser-step time: robust to a moment of background load."""
    steps = sorted(r["step_s"])
    return r["tokens"] / (steps[len(steps) // 2] * len(steps)) if steps else float("nan")


def render(
    args: argparse.Namespace, best: dict[str, dict[str, Any]], runs: dict[str, list[dict[str, Any]]]
) -> str:
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = "?"
    o, t = best["ours"], best["trl"]
    model = (
        f"tiny llama (hidden {args.tiny_hidden}, {args.tiny_layers} layers)"
        if args.tiny
        else "SmolLM2-135M-Instruct (packaged Q4_1 GGUF, dequantised)"
    )
    lines = [
        "# Fine-tuner benchmark: agentopt vs TRL DPOTrainer",
        "",
        f"Command: `python benchmarks/finetune/bench_dpo.py {' '.join(a for a in sys.argv[1:])}`".rstrip(),
        "",
        f"- model: {model}; device {o['device']}, {o['dtype']}, {o['threads']} threads; "
        f"{platform.machine()} {platform.processor() or ''}".rstrip(),
        f"- {args.steps} steps x {args.batch} pairs (one epoch of synthetic pairs), "
        f"max length {args.max_length}, "
        f"LoRA r={args.lora_r} alpha={args.lora_alpha} dropout 0 on all linear layers but lm_head, "
        f"lr {args.lr} linear, AdamW, grad clip 1.0, sigmoid DPO beta 0.1, reference log-probs precomputed, "
        f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}",
        f"- torch {torch.__version__}, transformers {transformers.__version__}, trl {trl_version}; "
        f"best of {args.repeats} alternating run(s) per trainer",
        f"- memory: {o['memory_kind']}",
        "",
        "| trainer | tokens | tokens/s end to end | tokens/s training loop | tokens/s median step | "
        "peak memory MB | peak over loaded model MB | first loss | last loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in (("agentopt", o), ("TRL DPOTrainer", t)):
        lines.append(
            f"| {name} | {r['tokens']} | {r['tokens'] / r['total_s']:.1f} | {r['tokens'] / r['loop_s']:.1f} "
            f"| {median_step_tps(r):.1f} | {r['peak_mb']:.0f} | {r['peak_over_model_mb']:.0f} "
            f"| {r['first_loss']:.4f} | "
            f"{r['final_loss']:.4f} |"
        )
    speed = (o["tokens"] / o["total_s"]) / (t["tokens"] / t["total_s"])
    lines += [
        "",
        f"agentopt / TRL: {speed:.2f}x end-to-end throughput, "
        f"{o['peak_mb'] / t['peak_mb']:.2f}x peak memory.",
        "",
        "All runs in order (tokens/s end to end / training loop / median step; peak MB):",
        "",
    ]
    for name, rs in runs.items():
        lines.append(
            f"- {name}: "
            + ", ".join(
                f"{r['tokens'] / r['total_s']:.1f} / {r['tokens'] / r['loop_s']:.1f} / "
                f"{median_step_tps(r):.1f}; "
                f"{r['peak_mb']:.0f}"
                for r in rs
            )
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
