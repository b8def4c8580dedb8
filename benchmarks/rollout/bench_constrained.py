"""Constrained decoding on the embedded model: llama.cpp's grammar sampler (before) against the
grammar-first greedy sampler (after, `agentopt.lm.backends.grammar_first`).

The same episodes, with the human prompt, constrained actions and no response cache, are played
twice in one process, once per sampler, and the replies of the two runs are compared: the
grammar-first sampler must choose the same tokens, only faster.

    python benchmarks/rollout/bench_constrained.py [-m MODEL] [--tasks boxnet1,gridworld1] [--n 3]

It prints a Markdown table (seconds per step, generated tokens per second) for RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

from agentopt import LM, LMAgent, load_task
from agentopt.lm.backends import embedded, grammar_first
from agentopt.tasks.rollout import rollout


def llama_cpp_sampler() -> type:
    from llama_cpp import Llama

    return Llama


def play(model: str, task_name: str, n: int, max_tokens: int, sampler: str) -> dict:
    """The task's first n train episodes; the model is loaded afresh with the chosen sampler."""
    real = grammar_first.llama_class
    grammar_first.llama_class = real if sampler == "grammar-first" else llama_cpp_sampler  # type: ignore[assignment]
    embedded._load.cache_clear()
    try:
        task = load_task(task_name)
        lm = LM(model, cache=False, journal=False)
        agent = LMAgent(lm, task, constrain_actions=True, max_tokens=max_tokens)
        lm.chat("Say yes.", max_tokens=1)  # load the model outside the timed part
        completions = []
        inner = lm.chat

        def counting_chat(*args, **kwargs):  # type: ignore[no-untyped-def]
            completions.append(inner(*args, **kwargs))
            return completions[-1]

        lm.chat = counting_chat  # type: ignore[method-assign]
        started = time.monotonic()
        trajectories = rollout(agent, task.initial_prompt, task.instances("train", n))
        wall = time.monotonic() - started
    finally:
        grammar_first.llama_class = real  # type: ignore[assignment]
        embedded._load.cache_clear()
    steps = sum(t.n_steps for t in trajectories)
    generated = sum(c.usage.completion_tokens for c in completions)
    return {
        "task": task_name,
        "sampler": sampler,
        "episodes": len(trajectories),
        "steps": steps,
        "s / step": wall / max(steps, 1),
        "generated tokens / s": generated / wall,
        "wall s": wall,
        "mean score": sum(t.score for t in trajectories) / len(trajectories),
        "replies": [s.raw_output for t in trajectories for s in t.steps],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--tasks", default="boxnet1,gridworld1")
    parser.add_argument("--n", type=int, default=3, help="train episodes per task")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.model}, "
          f"{args.n} train episodes per task, constrained actions, max_tokens={args.max_tokens}")
    keys = ["task", "sampler", "episodes", "steps", "s / step", "generated tokens / s", "wall s",
            "mean score", "same replies"]
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for name in args.tasks.split(","):
        before = play(args.model, name, args.n, args.max_tokens, "llama.cpp grammar")
        after = play(args.model, name, args.n, args.max_tokens, "grammar-first")
        same = "yes" if before["replies"] == after["replies"] else "NO"
        before["same replies"] = after["same replies"] = same
        for row in (before, after):
            print("| " + " | ".join(f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k])
                                    for k in keys) + " |", flush=True)


if __name__ == "__main__":
    main()
