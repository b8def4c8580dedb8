"""Rollout speed on the embedded model: how much of each step's prompt llama.cpp evaluates.

A multi-step episode resends its growing history at every step. llama.cpp skips the prefix a
prompt shares with the tokens it evaluated last, so what a step costs depends on how much of
its message the previous step's message already started with. Three modes, run here in one
process on the same episodes, with no response cache and constrained actions:

- ``interleaved``: the first rollout. Four episodes interleaved (a thread pool over episodes,
  calls serialised on one model), the oldest step dropped at every step once the history is
  full, the current state under its own heading.
- ``chunked``: episodes back to back, the history cut up to 4 steps at a time but never more
  than half of what fits; the current state still under its own heading.
- ``prefix``: today's `render_turn`. The current state is written as the next step's history
  will show it, and a cut drops up to 4 steps, keeping at least the newest one that fits, so
  each step's message starts with the previous one's up to the end of its state.

The first two layouts are kept here, as the baseline, and are not the library's.

    python benchmarks/rollout/bench_rollout.py [-m MODEL] [--task gridworld1] [--episodes 20]
        [--modes interleaved,chunked,prefix] [--max-tokens 32] [--prompt FILE]

It prints a Markdown table (prompt tokens evaluated per step, episodes per minute) for
RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from agentopt import LM, LMAgent, load_task
from agentopt.tasks import rollout as rollout_module
from agentopt.tasks.rollout import rollout
from agentopt.types import Instance, Step, Trajectory

Layout = Callable[[Sequence[Step], str, int], str]


def headed_layout(cut_blocks: int) -> Layout:
    """The turn message before the prefix layout: the current state under "The current
    environment state is:", the history's start moved ``cut_blocks`` at a time, never more than
    half of what fits."""

    def render(history: Sequence[Step], observation: str, history_tokens: int) -> str:
        blocks = [
            f"State {i + 1}:\n{s.observation}\nAction {i + 1}: {s.raw_output.strip()}\n"
            f"Environment feedback {i + 1}: {s.env_feedback}"
            for i, s in enumerate(history)
        ]
        budget = history_tokens * 4
        start, size = len(blocks), 0
        while start > 0 and size + len(blocks[start - 1]) <= budget:
            start -= 1
            size += len(blocks[start])
        if start > 0:
            chunk = max(1, min(cut_blocks, (len(blocks) - start) // 2))
            start = -(-start // chunk) * chunk
        parts = []
        if blocks[start:]:
            parts.append("The previous state and action pairs at each step are:\n"
                         + "\n\n".join(blocks[start:]))
        parts.append(f"The current environment state is:\n{observation}")
        parts.append("Now, plan the next step:")
        return "\n\n".join(parts)

    return render


def episodes(task_name: str, n: int) -> list[Instance]:
    task = load_task(task_name)
    pool = [inst for split in ("train", "validation", "test") for inst in task.instances(split)]
    return pool[:n]


def measure(
    label: str, agent, prompt: str, instances: list[Instance], workers: int, layout: Layout
) -> dict[str, float | str]:
    calls: list[tuple[int, int]] = []
    lm = agent.lm
    inner = lm.chat

    def counting_chat(*args, **kwargs):  # type: ignore[no-untyped-def]
        completion = inner(*args, **kwargs)
        calls.append((completion.usage.prompt_tokens, completion.usage.cached_prompt_tokens))
        return completion

    library_layout = rollout_module.render_turn
    lm.chat = counting_chat  # type: ignore[method-assign]
    rollout_module.render_turn = layout  # Env.turn_message looks it up at every step
    try:
        started = time.monotonic()
        trajectories: list[Trajectory] = rollout(agent, prompt, instances, max_concurrency=workers)
        wall = time.monotonic() - started
    finally:
        lm.chat = inner  # type: ignore[method-assign]
        rollout_module.render_turn = library_layout
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


MODES = ("interleaved", "chunked", "prefix")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--task", default="gridworld1")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, of " + ", ".join(MODES))
    parser.add_argument("--workers", type=int, default=4, help="threads of the interleaved mode")
    parser.add_argument("--max-tokens", type=int, default=32, help="reply tokens a step")
    parser.add_argument("--prompt", type=Path, help="system prompt file (default: the human prompt)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes takes some of {', '.join(MODES)}")
    task = load_task(args.task)
    if task.single_turn:
        parser.error(f"{args.task} is single-turn: its one message has no history to lay out")
    prompt = args.prompt.read_text().strip() if args.prompt else task.initial_prompt
    lm = LM(args.model, cache=False, journal=False)
    agent = LMAgent(lm, task, constrain_actions=True, max_tokens=args.max_tokens)
    instances = episodes(args.task, args.episodes)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.model}, "
          f"{len(instances)} {args.task} episodes, prompt {args.prompt or 'human'}, constrained actions")
    cut = rollout_module.HISTORY_CUT_BLOCKS
    runs = {
        "interleaved": lambda: measure(f"interleaved ({args.workers} threads), headed, cut 1",
                                       Interleaved(agent), prompt, instances, args.workers,
                                       headed_layout(1)),
        "chunked": lambda: measure(f"back to back, headed, cut up to {cut} (half of what fits)",
                                   agent, prompt, instances, args.workers, headed_layout(cut)),
        "prefix": lambda: measure(f"back to back, prefix layout, cut up to {cut} (newest kept)",
                                  agent, prompt, instances, args.workers, rollout_module.render_turn),
    }
    rows = [runs[mode]() for mode in modes]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + " --- |" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
