"""Preference rows in, token tensors out.

Rows are TRL's format, ``{"prompt", "chosen", "rejected"}`` (+ optional ``source``, ``weight``,
``metadata``), as strings or as chat-message lists. C3PO rows carry ``metadata.scope``:
``in`` rows are DPO pairs; ``near``/``out`` rows are keep examples whose ``chosen`` is the base
model's own answer (trained with NLL so the model does not drift where the feedback does not apply).

Tokenisation matches TRL's DPOTrainer so that losses and benchmarks compare like with like: with
a chat template the prompt is rendered with the generation prompt and each completion as the
assistant turn; the completion starts where prompt and prompt+completion token ids diverge.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentopt.errors import UserError

Scope = Literal["in", "near", "out"]
ChatLike = str | list[dict[str, str]]


class PreferenceRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: ChatLike
    chosen: ChatLike
    rejected: ChatLike = ""
    source: str | None = None
    weight: float = Field(1.0, ge=0.0)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        scope = str(self.metadata.get("scope", "in")).lower()
        return scope if scope in ("near", "out") else "in"  # type: ignore[return-value]

    @property
    def is_pair(self) -> bool:
        return self.scope == "in" and bool(self.rejected)


def read_jsonl(path: str | Path) -> list[PreferenceRow]:
    """Rows of a TRL-format JSONL file; UserError naming the line for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    rows: list[PreferenceRow] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and "prompt" not in data and "context" in data:
                    data["prompt"] = data["context"]  # a dumped agentopt.types.Preference
                rows.append(PreferenceRow.model_validate(data))
            except (json.JSONDecodeError, ValidationError) as exc:
                first = str(exc).splitlines()[0]
                raise UserError(f"{path}:{number}: not a preference row ({first})") from None
    if not rows:
        raise UserError(f"{path} has no preference rows")
    return rows


def from_preferences(preferences: list[Any]) -> list[PreferenceRow]:
    """Rows from `agentopt.types.Preference` objects (context -> prompt)."""
    return [
        PreferenceRow(
            prompt=p.context,
            chosen=p.chosen,
            rejected=p.rejected,
            source=p.source,
            weight=p.weight,
            metadata=dict(p.metadata),
        )
        for p in preferences
    ]


def read_ledger(path: str | Path) -> list[PreferenceRow]:
    """Every preference in a ledger. The ledger module is imported here, on use, so the
    fine-tuner works (with --data) in an install or checkout that lacks it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ledger not found: {path}")
    try:
        from agentopt.preferences.ledger import PreferenceLedger
    except ImportError:
        raise UserError(
            "this install has no preference ledger (agentopt.preferences.ledger); "
            "export the pairs to JSONL and pass --data"
        ) from None
    with PreferenceLedger(path) as ledger:
        rows = from_preferences(list(ledger.iter()))
    if not rows:
        raise UserError(f"the ledger {path} holds no preferences")
    return rows


def split_rows(
    rows: list[PreferenceRow], fraction: float, seed: int
) -> tuple[list[PreferenceRow], list[PreferenceRow]]:
    """Seeded held-out split, stratified by scope so C3PO's eval sees every kind of prompt."""
    rng = random.Random(seed)
    train: list[PreferenceRow] = []
    held: list[PreferenceRow] = []
    for scope in ("in", "near", "out"):
        group = [r for r in rows if r.scope == scope]
        rng.shuffle(group)
        n_held = int(round(len(group) * fraction))
        if fraction > 0 and n_held == 0 and len(group) >= 4:
            n_held = 1  # a tiny data set still gets one held-out example per scope
        held += group[:n_held]
        train += group[n_held:]
    return train, held


@dataclass
class Encoded:
    """One row as token ids. Keep examples (near/out scope) have no ``rejected_ids``."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    scope: Scope
    weight: float = 1.0


def _as_messages(value: ChatLike, role: str) -> list[dict[str, str]]:
    return value if isinstance(value, list) else [{"role": role, "content": value}]


def _ids(tokenizer: Any, value: Any, **kwargs: Any) -> list[int]:
    if isinstance(value, list):
        return list(
            tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **kwargs)["input_ids"]
        )
    return list(tokenizer(text=value)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def encode(row: PreferenceRow, tokenizer: Any, max_length: int, max_prompt_length: int) -> Encoded:
    completions = [row.chosen] + ([row.rejected] if row.is_pair else [])
    if getattr(tokenizer, "chat_template", None):
        prompt: Any = _as_messages(row.prompt, "user")
        prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
        full = [_ids(tokenizer, prompt + _as_messages(c, "assistant")) for c in completions]
    else:
        eos = tokenizer.eos_token or ""
        text = row.prompt if isinstance(row.prompt, str) else "\n".join(m["content"] for m in row.prompt)
        prompt_ids = _ids(tokenizer, text)
        bodies = [c if isinstance(c, str) else "\n".join(m["content"] for m in c) for c in completions]
        full = [_ids(tokenizer, text + (b if b.endswith(eos) else b + eos)) for b in bodies]
    # Where a template renders the prompt differently alone, the completion starts at divergence.
    start = min(_common_prefix(prompt_ids, f) for f in full)
    prompt_ids = prompt_ids[:start]
    tails = [f[start:] for f in full]
    # Long agent contexts keep their end (the latest observation), and responses their start.
    prompt_ids = prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt_ids)
    tails = [t[:room] for t in tails]
    return Encoded(prompt_ids, tails[0], tails[1] if len(tails) > 1 else [], row.scope, row.weight)


@dataclass
class Batch:
    """Padded sequences in group order: chosen pairs, rejected pairs, near keeps, out keeps."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    n_pairs: int
    n_near: int
    n_out: int
    weights: torch.Tensor  # per pair
    index: torch.Tensor  # the pairs' positions in their data set (to look up reference log-probs)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.completion_mask.to(device),
            self.n_pairs,
            self.n_near,
            self.n_out,
            self.weights.to(device),
            self.index,
        )

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(
    pairs: list[Encoded],
    near: list[Encoded] = (),
    out: list[Encoded] = (),  # type: ignore[assignment]
    pad_id: int = 0,
    index: list[int] | None = None,
) -> Batch:
    seqs = (
        [(e.prompt_ids, e.chosen_ids) for e in pairs]
        + [(e.prompt_ids, e.rejected_ids) for e in pairs]
        + [(e.prompt_ids, e.chosen_ids) for e in near]
        + [(e.prompt_ids, e.chosen_ids) for e in out]
    )
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):  # right padding, as TRL's collator
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c, dtype=torch.long)
        attn[i, :n] = 1
        comp[i, len(p) : n] = 1
    weights = torch.tensor([e.weight for e in pairs], dtype=torch.float32)
    idx = torch.tensor(index if index is not None else list(range(len(pairs))), dtype=torch.long)
    return Batch(ids, attn, comp, len(pairs), len(near), len(out), weights, idx)


def pad_id_of(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0
