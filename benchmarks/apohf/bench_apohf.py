"""APOHF with a simulated user: does its pair choice find the best prompt faster than random pairs?

The setting of the paper's simulated experiments (Lin et al. 2024, section 5), scaled to a CPU:
a pool of candidate prompts with a hidden score, a Bradley-Terry-Luce user who prefers the
higher-scored prompt with probability sigmoid(10 (z_a - z_b)) (scores z-normalised over the
pool), and one comparison per round. After each round we record the hidden score of the prompt
each method reports. Four methods, on the same seeds, pools, user and embedder:

- ``apohf``: APOHF's pairs (5 random, then greedy arm + UCB arm) and its report, the argmax of
  the utility network over the prompts queried so far;
- ``random+argmax``: uniformly random pairs, the SAME network (same architecture, same initial
  weights, same training) fitted on those comparisons, and the same argmax report. Against
  ``apohf`` this isolates the pair choice: only which pairs were asked differs;
- ``random+latest``: the same random pairs (same rng, so the very same pairs and answers as
  ``random+argmax``), reporting the winner of the latest duel (the paper's Random baseline);
- ``random+wins``: the same random pairs, reporting the prompt with the most wins so far
  (ties: fewer losses, then lower pool index).

The default pool (``--pool attributes``) is built from independent prompt attributes whose
hidden score is mostly an interaction / non-monotone function of them, with paraphrases,
shuffled sentence order and distractor sentences (see `attribute_pool`). ``--pool easy`` is
the earlier pool: prompt k holds the first k of 20 "good" words and scores k.

    python benchmarks/apohf/bench_apohf.py                          # the recorded run
    python benchmarks/apohf/bench_apohf.py --seeds 4 --rounds 20 --out /tmp/apohf   # a quick look

Writes ``RESULTS.md`` and ``apohf_vs_random.png`` beside this file (or in ``--out``). Text in
RESULTS.md below the notes marker is kept across runs.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from agentopt.optimizers.apohf import Apohf, ApohfConfig
from agentopt.optimizers.embeddings import HashingEmbedder, default_embedder
from agentopt.preferences.sources import SimulatedUser
from agentopt.stats import paired_difference

# --- the earlier, easy pool (tests/unit/test_apohf.py imports GOOD and synthetic_pool) ------------
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
    """The easy pool: prompt k holds the first k "good" words plus filler and scores k."""
    pool = [
        "Solve the task. " + " ".join(random.Random(100 + k).sample(FILLER, 4) + GOOD[:k])
        for k in range(size)
    ]
    return pool, {p: float(k) for k, p in enumerate(pool)}


# --- the attribute pool -------------------------------------------------------------------------
OPENINGS = [
    "Solve the task below.",
    "Here is a problem for you.",
    "Complete the following task.",
    "Your job is to handle the request below.",
]
# Each attribute level has several paraphrases (one is drawn per prompt); "" = the level adds no
# sentence. The hidden score depends on the levels only, never on which paraphrase was drawn.
ATTRIBUTES: dict[str, dict[str, list[str]]] = {
    "role": {
        "none": [""],
        "expert": [
            "You are an expert problem solver.",
            "Act as a seasoned specialist in this domain.",
            "Answer as a world-class expert would.",
        ],
        "assistant": [
            "You are a helpful assistant.",
            "You are a friendly, helpful AI assistant.",
            "Be a helpful and polite assistant.",
        ],
    },
    "reasoning": {
        "none": [""],
        "stepwise": [
            "Think step by step before answering.",
            "Reason through the problem one step at a time.",
            "Work through it step by step, showing each step.",
        ],
        # Worded like "stepwise" on purpose: close in embedding space, opposite in effect.
        "direct": [
            "Do not think step by step; answer directly.",
            "Don't reason one step at a time, just answer.",
            "Skip the step-by-step working and respond at once.",
        ],
        "verify": [
            "Plan your approach, then check your answer before replying.",
            "First make a plan; at the end, verify the result.",
            "Outline a plan and double-check the final answer.",
        ],
    },
    "length": {
        "none": [""],
        "brief": ["Keep the reply short.", "Be brief.", "Use as few words as possible."],
        "detailed": [
            "Give a thorough, detailed reply.",
            "Be comprehensive and explain fully.",
            "Write a long, detailed answer.",
        ],
    },
    "format": {
        "free": [""],
        "json": [
            "Return the answer as a JSON object.",
            "Format the output as JSON.",
            "Respond only with valid JSON.",
        ],
        "bullets": [
            "Use a bulleted list.",
            "Format the reply as bullet points.",
            "Present it as a list of bullets.",
        ],
        "lastline": [
            "Put the final answer alone on the last line.",
            "End with a line containing only the final answer.",
            "Finish with the answer by itself on the final line.",
        ],
    },
}
DISTRACTORS = [
    "The weather report mentions light rain.",
    "This note was drafted on a Tuesday.",
    "The office closes at six.",
    "Blue is said to be a calming colour.",
    "The project is code-named Falcon.",
    "Coffee is available in the kitchen.",
    # decoys: quality-sounding words that change nothing
    "Careful, precise and verified answers are appreciated.",
    "Quality matters a great deal here.",
    "Reviewers value clear, accurate and well-reasoned work.",
]
# Hidden score = main effects + three pairwise interaction tables + a crowding term + noise.
MAIN = {
    "role": {"none": 0.0, "expert": 0.25, "assistant": -0.25},
    "reasoning": {"none": -1.0, "stepwise": 1.0, "direct": 0.0, "verify": 0.5},
    "length": {"none": 0.0, "brief": 0.0, "detailed": 0.0},
    "format": {"free": -0.5, "json": 0.0, "bullets": 0.0, "lastline": 0.5},
}
REASONING_X_LENGTH = {  # step-by-step wants room; "answer directly" wants brevity
    "none": {"none": 0.0, "brief": 0.5, "detailed": -0.5},
    "stepwise": {"none": 1.0, "brief": -1.5, "detailed": 1.5},
    "direct": {"none": 0.5, "brief": 1.5, "detailed": -1.5},
    "verify": {"none": 1.0, "brief": 0.0, "detailed": 1.0},
}
REASONING_X_FORMAT = {  # reasoning inside JSON breaks it; reasoning then a final line is best
    "none": {"free": 0.0, "json": 0.5, "bullets": 0.0, "lastline": 0.5},
    "stepwise": {"free": 0.0, "json": -2.0, "bullets": 0.5, "lastline": 2.0},
    "direct": {"free": 0.0, "json": 1.0, "bullets": -0.5, "lastline": -0.5},
    "verify": {"free": 0.0, "json": -1.0, "bullets": 1.0, "lastline": 1.0},
}
ROLE_X_LENGTH = {
    "none": {"none": 0.0, "brief": 0.0, "detailed": 0.0},
    "expert": {"none": 0.0, "brief": -0.5, "detailed": 1.0},
    "assistant": {"none": 0.0, "brief": 0.5, "detailed": -0.5},
}
CROWDING = {0: -1.0, 1: 0.0, 2: 0.5, 3: 0.5, 4: -1.5}  # by the number of attributes set (not none)
NOISE_SD = 0.25


def attribute_utility(levels: dict[str, str]) -> float:
    """The noiseless hidden score of a combination of attribute levels."""
    n_set = sum(levels[a] not in ("none", "free") for a in ATTRIBUTES)
    return (
        sum(MAIN[a][levels[a]] for a in ATTRIBUTES)
        + REASONING_X_LENGTH[levels["reasoning"]][levels["length"]]
        + REASONING_X_FORMAT[levels["reasoning"]][levels["format"]]
        + ROLE_X_LENGTH[levels["role"]][levels["length"]]
        + CROWDING[n_set]
    )


def all_combinations() -> list[dict[str, str]]:
    return [dict(zip(ATTRIBUTES, c, strict=True)) for c in itertools.product(*ATTRIBUTES.values())]


def attribute_pool(size: int = 50, seed: int = 0) -> tuple[list[str], dict[str, float]]:
    """``size`` distinct prompts, each: an opening, then in shuffled order one paraphrase per
    attribute level (uniform over the 144 combinations) and 0-2 distractor sentences at random
    places. Score: `attribute_utility` of its levels + N(0, NOISE_SD^2), fixed per prompt."""
    rng = random.Random(f"attribute-pool/{seed}")
    pool: list[str] = []
    score: dict[str, float] = {}
    while len(pool) < size:
        levels = {a: rng.choice(list(options)) for a, options in ATTRIBUTES.items()}
        sentences = [s for s in (rng.choice(ATTRIBUTES[a][levels[a]]) for a in ATTRIBUTES) if s]
        rng.shuffle(sentences)
        for distractor in rng.sample(DISTRACTORS, rng.choice((0, 1, 1, 2))):
            sentences.insert(rng.randrange(len(sentences) + 1), distractor)
        text = " ".join([rng.choice(OPENINGS), *sentences])
        noise = rng.gauss(0.0, NOISE_SD)
        if text not in score:
            pool.append(text)
            score[text] = attribute_utility(levels) + noise
    return pool, score


def make_pool(kind: str, size: int, seed: int) -> tuple[list[str], dict[str, float]]:
    return synthetic_pool(size) if kind == "easy" else attribute_pool(size, seed)


# --- the runs -----------------------------------------------------------------------------------
class FixedEmbedder:
    """Embeddings computed once in the parent process, so every method sees the same vectors."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.dim = len(next(iter(vectors.values())))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


