"""C3PO: synthetic preference data from one piece of verbal feedback, without overgeneralising.

Stephan, Zhu, Chen, Finn, Sharma, "RLVF: Learning from Verbal Feedback without
Overgeneralization", ICML 2024, arXiv 2402.10893 (the method is called C3PO).

From a single sentence such as "Don't use emojis in emails to my boss":

1. **Categories** of requests where the feedback applies (``c3po/categories.j2``; the model
   thinks, lists, then revises the list; we parse the numbered list after ``REVISED_CATEGORIES``).
2. **In-scope prompts**, a numbered list per category (``c3po/in_scope.j2``).
3. **Near-scope prompts**: same categories, clearly outside the feedback's domain
   (``c3po/near_scope.j2``; parsed after ``REVISED_PROMPTS``).
4. **Out-of-scope prompts**: general requests. The paper sampled LAION OIG; we ship our own list
   of everyday requests (``prompts/c3po/general_prompts.txt``) and sample it with the run's seed.
5. **Baseline responses** y⁻ from the base model for every prompt, and **revised responses** y⁺
   for in-scope prompts from the *same* model, asked to rewrite y⁻ to follow the feedback
   (``c3po/revise.j2``; parsed after ``IMPROVED_RESPONSE:``).
6. A per-scope train/test split (the paper: 20% test).

The train rows go to the preference ledger: in-scope rows as DPO pairs (chosen = revised,
rejected = baseline), near- and out-of-scope rows as keep examples (chosen = baseline,
rejected = "", ``metadata.scope`` = near/out) that the fine-tuner trains with an NLL term so the
model does not change where the feedback does not apply (the paper's Eq. 5).

**Metrics** (paper section 5) for any model under test, by a judge LM (``c3po/judge_adherence.j2``,
a 1-5 rating of the model's response B against the base model's response A, rescaled to
g = (s - 3) / 2 in [-1, 1]): S_in = mean g on in-scope test prompts, S_out = mean |g| on near-
and out-of-scope test prompts, S_overall = (S_in + (1 - S_out)) / 2. The default model under
test is the paper's In-Context baseline: the base model with the feedback appended to the prompt.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from agentopt.errors import UserError
from agentopt.lm.client import as_messages
from agentopt.optimizers.base import configure
from agentopt.preferences.ledger import add_preferences, to_trl_row
from agentopt.prompts import prompt_dirs, render_prompt
from agentopt.types import Completion, Message, Preference

Scope = Literal["in", "near", "out"]
SCOPES: tuple[Scope, ...] = ("in", "near", "out")
EventFn = Callable[[str, dict[str, Any]], None]


class C3POConfig(BaseModel):
    n_categories: int = Field(default=4, ge=1, description="categories of in-scope requests (paper: 32)")
    n_prompts: int = Field(default=12, ge=1, description="prompts per scope (paper: 960)")
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="held out per scope (paper: 20%)")
    temperature: float = Field(default=0.7, ge=0.0, description="sampling for every generation (paper: 0.7)")
    top_p: float | None = Field(default=0.7, gt=0.0, le=1.0,
                                description="nucleus sampling (paper: 0.7); None sends none")
    max_tokens: int = Field(default=512, ge=16, description="per response (the paper's eval: 512)")
    list_max_tokens: int = Field(default=1024, ge=64, description="per category / prompt-list call")
    max_list_rounds: int = Field(default=3, ge=1, description="resampling rounds when a list comes up short")
    judge_max_tokens: int = Field(default=128, ge=8)


class VerbalFeedback(BaseModel):
    """The paper's feedback object: the sentence, where it applies, and what it changes.

    ``domain`` and ``effect`` are optional; without them the sentence itself stands in for both.
    """

    content: str
    domain: str | None = None
    effect: str | None = None

    @property
    def revision_text(self) -> str:
        return self.effect or self.content


class ChatModel(Protocol):
    model: str

    def chat(self, messages: Any, **params: Any) -> Completion: ...


# --- parsing the generator's lists ---------------------------------------------------------
_HEADER = re.compile(r"^\s*[#*_]*\s*([A-Z][A-Z_ ]{2,})\s*[*_]*\s*:", re.MULTILINE)
_ITEM = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*\u2022])\s+(.*\S)\s*$")


def section(text: str, *names: str) -> str | None:
    """The text after the last header ``NAME:`` (first name that occurs), up to the next header.

    Headers may carry markdown (``**REVISED_PROMPTS:**``); ``CATEGORIES`` does not match inside
    ``REVISED_CATEGORIES``.
    """
    for name in names:
        pattern = re.compile(rf"(?<![A-Za-z_])[#*_]*{re.escape(name)}[*_]*\s*:[*_]*", re.IGNORECASE)
        matches = list(pattern.finditer(text))
        if not matches:
            continue
        rest = text[matches[-1].end():]
        following = _HEADER.search(rest)
        return rest[: following.start()] if following else rest
    return None


def numbered_list(text: str, *, plain_lines: bool = True) -> list[str]:
    """Items of a numbered or bulleted list; a line that is not an item continues the last one.

    Without any list markers (and with ``plain_lines``), each non-empty line that does not end in
    a colon (a preamble such as "Here are five:") is an item. Quotes and markdown bold are
    stripped, duplicates and fragments under three characters dropped.
    """
    items: list[str] = []
    started = False
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append(match.group(1))
            started = True
        elif started and line.strip() and not _HEADER.match(line):
            items[-1] += " " + line.strip()
    if not started and plain_lines:
        items = [line.strip() for line in text.splitlines()
                 if line.strip() and not _HEADER.match(line) and not line.rstrip().endswith(":")]
    out: list[str] = []
    for item in items:
        item = item.strip().strip("*_").strip()
        if len(item) > 1 and item[0] == item[-1] and item[0] in "\"'":
            item = item[1:-1].strip()
        if len(item) >= 3 and item not in out:
            out.append(item)
    return out


def parse_revision(text: str) -> str | None:
    """The improved response after ``IMPROVED_RESPONSE:``; a bare answer (no format) is taken whole."""
    found = section(text, "IMPROVED_RESPONSE", "IMPROVED RESPONSE")
    if found is None:
        body = text.strip()
        return body if body and not re.search(r"EXPLANATION\s*:", body, re.IGNORECASE) else None
    # The section ends at the next all-caps header, which a response could legitimately contain;
    # take everything after the marker instead.
    marker = list(re.finditer(r"IMPROVED[_ ]RESPONSE[*_]*\s*:[*_]*", text, re.IGNORECASE))[-1]
    body = text[marker.end():].strip()
    return body or None


def parse_rating(text: str) -> int | None:
    """The judge's 1-5 rating: ``RATING: n`` if present, else the last lone digit 1-5."""
    found = re.findall(r"RATING\s*[*_]*\s*[:=]?\s*[*_]*\s*([1-5])", text, re.IGNORECASE)
    if found:
        return int(found[-1])
    lone = re.findall(r"(?<![\d.])([1-5])(?![\d.])", text)
    return int(lone[-1]) if lone else None


