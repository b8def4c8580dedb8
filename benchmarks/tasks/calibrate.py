"""Human-prompt scores of the single-turn tasks on one model, on their *train* split.

Used to size the generated tasks so that the demo model lands between 10% and 70% with its
human prompt (measured on train, so that choosing the sizes never looks at test).

    python benchmarks/tasks/calibrate.py -m local/qwen2.5-coder-0.5b --n 50
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

from agentopt import LM, LMAgent, load_task
from agentopt.tasks.evaluate import evaluate

SINGLE_TURN = ("boolean_expressions", "object_counting", "date_arithmetic", "word_sorting",
               "multistep_arithmetic", "navigate", "logical_deduction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=50, help="train instances per task")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--tasks", default=",".join(SINGLE_TURN))
    args = parser.parse_args()
    lm = LM(args.model, cache=False, journal=False)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.model}, n={args.n} (train)")
    print("| task | human prompt, train | wrong format | s/call |")
    print("| --- | --- | --- | --- |")
    for name in args.tasks.split(","):
        task = load_task(name)
        started = time.monotonic()
        agent = LMAgent(lm, task, max_tokens=args.max_tokens)
        evaluation, _ = evaluate(agent, task, task.initial_prompt, task.instances("train", args.n))
        per_call = (time.monotonic() - started) / args.n
        wrong_format = evaluation.rules_fired.get("wrong_format", 0) / args.n
        print(f"| {name} | {evaluation.score} | {wrong_format:.0%} | {per_call:.1f} |", flush=True)


if __name__ == "__main__":
    main()