class RandomPairsArgmax(Apohf):
    """Random pairs, and otherwise APOHF unchanged: the same network, fitted after every answer
    from round n_init on, reporting its argmax over the queried prompts (``_report`` with
    pair_selection "apohf"). ``_pick`` draws from the same rng as APOHF's random baseline, so
    with the same seed the pairs (and the user's answers) equal those of ``random+latest``."""

    def _pick(self, bandit, domain, round_, rng):  # type: ignore[no-untyped-def]
        i, j = rng.sample(domain, 2)
        return i, j, "random", {}


METHODS = ("apohf", "random+argmax", "random+latest", "random+wins")
RUN_METHODS = ("apohf", "random+argmax", "random+latest")  # random+wins reuses random+latest's data


def run_one(job: tuple) -> dict:
    method, seed, pool, score, vectors, rounds, train_iters = job
    torch.set_num_threads(1)
    started = time.process_time()
    config = ApohfConfig(
        rounds=rounds,
        train_iters=train_iters,
        seed=seed,
        pair_selection="random" if method == "random+latest" else "apohf",
    )
    cls = RandomPairsArgmax if method == "random+argmax" else Apohf
    result = cls(config, embedder=FixedEmbedder(vectors)).optimize_arms(pool, SimulatedUser(score, seed=seed))
    return {
        "method": method,
        "seed": seed,
        "reported": [r.reported for r in result.history],
        "pairs": [r.pair for r in result.history],
        "winners": [r.winner for r in result.history],
        "cpu_s": time.process_time() - started,
    }


