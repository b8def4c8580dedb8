"""Wall time of a bench's runs, read back from their event journals.

A run's time is the sum of its sessions (a resumed run's pause is not counted): each session
runs from its ``start`` event to the last event it wrote.

    python benchmarks/methods/timing.py bench-out/methods/single-turn
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def run_seconds(events: Path) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a bench's --out folder")
    args = parser.parse_args()
    by_method: dict[str, list[float]] = defaultdict(list)
    by_task: dict[str, float] = defaultdict(float)
    for run in sorted((args.out / "runs").iterdir()):
        if not (run / "result.json").is_file():
            continue
        result = json.loads((run / "result.json").read_text(encoding="utf-8"))
        seconds = run_seconds(run / "events.jsonl")
        by_method[result["method"]].append(seconds)
        by_task[result["task"]] += seconds
    print("| method | runs | mean s per run | total s |")
    print("| --- | --- | --- | --- |")
    for method, times in by_method.items():
        print(f"| {method} | {len(times)} | {sum(times) / len(times):.0f} | {sum(times):.0f} |")
    print()
    print("| task | total s |")
    print("| --- | --- |")
    for task, seconds in by_task.items():
        print(f"| {task} | {seconds:.0f} |")
    print(f"\nall runs: {sum(by_task.values()):.0f} s")


if __name__ == "__main__":
    main()
