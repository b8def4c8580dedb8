"""Data that crosses module boundaries: messages and completions, prompts, instances, trajectories
(steps and feedback) and preferences.

Everything here is a pydantic model so it validates on the way in and serialises to JSON on the
way out: run journals, trajectories on disk and the preference ledger all store these shapes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from agentopt.errors import UserError

Split = Literal["train", "validation", "test"]
Role = Literal["system", "user", "assistant", "tool"]


def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable short hash of JSON-serialisable parts (dict keys sorted, so order never matters)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


class Message(BaseModel):
    """One chat message in OpenAI's shape, tool calls included, so a tool-using agent's
    conversation reaches the model, the cache key and the journal exactly as it was written."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str = ""
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _no_content_is_empty(cls, value: Any) -> Any:
        # An assistant turn that only calls tools has ``content: null`` on the wire.
        return "" if value is None else value

    def wire(self) -> dict[str, Any]:
        """The message as an OpenAI-compatible endpoint takes it (unset fields left out)."""
        data = self.model_dump(exclude_none=True)
        if self.tool_calls and not self.content:
            data["content"] = None
        return data


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = Field(
        default=0, description="prompt tokens the model did not evaluate again (a reused prefix)"
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(BaseModel):
    """One model reply, with what it cost."""

    text: str
    model: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float = 0.0
    cached: bool = False
    request_hash: str = ""
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None, description="the tool calls the model asked for (OpenAI's shape)"
    )


class Prompt(BaseModel):
    """A system prompt under optimisation; its id is a hash of its text."""

    model_config = ConfigDict(frozen=True)

    text: str
    parents: tuple[str, ...] = ()
    operator: str = "human"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return content_hash(self.text, length=12)


class Instance(BaseModel):
    """One episode's setup. `config` picks the instance family, `seed` fixes the rest."""

    model_config = ConfigDict(frozen=True)

    task: str
    split: Split
    index: int
    seed: int
    config: dict[str, Any] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return f"{self.task}/{self.split}/{self.index}"


class Step(BaseModel):
    """One agent turn: what the model saw, said, and what the environment answered."""

    observation: str
    raw_output: str
    action: str | None
    valid: bool
    env_feedback: str = ""
    reward: float = 0.0
    events: list[str] = Field(default_factory=list)
    progress: float = 0.0


class Feedback(BaseModel):
    """Text an optimiser is given, and where it came from."""

    text: str
    source: Literal["rule", "judge", "human", "reflection"]
    rule: str | None = None
    trajectory_id: str | None = None
    prompt_id: str | None = None


class Trajectory(BaseModel):
    """A whole episode, scored. The score is the task's completion ratio in [0, 1]."""

    instance: Instance
    prompt_id: str = ""
    steps: list[Step] = Field(default_factory=list)
    score: float = 0.0
    success: bool = False
    terminated_by: str | None = None
    feedback: list[Feedback] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return f"{self.instance.id}@{self.prompt_id}"


PreferenceKind = Literal["prompt", "response", "trajectory"]
PREFERENCE_KINDS: tuple[str, ...] = get_args(PreferenceKind)
UNKNOWN_KIND = "unknown"  # how a preference with no kind is named in filters, counts and messages


def kind_filter(kind: str | Iterable[str] | None) -> set[str] | None:
    """A kind filter (one name, a comma-separated string, or several) as a set of names, with
    ``unknown`` for no kind; None for no filter. A name that is not a kind is a UserError."""
    if kind is None:
        return None
    items = [kind] if isinstance(kind, str) else list(kind)
    names = {k.strip().lower() for item in items for k in item.split(",") if k.strip()}
    bad = sorted(names - {*PREFERENCE_KINDS, UNKNOWN_KIND})
    if bad:
        raise UserError(f"unknown preference kind {bad[0]!r} "
                        f"(use {', '.join(PREFERENCE_KINDS)} or {UNKNOWN_KIND})")
    return names


class Preference(BaseModel):
    """A pairwise comparison: `chosen` was preferred over `rejected` given `context`.

    ``kind`` says what ``chosen`` and ``rejected`` are: whole prompts (``"prompt"``, as APOHF
    compares them), single model responses (``"response"``, C3PO) or multi-step agent transcripts
    (``"trajectory"``, Reflexion); None when nobody said. It is a label, not part of the
    identity: `id` hashes (context, chosen, rejected, source) only, so rows recorded before kinds
    existed keep their ids and re-importing an old export stays a no-op.
    """

    context: str
    chosen: str
    rejected: str
    source: str
    task: str | None = None
    weight: float = 1.0
    metadata: dict[str, Any] = Field(default_factory=dict)
    kind: PreferenceKind | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        return content_hash(self.context, self.chosen, self.rejected, self.source)

    @staticmethod
    def infer_kind(source: str | None, metadata: dict[str, Any] | None) -> PreferenceKind | None:
        """The kind of a row written before kinds were recorded, from what its writer left:
        source ``reflexion`` -> trajectory, source ``c3po`` -> response, an APOHF row
        (``metadata.method == "apohf"``) that names the task instance its two prompts were played
        on -> prompt. Anything else is None (unknown): APOHF's bare-arm and response variants
        left no mark that tells them apart."""
        if source == "reflexion":
            return "trajectory"
        if source == "c3po":
            return "response"
        if isinstance(metadata, dict) and metadata.get("method") == "apohf" and "instance" in metadata:
            return "prompt"
        return None