# --- the data set ------------------------------------------------------------------------------
class C3PORow(BaseModel):
    scope: Scope
    prompt: str
    category: str | None = None
    baseline: str
    revised: str | None = None
    split: Literal["train", "test"] = "train"


class C3PODataset(BaseModel):
    feedback: VerbalFeedback
    model: str
    seed: int = 0
    categories: list[str] = Field(default_factory=list)
    rows: list[C3PORow] = Field(default_factory=list)

    def select(self, scope: Scope | None = None, split: str | None = None) -> list[C3PORow]:
        return [r for r in self.rows
                if (scope is None or r.scope == scope) and (split is None or r.split == split)]

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {sp: len(self.select(s, sp)) for sp in ("train", "test")} for s in SCOPES}

    def preferences(self, split: str | None = "train") -> list[Preference]:
        """Ledger rows: in-scope DPO pairs and near/out-of-scope keep examples (rejected = "")."""
        out: list[Preference] = []
        for row in self.select(split=split):
            meta = {"scope": row.scope, "feedback": self.feedback.content, "category": row.category,
                    "split": row.split, "model": self.model}
            if row.scope == "in":
                # No usable revision, or one identical to the baseline, carries no preference.
                if not row.revised or row.revised.strip() == row.baseline.strip():
                    continue
                out.append(Preference(context=row.prompt, chosen=row.revised, rejected=row.baseline,
                                      source="c3po", metadata=meta, kind="response"))
            elif row.baseline.strip():
                out.append(Preference(context=row.prompt, chosen=row.baseline, rejected="",
                                      source="c3po", metadata=meta, kind="response"))
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> C3PODataset:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"C3PO data set not found: {path}")
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


