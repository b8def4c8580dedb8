"""APOHF vs random pair selection with a simulated user: how fast each finds the best prompt.

The setting of the paper's simulated experiments (Lin et al. 2024, section 5), scaled to a CPU:
a pool of candidate prompts with a hidden score, a Bradley-Terry-Luce user who prefers the
higher-scored prompt with probability sigmoid(10 (z_a - z_b)), and one comparison per round.
After each round we record the hidden score of the prompt each method reports. The pool is
synthetic so that the hidden score is known without any LLM: prompt k holds the first k of 20
"good" instruction words plus random filler, and scores k.

    python benchmarks/apohf/bench_apohf.py                 # MiniLM embeddings, 20 seeds
    python benchmarks/apohf/bench_apohf.py --embedder hashing --seeds 5 --rounds 20

Writes ``RESULTS.md`` and ``apohf_vs_random.png`` beside this file (or in ``--out``).
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from agentopt.feedback.embeddings import HashingEmbedder, default_embedder
from agentopt.feedback.sources import SimulatedUser
from agentopt.optimizers.apohf import Apohf, ApohfConfig

GOOD = [
    "carefully",
    "precisely",
    "step",
    "verify",
    "plan",
    "check",
    "goal",
    "concise",
    "valid",
    "format",
    "think",
    "reason",
    "explain",
    "focus",
    "list",
    "avoid",
    "recall",
    "track",
    "review",
    "confirm",
]
FILLER = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
]


def synthetic_pool(size: int = 20) -> tuple[list[str], dict[str, float]]:
    pool = [
        "Solve the task. " + " ".join(random.Random(100 + k).sample(FILLER, 4) + GOOD[:k])
        for k in range(size)
    ]
    return pool, {p: float(k) for k, p in enumerate(pool)}


def run(
    pair_selection: str,
    seed: int,
    pool: list[str],
    score: dict[str, float],
    embedder,
    rounds: int,
    train_iters: int,
) -> list[float]:
    user = SimulatedUser(score, seed=seed)
    config = ApohfConfig(rounds=rounds, train_iters=train_iters, seed=seed, pair_selection=pair_selection)
    result = Apohf(config, embedder=embedder).optimize_arms(pool, user)
    return [score[result.arms[r.reported].text] for r in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--train-iters", type=int, default=300)
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()

    pool, score = synthetic_pool()
    best = max(score.values())
    embedder = HashingEmbedder() if args.embedder == "hashing" else default_embedder()
    curves: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for method in ("apohf", "random"):
        started = time.perf_counter()
        curves[method] = np.array(
            [
                run(method, seed, pool, score, embedder, args.rounds, args.train_iters)
                for seed in range(args.seeds)
            ]
        )
        seconds[method] = time.perf_counter() - started
        print(f"{method}: {seconds[method]:.0f} s", flush=True)

    checkpoints = [r for r in (5, 10, 15, 20, 25, 30, 40, 60, 80) if r <= args.rounds]
    lines = [
        "# APOHF vs random pair selection (simulated user)",
        "",
        f"Command: `python benchmarks/apohf/bench_apohf.py --seeds {args.seeds} --rounds {args.rounds} "
        f"--train-iters {args.train_iters} --embedder {args.embedder}`",
        "",
        f"- pool: {len(pool)} synthetic prompts, hidden score 0..{int(best)}; BTL user, scale 10, scores "
        "z-normalised (as the paper)",
        f"- APOHF: n_init 5, nu 1, lambda 0.1, 2x32 MLP, {args.train_iters} Adam steps per fit; "
        f"embedder {args.embedder}; random: uniformly random pairs, reporting the latest winner",
        f"- {args.seeds} seeds; torch {torch.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads; run {time.strftime('%Y-%m-%d')}",
        "",
        "The pool is synthetic (see the script), so this measures the dueling bandit alone, not the",
        "writing of candidates or an LLM's behaviour; the plot is `apohf_vs_random.png`.",
        "",
        "Share of seeds whose reported prompt is the best one, after N comparisons:",
        "",
        "| method | " + " | ".join(f"N={r}" for r in checkpoints) + " | seconds |",
        "| --- |" + " ---: |" * (len(checkpoints) + 1),
    ]
    for method, curve in curves.items():
        found = [(curve[:, r - 1] == best).mean() for r in checkpoints]
        lines.append(f"| {method} | " + " | ".join(f"{x:.2f}" for x in found) + f" | {seconds[method]:.0f} |")
    lines += [
        "",
        f"Mean hidden score of the reported prompt (best is {int(best)}):",
        "",
        "| method | " + " | ".join(f"N={r}" for r in checkpoints) + " |",
        "| --- |" + " ---: |" * len(checkpoints),
    ]
    for method, curve in curves.items():
        lines.append(
            f"| {method} | " + " | ".join(f"{curve[:, r - 1].mean():.1f}" for r in checkpoints) + " |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(1, args.rounds + 1)
    for method, curve in curves.items():
        mean = curve.mean(0)
        sem = curve.std(0, ddof=1) / np.sqrt(len(curve)) if len(curve) > 1 else np.zeros_like(mean)
        ax.plot(x, mean, label=method)
        ax.fill_between(x, mean - sem, mean + sem, alpha=0.2)
    ax.axhline(best, color="grey", linestyle=":", label="best prompt")
    ax.set_xlabel("comparisons asked")
    ax.set_ylabel("hidden score of reported prompt")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "apohf_vs_random.png", dpi=110)
    print((args.out / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
