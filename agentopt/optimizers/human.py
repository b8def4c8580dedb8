"""The baseline every comparison needs: the task's human-written prompt, with no search.

It spends nothing on search; it is scored on the validation and test splits like any chosen
prompt, so ``bench`` reports the human row from its own evaluation and pairs every method's
test scores with it instance by instance.
"""

from __future__ import annotations

from typing import Any

from agentopt.errors import UserError
from agentopt.optimizers.base import OptimizationResult, RunContext
from agentopt.types import Prompt


class Human:
    name = "human"

    def __init__(self, **overrides: Any) -> None:
        if overrides:
            raise UserError(f"the human baseline takes no options (got {', '.join(overrides)})")

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        return ctx.finish("human", human, "no_search", rounds=[])
