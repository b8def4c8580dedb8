"""A scripted world for PROMST tests, on the linewalk fixture task.

The scripted agent moves right as many times as its system prompt has "Hint" lines, then left.
The scripted optimizer adds one or two hints to a prompt, but only when the failure summaries
it is given carry the task's human-designed rule feedback: so the loop improves the score only
if feedback flows from the rules through the summaries into the rewrite.

Run as a script (`python -m tests.support.promst_toy RUN_DIR [--resume]`) for the resume tests.
"""

from __future__ import annotations

import os
import re
import sys
import time
import zlib
from pathlib import Path

from agentopt.lm import register_script
from agentopt.runs.optimize import RunConfig, run_optimization
from tests.support import sample_index

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
# Phrases from the linewalk rules' feedback texts (task.toml): "fell" and "stuck".
RULE_MARKS = ("walked into the pit", "No progress for 3 steps")


def _has_rule_text(text: str) -> bool:
    return any(mark in text for mark in RULE_MARKS)


def agent(messages, params) -> str:
    hints = messages[0].content.count("Hint")
    step = messages[-1].content.count("Action ")
    return "{right}" if step < hints else "{left}"


def optimizer(messages, params) -> str:
    text = messages[-1].content
    if "Summarize why" in text:
        # Like a real model at temperature 0, the summary depends on the order the failures
        # were shown in: PROMST's children differ by their shuffles, not by a sample index.
        first = re.search(r"State: (.*)", text)
        order = zlib.crc32((first.group(1) if first else "").encode()) % 97
        return "Feedback: " + ("the agent must keep moving right" if _has_rule_text(text) else "unclear") \
            + f" (first seen: {order})"
    if "Output only the new prompt" in text:
        current = re.search(r"<prompt>\n(.*?)\n</prompt>", text, re.DOTALL).group(1)
        if "keep moving right" not in text:
            return current
        k = sample_index(params) if params.get("temperature") else zlib.crc32(text.encode()) % 8
        extra = "".join(f"\nHint: keep moving right ({k}.{i})." for i in range(1 + k % 2))
        return current + extra
    return agent(messages, params)


def slow(script, delay: float):
    def wrapped(messages, params):
        time.sleep(delay)
        return script(messages, params)
    return wrapped


def register(delay: float = 0.0) -> str:
    return register_script("promst-toy" + (f"-slow{delay}" if delay else ""), slow(optimizer, delay))


def config(model: str, **method_config) -> RunConfig:
    defaults = {"embedder": "hashing", "n_children": 3, "max_levels": 4, "score_model_warmup": 3,
                "score_model_keep": 2}
    return RunConfig(task="linewalk", model=model, tasks_dirs=[str(FIXTURES)], seed=7,
                     method_config={**defaults, **method_config}, concurrency=2)


if __name__ == "__main__":
    # PROMST_TOY_DELAY slows each call, for tests that need the run to last a while.
    model = register(delay=float(os.environ.get("PROMST_TOY_DELAY", "0.01")))
    run_optimization(config(model), sys.argv[1], resume="--resume" in sys.argv)
