"""Throughput and peak memory: agentopt's DPO trainer against TRL's DPOTrainer, in one run.

Same model (SmolLM2-135M from the packaged GGUF, or a tiny random llama with --tiny), same
synthetic pairs, same LoRA (all linear layers but lm_head, same init seed), same batch, steps,
optimiser settings, precision (fp32 on CPU; bf16 weights and bf16 autocast for both on a GPU that
supports bf16), reference log-probs precomputed by both. Each trainer runs in its own subprocess
so its peak memory is its own; with --repeats > 1 they alternate (A B B A ...) so background load
on a shared machine hits both alike.

    .venv/bin/python benchmarks/finetune/bench_dpo.py --repeats 2   # SmolLM2; its section of RESULTS.md
    .venv/bin/python benchmarks/finetune/bench_dpo.py --tiny --steps 4 --no-write

What each worker does, in order, so the two trainers are measured from the same point:
1. import torch, transformers, peft, datasets, trl and agentopt's fine-tuner (both workers import
   all of them, so neither side is charged the other library's import footprint);
2. load the model (untimed);
3. reset the memory peak (CPU: VmHWM; GPU: torch.cuda.reset_peak_memory_stats) and start the
   end-to-end clock;
4. build the trainer config, wrap the model with LoRA, tokenise, compute reference log-probs,
   run the training loop; stop the clock.
The end-to-end clock therefore covers LoRA wrapping + tokenisation + reference pass + training
loop for both; the training-loop clock covers the optimiser steps only (agentopt: from the first
step to the last; TRL: on_train_begin to on_train_end, whose reference pass runs in the trainer's
constructor, outside that window).

Measures, per trainer:
- tokens/s of the training loop, and end to end: non-padding tokens of the training batches
  (prompt counted once for chosen and once for rejected) over the wall clock, and the same over
  the process's CPU time (steadier than wall time on a shared machine when torch runs one thread);
- peak memory while training: CPU: the process's peak RSS; GPU: torch.cuda.max_memory_allocated.
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

MIN_PAIRS = 256  # fewer pairs than this is labelled a smoke run in the output

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


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _import_everything() -> None:
    """Both workers import both libraries before the memory peak is reset (see the docstring)."""
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401
    from transformers import TrainerCallback  # noqa: F401
    from trl import DPOConfig, DPOTrainer  # noqa: F401  (trl imports lazily: name the classes)

    import agentopt.finetune.config  # noqa: F401
    import agentopt.finetune.data  # noqa: F401
    import agentopt.finetune.model  # noqa: F401
    import agentopt.finetune.trainer  # noqa: F401


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

    # Same starting point as run_trl: before the config, LoRA wrapping and tokenising.
    t0, c0 = time.perf_counter(), time.process_time()
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
    enc = [encode(PreferenceRow(**r), tok, cfg.max_length, cfg.max_prompt_length) for r in rows]
    trainer = PreferenceTrainer(cfg, model, pad_id_of(tok), device)
    # The reference pass is what fit() would run first; done here so the loop's CPU time is known.
    r0 = time.perf_counter()
    ref = trainer.reference_logps(enc)
    _sync(device)
    ref_s, c_loop = time.perf_counter() - r0, time.process_time()
    result = trainer.fit(enc, ref=ref)
    _sync(device)
    total, total_cpu, loop_cpu = (
        time.perf_counter() - t0,
        time.process_time() - c0,
        time.process_time() - c_loop,  # also counts optimiser creation, which TRL's window leaves out
    )
    elapsed = [0.0] + [h.elapsed_s for h in result.history]
    return {
        "step_s": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
        "tokens": result.train_tokens,
        "total_s": total,
        "loop_s": result.history[-1].elapsed_s,
        "total_cpu_s": total_cpu,
        "loop_cpu_s": loop_cpu,
        "ref_s": ref_s,
        "final_loss": result.history[-1].loss,
        "dtype": str(next(model.parameters()).dtype),
    }


def run_trl(
    args: argparse.Namespace, rows: list[dict[str, str]], model: Any, tok: Any, device: Any
) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from agentopt.finetune.model import lora_targets

    marks: dict[str, float] = {}
    steps: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            _sync(device)
            marks["begin"], marks["cpu_begin"] = time.perf_counter(), time.process_time()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            _sync(device)
            marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            marks["step"] = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            steps.append(time.perf_counter() - marks["step"])

    # Same starting point as run_ours: before the config, LoRA wrapping and tokenising.
    t0, c0 = time.perf_counter(), time.process_time()
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
        # bf16 exactly when the model was loaded in bf16 (train_dtype: a bf16-capable GPU), so both
        # trainers run bf16 weights under bf16 autocast there, and fp32 on the CPU.
        bf16=next(model.parameters()).dtype == torch.bfloat16,
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
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(data),
        processing_class=tok,
        peft_config=lora,
        callbacks=[Clock()],
    )
    trainer.train()
    _sync(device)
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    # Counted after the clock stops, so reading the Arrow dataset back is not charged to TRL.
    tokens = sum(
        2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
        for r in trainer.train_dataset
    )
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "step_s": steps,
        "tokens": int(tokens),
        "total_s": total,
        "loop_s": marks["end"] - marks["begin"],
        "total_cpu_s": total_cpu,
        "loop_cpu_s": marks["cpu_end"] - marks["cpu_begin"],
        "final_loss": losses[-1] if losses else None,
        "dtype": str(next(trainer.model.parameters()).dtype),
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    os.environ.setdefault("TQDM_DISABLE", "1")
    _import_everything()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    rows = synthetic_pairs(args.steps * args.batch, seed=0)  # one epoch: both trainers see every pair once
    model, tok = _load(args, device)
    base_dtype = str(next(model.parameters()).dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated() / 2**20
    reset = _reset_peak_rss()
    rss_before = _rss_mb("VmRSS")
    load_before = os.getloadavg()[0]
    result = (run_ours if args.worker == "ours" else run_trl)(args, rows, model, tok, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_over_model_mb"] = result["peak_mb"] - base_mem
        result["memory_kind"] = "torch.cuda.max_memory_allocated (peak reset after imports and model load)"
        result["gpu"] = torch.cuda.get_device_name(device)
    else:
        result["peak_mb"] = _rss_mb("VmHWM") if reset else float("nan")
        result["peak_over_model_mb"] = result["peak_mb"] - rss_before
        result["memory_kind"] = (
            "peak RSS (VmHWM, reset after both libraries are imported and the model is loaded)"
        )
    result.update(
        device=str(device),
        base_dtype=base_dtype,
        threads=torch.get_num_threads(),
        load=[load_before, os.getloadavg()[0]],  # 1-minute load average before / after training
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
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4, help="pairs per step (pairs = steps x batch)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="runs per trainer, alternating order")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even with a GPU")
    parser.add_argument("--no-write", action="store_true", help="print the section, don't touch RESULTS.md")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    started, wall0 = time.strftime("%Y-%m-%d %H:%M %Z"), time.perf_counter()
    forwarded = [a for a in sys.argv[1:] if a not in ("--no-write",)]
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    order: list[str] = []
    for rep in range(args.repeats):
        for name in ("ours", "trl") if rep % 2 == 0 else ("trl", "ours"):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
                target = fh.name
            print(f"[{rep + 1}/{args.repeats}] {name} ...", file=sys.stderr, flush=True)
            env = {**os.environ, "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error"}
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, *forwarded, "--worker", name, "--result", target],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"{name} worker failed")
            run = json.loads(Path(target).read_text())
            run["process_s"] = time.perf_counter() - t
            runs[name].append(run)
            order.append(name)
            Path(target).unlink()
            print(f"    {summary(run)}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - wall0
    section = render(args, runs, order, started, wall)
    print(section)
    if not args.no_write:
        kind = "gpu" if runs["ours"][0]["device"].startswith("cuda") else "cpu"
        write_section(HERE / "RESULTS.md", kind, section)


def loop_tps(r: dict[str, Any]) -> float:
    return r["tokens"] / r["loop_s"]


def e2e_tps(r: dict[str, Any]) -> float:
    return r["tokens"] / r["total_s"]


def loop_tpcs(r: dict[str, Any]) -> float:
    """Tokens per CPU-second of the training loop: what a shared machine's other load barely moves
    when torch runs one thread (with more threads it also counts their spin-waiting)."""
    return r["tokens"] / r["loop_cpu_s"]


def e2e_tpcs(r: dict[str, Any]) -> float:
    return r["tokens"] / r["total_cpu_s"]


def median_step_tps(r: dict[str, Any]) -> float:
    """Throughput from the median optimiser-step time: robust to a moment of background load."""
    steps = sorted(r["step_s"])
    return r["tokens"] / (steps[len(steps) // 2] * len(steps)) if steps else float("nan")


def summary(r: dict[str, Any]) -> str:
    return (
        f"loop {loop_tps(r):.1f} tok/s ({r['loop_s']:.1f} s wall, {r['loop_cpu_s']:.1f} s CPU), "
        f"end to end {e2e_tps(r):.1f} tok/s ({r['total_s']:.1f} s wall, {r['total_cpu_s']:.1f} s CPU), "
        f"median step {median_step_tps(r):.1f} tok/s, peak {r['peak_mb']:.0f} MB, "
        f"load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}"
    )


def _machine(r: dict[str, Any]) -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"GPU {r['gpu']}" if "gpu" in r else "no GPU used"
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {where}; {platform.platform()}"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("torch", "transformers", "peft", "trl", "datasets"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} ?")
    return ", ".join(parts) + f", python {platform.python_version()}"


def render(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, Any]]],
    order: list[str],
    started: str,
    wall: float,
) -> str:
    o_runs, t_runs = runs["ours"], runs["trl"]
    o = o_runs[0]

    def best(rs: list[dict[str, Any]], f: Any) -> float:
        return max(f(r) for r in rs)

    def highest_peak(rs: list[dict[str, Any]]) -> float:
        return max(r["peak_mb"] for r in rs)

    loop_ratio = best(o_runs, loop_tps) / best(t_runs, loop_tps)
    e2e_ratio = best(o_runs, e2e_tps) / best(t_runs, e2e_tps)
    loop_cpu_ratio = best(o_runs, loop_tpcs) / best(t_runs, loop_tpcs)
    e2e_cpu_ratio = best(o_runs, e2e_tpcs) / best(t_runs, e2e_tpcs)
    mem_ratio = highest_peak(o_runs) / highest_peak(t_runs)
    pairs = args.steps * args.batch
    loads = [x for rs in runs.values() for r in rs for x in r["load"]]
    model = (
        f"tiny random llama (hidden {args.tiny_hidden}, {args.tiny_layers} layers)"
        if args.tiny
        else "SmolLM2-135M-Instruct (packaged Q4_1 GGUF, dequantised)"
    )
    precision = (
        "bf16 weights, bf16 autocast, fp32 LoRA adapters (both trainers)"
        if o["base_dtype"] == "torch.bfloat16"
        else f"{o['base_dtype'].removeprefix('torch.')} throughout (both trainers)"
    )
    command = " ".join(["python benchmarks/finetune/bench_dpo.py", *sys.argv[1:]])
    lines = [
        f"**Training loop: agentopt runs at {loop_ratio:.2f}x TRL's tokens/s** "
        f"({loop_cpu_ratio:.2f}x per CPU-second). "
        f"End to end (LoRA wrapping + tokenisation + reference pass + training loop): {e2e_ratio:.2f}x "
        f"({e2e_cpu_ratio:.2f}x per CPU-second). Peak memory: {mem_ratio:.2f}x TRL's.",
        "",
        f"- command: `{command}`",
        f"- date: {started}; wall time of the whole command {wall / 60:.1f} min",
        f"- machine: {_machine(o)}; torch threads {o['threads']}",
        f"- versions: {_versions()}",
        f"- model: {model}; device {o['device']}; {precision}",
        f"- data: {pairs} synthetic pairs, one epoch ({args.steps} steps x {args.batch} pairs)"
        + (f" -- fewer than {MIN_PAIRS} pairs: a smoke run, not a result" if pairs < MIN_PAIRS else ""),
        f"- settings: max length {args.max_length}, LoRA r={args.lora_r} alpha={args.lora_alpha} dropout 0 "
        f"on all linear layers but lm_head, lr {args.lr} linear to 0, no warmup, AdamW, grad clip 1.0, "
        f"sigmoid DPO beta 0.1, reference log-probs precomputed, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}",
        f"- clocks: end to end, both start after the model is loaded, before the trainer config and LoRA "
        f"wrapping; the training loop excludes the reference pass for both; wall clock (perf_counter) and "
        f"process CPU time (process_time) alike; {args.repeats} run(s) per trainer in alternating order, "
        f"each in its own process; throughput columns are the best run of each trainer, peak memory the "
        f"highest run",
        f"- memory: {o['memory_kind']}",
        f"- background load: 1-minute load average {min(loads):.1f} to {max(loads):.1f} at the start and "
        f"end of the training runs, on {os.cpu_count()} cores (anything much above the number of torch "
        f"threads means other work shared the machine)",
        "",
        "| trainer | tokens | tokens/s training loop | tokens per CPU-s, loop | tokens/s end to end "
        "| tokens per CPU-s, end to end | tokens/s median step | loop s | end-to-end s "
        "| peak memory MB | peak over loaded model MB | last loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rs in (("agentopt", o_runs), ("TRL DPOTrainer", t_runs)):
        r0 = rs[0]
        lines.append(
            f"| {name} | {r0['tokens']} | {best(rs, loop_tps):.1f} | {best(rs, loop_tpcs):.1f} "
            f"| {best(rs, e2e_tps):.1f} | {best(rs, e2e_tpcs):.1f} | {best(rs, median_step_tps):.1f} "
            f"| {min(r['loop_s'] for r in rs):.1f} | {min(r['total_s'] for r in rs):.1f} "
            f"| {highest_peak(rs):.0f} | {max(r['peak_over_model_mb'] for r in rs):.0f} "
            f"| {r0['final_loss']:.3g} |"
        )
    lines += ["", "Every run, in the order it ran:", ""]
    seen = {"ours": 0, "trl": 0}
    for name in order:
        r = runs[name][seen[name]]
        seen[name] += 1
        label = "agentopt" if name == "ours" else "TRL"
        lines.append(f"- {label}: {summary(r)}, last loss {r['final_loss']:.3g}")
    return "\n".join(lines) + "\n"


def write_section(path: Path, kind: str, section: str) -> None:
    """Replace the text between this kind's markers in RESULTS.md; the rest of the file is prose."""
    begin, end = f"<!-- bench_dpo:{kind} -->", f"<!-- /bench_dpo:{kind} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + section + end + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {kind.upper()}\n\n{begin}\n{section}{end}\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