def most_wins(pairs: list[tuple[int, int]], winners: list[int | None]) -> list[int]:
    """Per round: the prompt with the most wins so far (ties: fewer losses, then lower index)."""
    wins: dict[int, int] = {}
    losses: dict[int, int] = {}
    out = []
    for (i, j), w in zip(pairs, winners, strict=True):
        if w is not None:
            wins[w] = wins.get(w, 0) + 1
            loser = j if w == i else i
            losses[loser] = losses.get(loser, 0) + 1
        if wins:
            out.append(min(wins, key=lambda a: (-wins[a], losses.get(a, 0), a)))
        else:  # no answer yet: the first prompt, as APOHF reports before any answer
            out.append(out[-1] if out else 0)
    return out


# --- statistics ---------------------------------------------------------------------------------
def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval for a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    from scipy.stats import t

    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan")
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def sign_test(wins: int, losses: int) -> float:
    from scipy.stats import binomtest

    return 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5).pvalue)


def ridge_probe(x: np.ndarray, y: np.ndarray, folds: int = 5, alpha: float = 0.1, seed: int = 0) -> float:
    """Cross-validated Spearman correlation of a ridge regression from embedding to hidden score:
    how much of the score an embedding gives away to a linear read-out with every score known."""
    from scipy.stats import spearmanr

    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    predicted = np.zeros(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mean = y[train].mean()
        w = np.linalg.solve(
            x[train].T @ x[train] + alpha * np.eye(x.shape[1]), x[train].T @ (y[train] - mean)
        )
        predicted[test] = x[test] @ w + mean
    return float(spearmanr(predicted, y).statistic)


def additive_share() -> float:
    """Share of the noiseless score's variance over all 144 combinations that a purely additive
    model in the four attributes explains (two-way ANOVA-style fit by least squares)."""
    combos = all_combinations()
    y = np.array([attribute_utility(c) for c in combos])
    columns = [np.ones(len(combos))]
    for a, options in ATTRIBUTES.items():
        for level in list(options)[1:]:
            columns.append(np.array([c[a] == level for c in combos], dtype=float))
    x = np.stack(columns, 1)
    fitted = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return float(1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum())


# --- the report ---------------------------------------------------------------------------------
NOTES_MARKER = "<!-- notes: everything below this line is hand-written and kept by the script -->"


def versions() -> str:
    import scipy
    import sentence_transformers

    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, sentence-transformers {sentence_transformers.__version__}"
    )


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pool", choices=("attributes", "easy"), default="attributes")
    parser.add_argument("--pool-size", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--train-iters", type=int, default=300)
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--workers", type=int, default=2, help="processes (each runs torch on one thread)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    wall_started = time.perf_counter()
    if args.pool == "easy":
        args.pool_size = 20

    embedder = HashingEmbedder() if args.embedder == "hashing" else default_embedder()
    pools = {seed: make_pool(args.pool, args.pool_size, seed) for seed in range(args.seeds)}
    texts = sorted({t for pool, _ in pools.values() for t in pool})
    vectors = dict(zip(texts, embedder.encode(texts), strict=True))

    jobs = [
        (
            method,
            seed,
            pools[seed][0],
            pools[seed][1],
            {t: vectors[t] for t in pools[seed][0]},
            args.rounds,
            args.train_iters,
        )
        for seed in range(args.seeds)
        for method in RUN_METHODS
    ]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as executor:
            runs = list(executor.map(run_one, jobs))
    else:
        runs = [run_one(job) for job in jobs]
    by = {(r["method"], r["seed"]): r for r in runs}
    cpu = {m: sum(by[m, s]["cpu_s"] for s in range(args.seeds)) for m in RUN_METHODS}
    for seed in range(args.seeds):
        a, b = by["random+argmax", seed], by["random+latest", seed]
        assert a["pairs"] == b["pairs"] and a["winners"] == b["winners"], "random arms saw different data"
        by["random+wins", seed] = {"reported": most_wins(b["pairs"], b["winners"])}

    # Per method: (seeds x rounds) of regret in pool standard deviations, and found-best flags.
    regret: dict[str, np.ndarray] = {}
    found: dict[str, np.ndarray] = {}
    for method in METHODS:
        rows_regret, rows_found = [], []
        for seed in range(args.seeds):
            pool, score = pools[seed]
            values = np.array([score[p] for p in pool])
            best = int(values.argmax())
            reported = np.array(by[method, seed]["reported"])
            rows_regret.append((values[best] - values[reported]) / values.std())
            rows_found.append(reported == best)
        regret[method] = np.array(rows_regret)
        found[method] = np.array(rows_found)

    checkpoints = [r for r in (5, 10, 20, 30, 40, 60, 80, 100, 150) if r <= args.rounds]
    if args.rounds not in checkpoints:
        checkpoints.append(args.rounds)
    n = args.seeds
    final = args.rounds

    # Pool difficulty: a linear read-out of the embedding with every score known.
    probe = [
        ridge_probe(
            np.stack([vectors[t] for t in pools[s][0]]), np.array([pools[s][1][t] for t in pools[s][0]])
        )
        for s in range(args.seeds)
    ]
    easy_pool, easy_score = synthetic_pool(20)
    easy_x = embedder.encode(easy_pool)
    easy_probe = ridge_probe(easy_x, np.array([easy_score[t] for t in easy_pool]), folds=20)

    read_out = (
        f"Pool difficulty: a ridge read-out of the {args.embedder} embedding, trained on every hidden score"
    )
    if args.pool == "attributes":
        difficulty = (
            f"{read_out} (5-fold CV), ranks this pool's prompts with Spearman {np.mean(probe):.2f} "
            f"(mean over seeds; range {min(probe):.2f} to {max(probe):.2f}); on the easy pool "
            f"(leave-one-out) it gets {easy_probe:.2f}. An additive model in the four attributes explains "
            f"{additive_share():.0%} of the noiseless score's variance over all 144 combinations."
        )
    else:
        difficulty = (
            f"{read_out} but one (leave-one-out), ranks this pool's prompts with Spearman {easy_probe:.2f}."
        )

    wall = time.perf_counter() - wall_started
    command = (
        f"python benchmarks/apohf/bench_apohf.py --pool {args.pool} --pool-size {args.pool_size} "
        f"--seeds {args.seeds} --rounds {args.rounds} --train-iters {args.train_iters} "
        f"--embedder {args.embedder} --workers {args.workers}"
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    lines = [
        "# APOHF vs random pairs, with the same network (simulated user)",
        "",
        f"Command: `{command}`",
        "",
        f"- machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {gpu}; "
        f"{args.workers} worker process(es), torch on 1 thread each",
        f"- run {time.strftime('%Y-%m-%d %H:%M %Z')}, commit {git_commit()}; wall time {wall / 60:.1f} min "
        "(CPU seconds per method in the first table)",
        f"- {versions()}",
        f"- pool: {args.pool}, {args.pool_size} prompts per seed"
        + (" (a fresh pool per seed)" if args.pool == "attributes" else " (the same pool for every seed)")
        + f"; embedder {args.embedder}; {n} seeds; {args.rounds} comparisons per run",
        "- user: BTL, P(a beats b) = sigmoid(10 (z_a - z_b)), scores z-normalised over the pool",
        f"- network (all methods that use one): 2x32 ReLU MLP, N(0,1) init (net_seed 0), {args.train_iters} "
        "full-batch Adam steps per fit from the same initial weights, refitted after every answer "
        "from the 5th on; APOHF: n_init 5, nu 1, lambda 0.1",
        "",
        "Methods: `apohf` (its own pairs, network argmax over queried prompts); `random+argmax` "
        "(uniformly random pairs, the same network and report); `random+latest` (the same random "
        "pairs and answers, reporting the latest duel's winner: the paper's baseline); `random+wins` "
        "(the same random pairs, reporting the prompt with the most wins so far). Same seed = same "
        "pool, same user draws; `random+*` share their pairs exactly, and `apohf` shares the first 5.",
        "",
        difficulty,
        "",
        "## Found the best prompt of the pool",
        "",
        f"Share of the {n} seeds whose reported prompt is the pool's best, after N comparisons, "
        "with Wilson 95% intervals:",
        "",
        "| method | " + " | ".join(f"N={r}" for r in checkpoints) + " | CPU s |",
        "| --- |" + " ---: |" * (len(checkpoints) + 1),
    ]
    for method in METHODS:
        cells = []
        for r in checkpoints:
            k = int(found[method][:, r - 1].sum())
            low, high = wilson(k, n)
            cells.append(f"{k / n:.2f} [{low:.2f}, {high:.2f}]")
        cpu_cell = f"{cpu[method]:.0f}" if method in cpu else "(reuses random+latest)"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {cpu_cell} |")
    lines += [
        "",
        "## Regret",
        "",
        "Hidden score of the pool's best prompt minus that of the reported prompt, in units of the "
        "pool's standard deviation of hidden scores (0 = found the best), mean over seeds with a "
        "t 95% interval:",
        "",
        "| method | " + " | ".join(f"N={r}" for r in checkpoints) + " |",
        "| --- |" + " ---: |" * len(checkpoints),
    ]
    for method in METHODS:
        cells = []
        for r in checkpoints:
            mean, low, high = t_interval(regret[method][:, r - 1])
            cells.append(f"{mean:.2f} [{low:.2f}, {high:.2f}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")

    def paired(a: str, b: str, r: int) -> tuple[str, dict]:
        keys = [str(s) for s in range(n)]
        d = paired_difference(
            dict(zip(keys, regret[a][:, r - 1], strict=True)),
            dict(zip(keys, regret[b][:, r - 1], strict=True)),
        )
        f = paired_difference(
            dict(zip(keys, found[a][:, r - 1].astype(float), strict=True)),
            dict(zip(keys, found[b][:, r - 1].astype(float), strict=True)),
        )
        tied = n - d.wins - d.losses
        row = (
            f"| {a} - {b} | {r} | {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] | {d.wins}/{d.losses}/{tied} "
            f"| {d.p_value:.3g} | {sign_test(d.wins, d.losses):.3g} "
            f"| {f.mean:+.2f} ({f.wins}/{f.losses}) | {f.p_value:.3g} |"
        )
        return row, {"regret": d, "found": f}

    lines += [
        "",
        "## Paired tests across seeds",
        "",
        "Per seed, the difference of regret (a - b; negative: a reported a better prompt) and of "
        "found-best (a - b). Regret: mean with a bootstrap 95% interval; seeds where a's regret is "
        "higher / lower / equal; two-sided Wilcoxon signed-rank p (zero differences dropped; "
        "`agentopt.stats.paired_difference`) and exact sign-test p. Found-best: difference "
        "of shares (seeds only a found / only b found) and the exact two-sided McNemar (sign) p.",
        "",
        "| a - b | N | regret diff [95% CI] | a worse/better/tied | Wilcoxon p | sign p "
        "| found diff (a only/b only) | McNemar p |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    tests: dict[tuple[str, str, int], dict] = {}
    comparisons = [
        ("apohf", "random+argmax"),
        ("random+argmax", "random+latest"),
        ("random+argmax", "random+wins"),
        ("apohf", "random+latest"),
    ]
    for r in sorted({checkpoints[len(checkpoints) // 2], final}):
        for a, b in comparisons:
            row, tests[a, b, r] = paired(a, b, r)
            lines.append(row)
    main_test = tests["apohf", "random+argmax", final]
    d = main_test["regret"]
    better = d.high < 0 and d.p_value < 0.05
    worse = d.low > 0 and d.p_value < 0.05
    verdict = (
        "APOHF's pair choice reported better prompts than random pairs with the same network"
        if better
        else "APOHF's pair choice reported worse prompts than random pairs with the same network"
        if worse
        else "APOHF's pair choice did NOT measurably beat random pairs with the same network"
    )
    lines += [
        "",
        f"**At N={final}: {verdict}** (regret difference {d.mean:+.2f} pool SD, "
        f"95% CI [{d.low:+.2f}, {d.high:+.2f}], Wilcoxon p = {d.p_value:.3g}, {n} seeds).",
        "",
        "Plot: `apohf_vs_random.png` (left: mean regret with its t 95% band; right: share of seeds "
        "that found the best).",
        "",
    ]

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "RESULTS.md"
    kept = ""
    if results.exists():
        old = results.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            kept = old.split(NOTES_MARKER, 1)[1]
    results.write_text("\n".join(lines) + "\n" + NOTES_MARKER + (kept or "\n"), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(1, args.rounds + 1)
    for method in METHODS:
        mean = regret[method].mean(0)
        bands = (
            np.array([t_interval(regret[method][:, r])[1:] for r in range(args.rounds)]) if n > 1 else None
        )
        left.plot(x, mean, label=method)
        if bands is not None:
            left.fill_between(x, bands[:, 0], bands[:, 1], alpha=0.15)
        right.plot(x, found[method].mean(0), label=method)
    left.axhline(0, color="grey", linestyle=":")
    left.set_xlabel("comparisons asked")
    left.set_ylabel("regret of reported prompt (pool SD)")
    right.set_xlabel("comparisons asked")
    right.set_ylabel(f"share of {n} seeds that found the best")
    right.set_ylim(0, 1)
    left.legend(fontsize=8)
    fig.suptitle(f"{args.pool} pool, {args.pool_size} prompts, {args.embedder} embedding", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "apohf_vs_random.png", dpi=110)
    print(results.read_text(encoding="utf-8"))
    print(f"wall {wall:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