def general_prompts(path: str | Path | None = None) -> list[str]:
    """The out-of-scope pool: one request per line, ``#`` lines ignored."""
    if path is None:
        for root in prompt_dirs():
            candidate = root / "c3po" / "general_prompts.txt"
            if candidate.is_file():
                path = candidate
                break
        else:
            raise UserError("prompts/c3po/general_prompts.txt not found")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"general prompts file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


# --- building the data set ----------------------------------------------------------------------
def _user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def _respond_all(
    model: ChatModel, conversations: Sequence[list[Message]], params: dict[str, Any], concurrency: int,
    on_done: Callable[[], None] | None = None, sample: int = 0,
) -> list[str]:
    """Answers in input order, ``concurrency`` calls at a time."""

    def one(messages: list[Message]) -> str:
        text = model.chat(messages, sample=sample, **params).text
        if on_done is not None:
            on_done()
        return text

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, conversations))


def _sampling(config: C3POConfig, max_tokens: int) -> dict[str, Any]:
    # Some providers refuse temperature and top_p together; top_p=None leaves it out.
    params: dict[str, Any] = {"temperature": config.temperature, "max_tokens": max_tokens}
    if config.top_p is not None:
        params["top_p"] = config.top_p
    return params


def _interleave(lists: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[str, str]]:
    """Round-robin over categories, so truncating to n keeps every category represented."""
    out: list[tuple[str, str]] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out


