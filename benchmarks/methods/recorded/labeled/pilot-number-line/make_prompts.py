"""Rebuild the pilot's inputs: a copy of number_line with 48 train episodes, and its four prompts.

    python benchmarks/methods/recorded/labeled/pilot-number-line/make_prompts.py OUT

writes OUT/tasks/number_line (the copy) and OUT/gold4.md, gold8.md, jgold4.md, jgold8.md; then
play each prompt with `agentopt run OUT/tasks/number_line --prompt OUT/<name>.md ...` (README).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from agentopt.optimizers.demos import labeled_example
from agentopt.prompts import render_prompt
from agentopt.tasks.loader import load_task_folder

ROOT = Path(__file__).resolve().parents[5]
TRAIN = 48  # train 0-39 are played, 40-47 shown as examples
SHOWN = range(40, 48)


def copy_task(out: Path) -> Path:
    folder = out / "tasks" / "number_line"
    shutil.copytree(ROOT / "tasks" / "number_line", folder, dirs_exist_ok=True)
    toml = folder / "task.toml"
    text = toml.read_text(encoding="utf-8")
    assert "\ntrain = 8\n" in text
    toml.write_text(text.replace("\ntrain = 8\n", f"\ntrain = {TRAIN}\n"), encoding="utf-8")
    return folder


def jumping_oracle(env: Any, moves: dict[str, int], fewest_moves: Any) -> str:
    """The task's oracle with ties between equally short routes broken towards a jump."""
    gap = abs(env.target - env.position)

    def cost(action: str) -> tuple[int, bool]:
        after = abs(env.target - env.position - moves[action])
        return fewest_moves(after), after > gap

    return env.format_action(min(["jump left", "jump right", "step left", "step right"], key=cost))


def main(out: Path) -> None:
    task = load_task_folder(copy_task(out))
    module = sys.modules[type(task.make_env(task.instance("train", 0))).__module__]
    oracles = {
        "gold": task.oracle,
        "jgold": lambda env: jumping_oracle(env, module.MOVES, module.fewest_moves),
    }
    for name, oracle in oracles.items():
        demos = [labeled_example(task, task.instance("train", i), oracle) for i in SHOWN]
        for k in (4, 8):
            text = render_prompt("demos/with_examples", prompt=task.initial_prompt, demos=demos[:k])
            (out / f"{name}{k}.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
