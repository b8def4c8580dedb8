"""Preference rows in, token tensors out.

Rows are TRL's format, ``{"prompt", "chosen", "rejected"}`` (+ optional ``source``, ``task``,
``kind``, ``weight``, ``metadata``), as strings or as chat-message lists. C3PO rows carry
``metadata.scope``: ``in`` rows are DPO pairs; ``near``/``out`` rows are keep examples whose
``chosen`` is the base model's own answer (trained with NLL so the model does not drift where the
feedback does not apply).

``kind`` says what the completions are: ``prompt`` (APOHF's compared prompts), ``response`` (one
model reply, e.g. C3PO) or ``trajectory`` (a multi-step agent transcript, Reflexion); a row without
one gets the kind its source implies (`agentopt.types.Preference.infer_kind`), else it is
unknown. `select_rows` filters by source, task and kind; `check_kinds` refuses a selection that
mixes kinds (unknown counts as a kind of its own) unless asked to mix; `check_scopes` refuses to
train C3PO on rows that do not say their scope.

Tokenisation matches TRL's DPOTrainer so that losses and benchmarks compare like with like: with
a chat template the prompt is rendered with the generation prompt and each completion as the
assistant turn; the completion starts where prompt and prompt+completion token ids diverge.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentopt.errors import UserError
from agentopt.files import read_text
from agentopt.types import UNKNOWN_KIND, Preference, PreferenceKind, kind_filter

Scope = Literal["in", "near", "out"]
ChatLike = str | list[dict[str, str]]
Filter = str | Sequence[str] | None


class PreferenceRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: ChatLike
    chosen: ChatLike
    rejected: ChatLike = ""
    source: str | None = None
    task: str | None = None
    kind: PreferenceKind | None = None
    weight: float = Field(1.0, ge=0.0)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _implied_kind(self) -> PreferenceRow:
        if self.kind is None:
            self.kind = Preference.infer_kind(self.source, self.metadata)
        return self

    @property
    def scope(self) -> Scope:
        scope = str(self.metadata.get("scope", "in")).lower()
        return scope if scope in ("near", "out") else "in"  # type: ignore[return-value]

    @property
    def has_scope(self) -> bool:
        """Does the row say its C3PO scope (``metadata.scope`` of in, near or out)?"""
        return str(self.metadata.get("scope", "")).lower() in ("in", "near", "out")

    @property
    def kind_name(self) -> str:
        return self.kind or UNKNOWN_KIND

    @property
    def is_pair(self) -> bool:
        return self.scope == "in" and bool(self.rejected)


def read_jsonl(path: str | Path) -> list[PreferenceRow]:
    """Rows of a TRL-format JSONL file; UserError naming the line for anything malformed."""
    path = Path(path)
    text = read_text(path, "data file", allow_empty=True)
    rows: list[PreferenceRow] = []
    # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which is no line break.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "prompt" not in data and "context" in data:
                data["prompt"] = data["context"]  # a dumped agentopt.types.Preference
            row = PreferenceRow.model_validate(data)
        except (json.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"{path}:{number}: not a preference row ({first})") from None
        if row.rejected and row.chosen == row.rejected:
            # The ledger refuses such a row too: a pair that prefers a text to itself teaches nothing.
            raise UserError(f"{path}:{number}: chosen and rejected are the same text")
        rows.append(row)
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
            task=p.task,
            kind=getattr(p, "kind", None),
            weight=p.weight,
            metadata=dict(p.metadata),
        )
        for p in preferences
    ]


def _values(value: str | Iterable[str]) -> list[str]:
    """One filter value or several; each may itself be a comma-separated list."""
    items = [value] if isinstance(value, str) else list(value)
    return [v.strip() for item in items for v in item.split(",") if v.strip()]


def select_rows(
    rows: Sequence[PreferenceRow], *, source: Filter = None, task: Filter = None, kind: Filter = None
) -> list[PreferenceRow]:
    """The rows that match every given filter (None = no filter). Each filter is one value, a
    list, or a comma-separated string, any of which may match. ``source`` matches exactly, or
    as a prefix when it ends in ``:`` (``judge:`` = every judge model); ``kind`` takes prompt,
    response, trajectory and ``unknown`` (rows with no kind)."""
    sources = _values(source) if source is not None else None
    tasks = set(_values(task)) if task is not None else None
    kinds = kind_filter(kind)

    def source_ok(row: PreferenceRow) -> bool:
        name = row.source or ""
        return any(name.startswith(s) if s.endswith(":") else name == s for s in sources or [])

    return [
        r
        for r in rows
        if (sources is None or source_ok(r))
        and (tasks is None or r.task in tasks)
        and (kinds is None or r.kind_name in kinds)
    ]


def kind_counts(rows: Iterable[PreferenceRow]) -> dict[str, int]:
    """How many rows of each kind (``unknown`` for rows with none), sorted by name."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.kind_name] = counts.get(r.kind_name, 0) + 1
    return dict(sorted(counts.items()))


def check_kinds(rows: Iterable[PreferenceRow], mix_kinds: bool = False) -> dict[str, int]:
    """The rows' kind counts; a one-line UserError when they hold more than one kind (unknown
    is a kind of its own here) and ``mix_kinds`` is not set. Prompt texts, single responses and
    whole transcripts teach different things, so training on a blend must be asked for."""
    counts = kind_counts(rows)
    if len(counts) > 1 and not mix_kinds:
        listed = ", ".join(f"{n} {k}" for k, n in counts.items())
        raise UserError(
            f"the selected preferences mix kinds ({listed}); choose one with --kind, "
            "or pass --mix-kinds to train on them together"
        )
    return counts


def check_scopes(rows: Sequence[PreferenceRow], method: str) -> None:
    """C3PO splits rows by ``metadata.scope``; a row without one must not pass for in-scope.
    One-line UserError naming how many rows lack it (only for ``method == "c3po"``)."""
    if method != "c3po":
        return
    missing = [r for r in rows if not r.has_scope]
    if missing:
        sources = sorted({r.source or "-" for r in missing})
        raise UserError(
            f"--method c3po needs metadata.scope (in, near or out) on every row, and {len(missing)} "
            f"of {len(rows)} selected rows have none (source: {', '.join(sources[:3])}"
            f"{', ...' if len(sources) > 3 else ''}); select C3PO's rows with --source c3po, "
            "or use --method dpo"
        )


def read_ledger(
    path: str | Path, *, source: Filter = None, task: Filter = None, kind: Filter = None
) -> list[PreferenceRow]:
    """The preferences in a ledger that match the filters (see `select_rows`; none = every row).
    The ledger module is imported here, on use, so the fine-tuner works (with --data) in an
    install or checkout that lacks it."""
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
    with PreferenceLedger(path, read_only=True) as ledger:  # training reads; it never migrates
        rows = from_preferences(list(ledger.iter()))
    if not rows:
        raise UserError(f"the ledger {path} holds no preferences")
    selected = select_rows(rows, source=source, task=task, kind=kind)
    if not selected:
        raise UserError(f"no preferences in {path} match {describe_filters(source, task, kind)}")
    return selected


def describe_filters(source: Filter = None, task: Filter = None, kind: Filter = None) -> str:
    """``--source judge: --kind prompt``: the filters as the CLI spells them (for messages)."""
    parts = [
        f"--{name} {','.join(_values(value))}"
        for name, value in (("source", source), ("task", task), ("kind", kind))
        if value is not None
    ]
    return " ".join(parts) or "no filter"


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