class C3PO:
    """Builds a C3PO data set from one piece of feedback.

    Args:
        config: hyperparameters (`C3POConfig`); keyword overrides are applied on top.
    """

    name = "c3po"

    def __init__(self, config: C3POConfig | None = None, **overrides: Any) -> None:
        self.config = configure(C3POConfig, config, overrides)

    def _sampling(self, max_tokens: int) -> dict[str, Any]:
        return _sampling(self.config, max_tokens)

    def categories(self, feedback: VerbalFeedback, generator: ChatModel) -> list[str]:
        cfg = self.config
        found: list[str] = []
        for sample in range(cfg.max_list_rounds):
            text = generator.chat(
                _user(render_prompt("c3po/categories", feedback=feedback.content, domain=feedback.domain,
                                    count=cfg.n_categories)),
                sample=sample, **self._sampling(cfg.list_max_tokens),
            ).text
            block = section(text, "REVISED_CATEGORIES", "REVISED CATEGORIES", "CATEGORIES")
            # Bare lines count as categories only under a header; free text is not a list.
            for item in numbered_list(block if block is not None else text, plain_lines=block is not None):
                if item not in found:
                    found.append(item)
            if len(found) >= cfg.n_categories:
                break
        # A model too weak to list categories still gets a data set: the domain is one category.
        return found[: cfg.n_categories] or [feedback.domain or feedback.content]

    def _prompts_per_category(
        self, template: str, feedback: VerbalFeedback, categories: list[str], generator: ChatModel,
        concurrency: int, exclude: set[str], revised_header: str | None = None,
    ) -> list[tuple[str, str]]:
        """Up to n_prompts (category, prompt) pairs, resampling the short categories for up to
        ``max_list_rounds`` rounds. Prompts in ``exclude`` (another scope's) are dropped."""
        cfg = self.config
        per_category = math.ceil(cfg.n_prompts / len(categories))
        found: dict[str, list[str]] = {c: [] for c in categories}
        seen = set(exclude)
        for sample in range(cfg.max_list_rounds):
            short = [c for c in categories if len(found[c]) < per_category]
            if not short or sum(map(len, found.values())) >= cfg.n_prompts:
                break
            messages = [
                _user(render_prompt(template, feedback=feedback.content, domain=feedback.domain,
                                    category=c, count=per_category))
                for c in short
            ]
            texts = _respond_all(generator, messages, self._sampling(cfg.list_max_tokens), concurrency,
                                 sample=sample)
            for category, text in zip(short, texts, strict=True):
                block = section(text, revised_header) if revised_header else None
                for item in numbered_list(block if block is not None else text):
                    if item not in seen and len(found[category]) < per_category:
                        seen.add(item)
                        found[category].append(item)
        return _interleave([[(c, p) for p in found[c]] for c in categories])[: cfg.n_prompts]

    def build_dataset(
        self,
        feedback: str | VerbalFeedback,
        lm: ChatModel,
        *,
        generator_lm: ChatModel | None = None,
        seed: int = 0,
        general_prompts_file: str | Path | None = None,
        max_concurrency: int = 4,
        on_event: EventFn | None = None,
    ) -> C3PODataset:
        """Run steps 1-6. ``lm`` is the base model (baselines and revisions); ``generator_lm``
        writes categories and prompts (the paper used GPT-4 there; default: ``lm``)."""
        cfg = self.config
        fb = feedback if isinstance(feedback, VerbalFeedback) else VerbalFeedback(content=feedback)
        if not fb.content.strip():
            raise UserError("the feedback is empty")
        generator = generator_lm or lm
        emit = on_event or (lambda kind, data: None)

        emit("stage", {"name": "categories", "total": None})
        categories = self.categories(fb, generator)
        emit("stage", {"name": "in-scope prompts", "total": None})
        in_scope = self._prompts_per_category("c3po/in_scope", fb, categories, generator, max_concurrency,
                                              set())
        emit("stage", {"name": "near-scope prompts", "total": None})
        near = self._prompts_per_category("c3po/near_scope", fb, categories, generator, max_concurrency,
                                          {p for _, p in in_scope}, revised_header="REVISED_PROMPTS")
        pool = [p for p in general_prompts(general_prompts_file) if p not in {q for _, q in in_scope + near}]
        out = [(None, p) for p in random.Random(seed).sample(pool, min(cfg.n_prompts, len(pool)))]

        prompts: list[tuple[Scope, str | None, str]] = (
            [("in", c, p) for c, p in in_scope]
            + [("near", c, p) for c, p in near]
            + [("out", c, p) for c, p in out]
        )
        emit("stage", {"name": "baseline responses", "total": len(prompts)})
        baselines = _respond_all(lm, [_user(p) for _, _, p in prompts], self._sampling(cfg.max_tokens),
                                 max_concurrency, lambda: emit("advance", {}))
        in_rows = [(p, b) for (scope, _, p), b in zip(prompts, baselines, strict=True) if scope == "in"]
        emit("stage", {"name": "revised responses", "total": len(in_rows)})
        revision_texts = _respond_all(
            lm,
            [_user(render_prompt("c3po/revise", prompt=p, response=b, feedback=fb.revision_text))
             for p, b in in_rows],
            self._sampling(cfg.max_tokens), max_concurrency, lambda: emit("advance", {}),
        )
        revised = iter(parse_revision(t) for t in revision_texts)

        rows = [
            C3PORow(scope=scope, category=category, prompt=p, baseline=b,
                    revised=next(revised) if scope == "in" else None)
            for (scope, category, p), b in zip(prompts, baselines, strict=True)
        ]
        return C3PODataset(feedback=fb, model=getattr(lm, "model", "?"), seed=seed, categories=categories,
                           rows=_split(rows, cfg.test_fraction, seed))


