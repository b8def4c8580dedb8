"""`RunConfig`: everything a run is asked to do, as config.json records it.

Kept apart from the code that runs it, so the command line can build its options from the
fields (`agentopt.commands.run_options`) without loading models or optimisers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentopt.lm.backends.embedded import EMBEDDED_MODEL

DEFAULT_MODEL = EMBEDDED_MODEL


class RunConfig(BaseModel):
    """Everything that determines a run's result (with the LM cache), and how it reaches the
    model (`TRANSPORT_FIELDS`: those may change when the run is resumed)."""

    # A misspelt setting (budget_call=10) must not be dropped in silence: the run would ignore it.
    model_config = ConfigDict(extra="forbid")

    task: str
    method: str = "promst"
    model: str = DEFAULT_MODEL
    optimizer_model: str | None = Field(default=None, description="defaults to the task model")
    api_base: str | None = None
    seed: int = 0
    n_train: int | None = Field(default=None, ge=1, description="default: the task's train split size")
    n_validation: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)
    budget_calls: int | None = Field(default=None, ge=1, description="LM calls for the search")
    budget_tokens: int | None = Field(default=None, ge=1, description="tokens for the search")
    budget_usd: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="dollars for the search (priced models)"
    )
    significance_gate: bool | None = Field(
        default=None,
        description="keep a child prompt over its parent only when it is significantly better on "
        "validation (`SignificanceGate`); None: on when the validation split has enough instances",
    )
    gate_alpha: float = Field(default=0.05, ge=0, le=1)
    step_penalty: float = Field(default=0.0, ge=0)
    agent_max_tokens: int = Field(default=192, ge=8)
    constrain_actions: bool = Field(default=False, description="decode only the task's well-formed actions")
    history_tokens: int = Field(default=1000, ge=0)
    concurrency: int = Field(default=4, ge=1)
    timeout_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="seconds per attempt (default: RetryPolicy's)"
    )
    attempts: int | None = Field(default=None, ge=1, description="tries per call (default: RetryPolicy's)")
    method_config: dict[str, Any] = Field(default_factory=dict)
    tasks_dirs: list[str] = Field(default_factory=list)


# How the run reaches its model and finds its task, not what it computes: a resumed run may
# change these (a failing endpoint replaced by a healthy one, a longer timeout), and nothing else.
TRANSPORT_FIELDS = frozenset({"api_base", "concurrency", "timeout_s", "attempts"})
