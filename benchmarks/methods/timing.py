"""Wall time of a bench's runs, read back from their event journals and call logs.

A run's wall time is the sum of its sessions (a resumed run's pause is not counted): each
session runs from its ``start`` event to the last event it wrote. The bench's runs share one
response cache, so a run that asks what an earlier one asked is answered from it and looks
fast; the model's own time is the summed latency of the run's calls that reached the model
(``calls.jsonl``, cached ones left out), the fairer measure of what a method costs.

    python benchmarks/methods/timing.py bench-out/methods/single-turn
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from agentopt.lm.journal import CallJournal


def run_seconds(events: Path) -> float:
    # Read here rather than through the run journal, which repairs a torn last line on opening:
    # this script must not write to the journal of a run that may still be going.
    total, started, last = 0.0, None, None
    for line in events.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        when = event.get("time")
        if when is None:
            continue
        if event.get("type") == "start":
            if started is not None and last is not None:
                total += last - started
            started = when
        last = when
    if started is not None and last is not None:
        total += last - started
    return total


def model_calls(calls: Path) -> tuple[int, float]:
    """Calls that reached the model, and the seconds they took."""
    reached = [call for call in CallJournal(calls).read() if not call.cached]
    return len(reached), sum(call.latency_s for call in reached)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a bench's --out folder")
    args = parser.parse_args()
    if not (args.out / "runs").is_dir():
        raise SystemExit(f"{args.out} has no runs/ folder: give the --out folder of an agentopt bench")
    by_method: dict[str, list[tuple[float, int, float]]] = defaultdict(list)
    by_task: dict[str, float] = defaultdict(float)
    for run in sorted((args.out / "runs").iterdir()):
        if not (run / "result.json").is_file():
            continue
        result = json.loads((run / "result.json").read_text(encoding="utf-8"))
        seconds = run_seconds(run / "events.jsonl")
        by_method[result["method"]].append((seconds, *model_calls(run / "calls.jsonl")))
        by_task[result["task"]] += seconds
    print("| method | runs | wall s per run | model calls per run | model s per run | wall s in all |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, runs in by_method.items():
        k = len(runs)
        print(f"| {method} | {k} | {sum(r[0] for r in runs) / k:.0f} | {sum(r[1] for r in runs) / k:.0f} "
              f"| {sum(r[2] for r in runs) / k:.0f} | {sum(r[0] for r in runs):.0f} |")
    print()
    print("| task | wall s |")
    print("| --- | --- |")
    for task, seconds in by_task.items():
        print(f"| {task} | {seconds:.0f} |")
    print(f"\nall runs: {sum(by_task.values()):.0f} s")

if __name__ == "__main__":
    main()