def _split(rows: list[C3PORow], test_fraction: float, seed: int) -> list[C3PORow]:
    """Seeded per-scope split; any scope with two or more rows keeps at least one for test."""
    out: list[C3PORow] = []
    for scope in SCOPES:
        group = [r for r in rows if r.scope == scope]
        order = list(range(len(group)))
        random.Random(f"{seed}/split/{scope}").shuffle(order)
        n_test = round(len(group) * test_fraction)
        if test_fraction > 0 and n_test == 0 and len(group) >= 2:
            n_test = 1
        test = set(order[:n_test])
        out += [r.model_copy(update={"split": "test" if i in test else "train"}) for i, r in enumerate(group)]
    return out


# --- the metrics -----------------------------------------------------------------------------
class InContextLM:
    """The paper's In-Context baseline as a model: the feedback is appended to the user's request."""

    def __init__(self, lm: ChatModel, feedback: str | VerbalFeedback) -> None:
        self.lm = lm
        self.feedback = feedback.content if isinstance(feedback, VerbalFeedback) else feedback
        self.model = f"in-context:{getattr(lm, 'model', '?')}"

    def chat(self, messages: Any, **params: Any) -> Completion:
        msgs = as_messages(messages)
        last = max(i for i, m in enumerate(msgs) if m.role == "user")
        text = render_prompt("c3po/in_context", prompt=msgs[last].content, feedback=self.feedback)
        msgs[last] = Message(role="user", content=text)
        return self.lm.chat(msgs, **params)


class Judgment(BaseModel):
    scope: Scope
    prompt: str
    baseline: str
    response: str
    rating: int | None = Field(default=None, description="judge's 1-5; None if unparseable")
    score: float | None = Field(default=None, description="(rating - 3) / 2, in [-1, 1]")


class AdherenceMetrics(BaseModel):
    model: str
    judge: str
    s_in: float = Field(description="mean adherence gain on in-scope prompts, in [-1, 1]")
    s_out: float = Field(description="mean |change| on near- and out-of-scope prompts, in [0, 1]")
    s_overall: float = Field(description="(s_in + (1 - s_out)) / 2")
    near_change: float
    out_change: float
    n: dict[str, int]
    unparsed: int = 0
    judgments: list[Judgment] = Field(default_factory=list, exclude=True)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def evaluate_feedback_adherence(
    model_lm: ChatModel,
    judge_lm: ChatModel,
    dataset: C3PODataset,
    feedback: str | VerbalFeedback | None = None,
    *,
    split: str | None = "test",
    config: C3POConfig | None = None,
    max_concurrency: int = 4,
    on_event: EventFn | None = None,
) -> AdherenceMetrics:
    """S_in, S_out and S_overall of ``model_lm`` against the data set's baseline responses.

    For each prompt of ``split`` (every row when the split is empty) the model under test
    answers; the judge rates its answer (B) against the base model's (A). An answer identical to
    the baseline scores 0 without a judge call (there is no difference to rate). Unparseable
    ratings are left out of the means and counted in ``unparsed``.
    """
    cfg = config or C3POConfig()
    fb = dataset.feedback.content if feedback is None else (
        feedback.content if isinstance(feedback, VerbalFeedback) else feedback)
    rows = dataset.select(split=split) or dataset.rows
    emit = on_event or (lambda kind, data: None)
    sampling = _sampling(cfg, cfg.max_tokens)
    emit("stage", {"name": "model responses", "total": len(rows)})
    responses = _respond_all(model_lm, [_user(r.prompt) for r in rows], sampling, max_concurrency,
                             lambda: emit("advance", {}))

    def judge(pair: tuple[C3PORow, str]) -> Judgment:
        row, response = pair
        if response.strip() == row.baseline.strip():
            rating: int | None = 3
        else:
            message = render_prompt("c3po/judge_adherence", feedback=fb, prompt=row.prompt,
                                    response_a=row.baseline, response_b=response)
            rating = parse_rating(judge_lm.chat(_user(message), temperature=0.0,
                                                max_tokens=cfg.judge_max_tokens).text)
        emit("advance", {})
        return Judgment(scope=row.scope, prompt=row.prompt, baseline=row.baseline, response=response,
                        rating=rating, score=None if rating is None else (rating - 3) / 2)

    emit("stage", {"name": "judging", "total": len(rows)})
    with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
        judgments = list(pool.map(judge, zip(rows, responses, strict=True)))

    def scores(*scopes: Scope) -> list[float]:
        return [j.score for j in judgments if j.scope in scopes and j.score is not None]

    s_in = _mean(scores("in"))
    s_out = _mean([abs(s) for s in scores("near", "out")])
    return AdherenceMetrics(
        model=getattr(model_lm, "model", "?"),
        judge=getattr(judge_lm, "model", "?"),
        s_in=s_in,
        s_out=s_out,
        s_overall=(s_in + (1 - s_out)) / 2,
        near_change=_mean([abs(s) for s in scores("near")]),
        out_change=_mean([abs(s) for s in scores("out")]),
        n={s: sum(j.scope == s for j in judgments) for s in SCOPES},
        unparsed=sum(j.rating is None for j in judgments),
        judgments=judgments,
    )


