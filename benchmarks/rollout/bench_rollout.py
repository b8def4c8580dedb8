"""Rollout speed on the embedded model: episodes interleaved (before) vs back to back (after).

A multi-step episode resends its growing history at every step. llama.cpp skips the prefix a
prompt shares with the tokens it evaluated last, so when one episode's steps reach the model
back to back, and the history is cut in chunks rather than one step at a time, each step
evaluates little more than its new state. Before: four episodes interleaved (a thread pool over
episodes, calls serialised on one model) and the oldest step dropped at every step once the
history is full. After: episodes back to back, history cut 4 steps at a time. Both run here, in
one process, on the same gridworld1 episodes, with no response cache and constrained actions:

    python benchmarks/rollout/bench_rollout.py [-m MODEL] [--episodes 20] [--prompt FILE]

It prints a Markdown table (prompt tokens evaluated per step, episodes per minute) for
RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from agentopt import LM, LMAgent, load_task
from agentopt.tasks import rollout as rollout_module
from agentopt.tasks.rollout import rollout
from agentopt.types import Instance, Trajectory


def episodes(n: int) -> list[Instance]:
    task = load_task("gridworld1")
    pool = [inst for split in ("train", "validation", "test") for inst in task.instances(split)]
    return pool[:n]


def measure(
    label: str, agent, prompt: str, instances: list[Instance], workers: int, cut_blocks: int
) -> dict[str, float | str]:
    calls: list[tuple[int, int]] = []
    lm = agent.lm
    inner = lm.chat

    def counting_chat(*args, **kwargs):  # type: ignore[no-untyped-def]
        completion = inner(*args, **kwargs)
        calls.append((completion.usage.prompt_tokens, completion.usage.cached_prompt_tokens))
        return completion

    lm.chat = counting_chat  # type: ignore[method-assign]
    rollout_module.HISTORY_CUT_BLOCKS = cut_blocks
    started = time.monotonic()
    trajectories: list[Trajectory] = rollout(agent, prompt, instances, max_concurrency=workers)
    wall = time.monotonic() - started
    lm.chat = inner  # type: ignore[method-assign]
    steps = sum(t.n_steps for t in trajectories)
    prompt = sum(p for p, _ in calls)
    evaluated = sum(p - c for p, c in calls)
    return {
        "mode": label,
        "episodes": len(trajectories),
        "steps": steps,
        "prompt tokens / step": prompt / steps,
        "evaluated / step": evaluated / steps,
        "episodes / min": len(trajectories) / wall * 60,
        "wall s": wall,
        "mean score": sum(t.score for t in trajectories) / len(trajectories),
    }


class Interleaved:
    """The LM agent without its one-episode-at-a-time hint: the rollout then runs its pool."""

    def __init__(self, agent: LMAgent) -> None:
        self.agent = agent
        self.lm = agent.lm

    def __call__(self, prompt: str, instance: Instance) -> Trajectory:
        return self.agent(prompt, instance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4, help="threads of the interleaved mode")
    parser.add_argument("--prompt", type=Path, help="system prompt file (default: the human prompt)")
    args = parser.parse_args()
    task = load_task("gridworld1")
    prompt = args.prompt.read_text().strip() if args.prompt else task.initial_prompt
    lm = LM(args.model, cache=False, journal=False)
    agent = LMAgent(lm, task, constrain_actions=True, max_tokens=32)
    instances = episodes(args.episodes)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.model}, "
          f"{len(instances)} gridworld1 episodes, prompt {args.prompt or 'human'}, constrained actions")
    after_cut = rollout_module.HISTORY_CUT_BLOCKS
    rows = [
        measure(f"before: interleaved ({args.workers} threads), cut 1", Interleaved(agent), prompt, instances,
                args.workers, cut_blocks=1),
        measure(f"after: back to back, cut {after_cut}", agent, prompt, instances, args.workers,
                cut_blocks=after_cut),
    ]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
