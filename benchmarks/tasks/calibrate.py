"""Human-prompt scores of the bundled tasks on one model, on their *train* split.

Used to size the generated tasks so that the demo model lands between 10% and 70% with its
human prompt (measured on train, so that choosing the sizes never looks at test), and to find
the multi-step tasks on which a model scores above 0 at all (the ones worth optimising on).

    python benchmarks/tasks/calibrate.py -m local/qwen2.5-coder-0.5b --n 50
    python benchmarks/tasks/calibrate.py --multi-step --constrain-actions --n 5 --max-tokens 32
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
MULTI_STEP = ("gridworld1", "gridworld2", "boxnet1", "boxnet2", "boxlift", "warehouse", "blocksworld",
              "logistics", "number_line")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--n", type=int, default=50,
                        help="train instances per task (at most the task's train split)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--tasks", help="comma-separated (default: the single-turn tasks, or with "
                        "--multi-step the multi-step ones)")
    parser.add_argument("--multi-step", action="store_true", help="the multi-step tasks by default")
    parser.add_argument("--constrain-actions", action="store_true",
                        help="decode only well-formed actions (tasks that declare an action grammar)")
    args = parser.parse_args()
    names = args.tasks.split(",") if args.tasks else MULTI_STEP if args.multi_step else SINGLE_TURN
    lm = LM(args.model, cache=False, journal=False)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.model}, n={args.n} (train), "
          f"max_tokens={args.max_tokens}, constrained actions: {args.constrain_actions}")
    print("| task | human prompt, train | success | mean steps | wrong format | s/call |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        task = load_task(name)
        started = time.monotonic()
        agent = LMAgent(lm, task, max_tokens=args.max_tokens, constrain_actions=args.constrain_actions)
        n = min(args.n, task.splits.train)
        evaluation, _ = evaluate(agent, task, task.initial_prompt, task.instances("train", n))
        steps = evaluation.mean_steps * n
        per_call = (time.monotonic() - started) / max(steps, 1)
        wrong_format = evaluation.rules_fired.get("wrong_format", 0) / max(steps, 1)
        print(f"| {name} | {evaluation.score} | {evaluation.success_rate:.0%} | {evaluation.mean_steps:.1f} "
              f"| {wrong_format:.0%} | {per_call:.1f} |", flush=True)


if __name__ == "__main__":
    main()