# --- the whole pipeline ------------------------------------------------------------------------
class C3POResult(BaseModel):
    feedback: str
    model: str
    categories: list[str]
    counts: dict[str, dict[str, int]]
    preferences: int = Field(description="train rows offered to the ledger (pairs + keep examples)")
    preferences_added: int = Field(description="of those, new to the ledger")
    metrics: AdherenceMetrics | None = None
    out_dir: str | None = None


def run_c3po(
    feedback: str | VerbalFeedback,
    lm: ChatModel,
    *,
    judge_lm: ChatModel | None = None,
    generator_lm: ChatModel | None = None,
    config: C3POConfig | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    ledger: Any = None,
    evaluate: bool = True,
    general_prompts_file: str | Path | None = None,
    max_concurrency: int = 4,
    on_event: EventFn | None = None,
) -> tuple[C3POResult, C3PODataset]:
    """Build the data set, write it (``out_dir``, ``ledger``), and measure the In-Context baseline.

    Files in ``out_dir``: ``data.json`` (the full data set; `C3PODataset.load` reads it back to
    evaluate a fine-tuned model later), ``dataset.jsonl`` (the train rows in TRL format, as in
    the ledger; ``agentopt finetune --data`` reads it), ``test.jsonl`` (the held-out rows),
    ``metrics.json`` and ``judgments.jsonl``.
    """
    method = C3PO(config)
    dataset = method.build_dataset(feedback, lm, generator_lm=generator_lm, seed=seed,
                                   general_prompts_file=general_prompts_file, max_concurrency=max_concurrency,
                                   on_event=on_event)
    # Only train rows reach the ledger: the test prompts must stay unseen by a model tuned on it.
    preferences = dataset.preferences("train")
    added = add_preferences(ledger, preferences)
    metrics = None
    if evaluate:
        metrics = evaluate_feedback_adherence(
            InContextLM(lm, dataset.feedback), judge_lm or lm, dataset, config=method.config,
            max_concurrency=max_concurrency, on_event=on_event,
        )
    result = C3POResult(
        feedback=dataset.feedback.content, model=dataset.model, categories=dataset.categories,
        counts=dataset.counts(), preferences=len(preferences), preferences_added=added, metrics=metrics,
        out_dir=str(out_dir) if out_dir is not None else None,
    )
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        dataset.save(folder / "data.json")
        _write_jsonl(folder / "dataset.jsonl", [to_trl_row(p) for p in preferences])
        _write_jsonl(folder / "test.jsonl", [to_trl_row(p) for p in dataset.preferences("test")])
        if metrics is not None:
            _write_jsonl(folder / "judgments.jsonl", [j.model_dump(mode="json") for j in metrics.judgments])
            (folder / "metrics.json").write_text(metrics.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (folder / "result.json").write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return result, dataset


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
