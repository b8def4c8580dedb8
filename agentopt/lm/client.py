"""The one LM interface: ``LM(model).chat(messages) -> Completion`` and its concurrent batch form.

Every call goes through the same path, whatever the backend:

    budget reserve -> cache lookup -> backend call with retries -> cache store -> journal

so caching, accounting, fault handling and secret hygiene are the same for a hosted API, the
embedded model and the scripted test model.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentopt.errors import EndpointUnreachable, LMError, UserError
from agentopt.lm.backends.base import Backend, TransientError
from agentopt.lm.backends.embedded import EMBEDDED_MODEL, EmbeddedBackend
from agentopt.lm.backends.remote import RemoteBackend
from agentopt.lm.backends.scripted import ScriptedBackend
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.lm.cache import ResponseCache
from agentopt.lm.journal import CallJournal
from agentopt.lm.local_models import is_local
from agentopt.lm.request import ChatRequest
from agentopt.lm.retry import RetryPolicy
from agentopt.lm.secrets import redact
from agentopt.paths import agentopt_home
from agentopt.types import Completion, Message, Usage, content_hash

DEFAULT_MODEL = EMBEDDED_MODEL
MessagesLike = Sequence[Message] | Sequence[dict[str, str]] | str


def default_state_dir() -> Path:
    """Where the shared response cache and call journal live unless a run says otherwise."""
    return agentopt_home()


def make_backend(model: str) -> Backend:
    if is_local(model):
        return EmbeddedBackend(model)
    if model.startswith("scripted/"):
        return ScriptedBackend(model.split("/", 1)[1])
    if model.startswith("hf/"):
        # A fine-tuned (or any Hugging Face) causal LM loaded through transformers.
        from agentopt.finetune.hf_backend import HFBackend

        return HFBackend(model)
    return RemoteBackend(model)


def as_messages(messages: MessagesLike) -> list[Message]:
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return [m if isinstance(m, Message) else Message(**m) for m in messages]


class LM:
    """A model behind one interface.

    Args:
        model: a litellm model string, ``local/smollm2-135m`` (the default), or ``scripted/NAME``.
        api_base: endpoint for self-hosted OpenAI-compatible servers; never cached or logged.
        api_key: normally left None so the provider's environment variable is used.
        cache: a `ResponseCache`, a path to one, or False for none; default is the shared cache.
        journal: a `CallJournal`, a path, or False; default is the shared journal.
        budget: a `Budget` (or a shared `BudgetMeter`, so several LMs draw on one budget).
        retry: backoff policy and per-call timeout.
        max_concurrency: bound on concurrent calls in `batch`.
        defaults: sampling parameters applied to every call unless overridden (temperature...).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        cache: ResponseCache | str | Path | bool = True,
        journal: CallJournal | str | Path | bool = True,
        budget: Budget | BudgetMeter | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 4,
        seed: int = 0,
        **defaults: Any,
    ) -> None:
        self.model = model
        self.backend = make_backend(model)
        self._transport = {"api_base": api_base, "api_key": api_key}
        self.backend.check(self._transport)
        self._weights_version = self.backend.weights_version()
        self.cache = _open(cache, ResponseCache, "cache.sqlite")
        self.journal = _open(journal, CallJournal, "calls.jsonl")
        self.meter = budget if isinstance(budget, BudgetMeter) else BudgetMeter(budget)
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max(1, max_concurrency)
        self.defaults = defaults
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.calls_made = 0
        self.cache_hits = 0

    def __repr__(self) -> str:
        return f"LM({self.model!r})"

    # --- the interface ---------------------------------------------------------------
    def chat(self, messages: MessagesLike, *, sample: int = 0, **params: Any) -> Completion:
        """Answer one conversation. Raises `LMError` if every retry fails, never returns ''."""
        merged = {**self.defaults, **params}
        request = ChatRequest.build(self.model, as_messages(messages), sample=sample, **merged)
        key = request.key()
        if self._weights_version is not None:
            key = content_hash(key, self._weights_version, length=32)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                with self._count_lock:
                    self.cache_hits += 1
                if self.meter.budget.count_cache_hits:
                    self.meter.reserve_call()
                    self.meter.charge(hit.usage.total_tokens, hit.cost_usd)
                self._journal(request_hash=key, model=self.model, cached=True)
                return hit
        self.meter.reserve_call()
        completion = self._call_with_retries(request, key)
        self.meter.charge(completion.usage.total_tokens, completion.cost_usd)
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion

    def batch(
        self,
        conversations: Sequence[MessagesLike],
        *,
        samples: Sequence[int] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        """Answer many conversations concurrently (at most ``max_concurrency`` at a time).

        Results come back in input order. The first failure is raised after the in-flight
        calls finish (queued ones are cancelled); answers already received stay in the cache,
        so a retry resumes.
        """
        sample_ids = list(samples) if samples is not None else [0] * len(conversations)

        def one(i: int) -> Completion:
            result = self.chat(conversations[i], sample=sample_ids[i], **params)
            if on_done is not None:
                on_done(i, result)
            return result

        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(one, range(len(conversations))))

    def usage(self) -> dict[str, float]:
        return {**self.meter.summary(), "cache_hits": self.cache_hits, "calls_made": self.calls_made}

    # --- internals -------------------------------------------------------------------
    def _call_with_retries(self, request: ChatRequest, key: str) -> Completion:
        transport = {**self._transport, "timeout": self.retry.timeout_s}
        last: Exception | None = None
        refused = 0  # consecutive refused connections since the first attempt
        started = time.monotonic()
        attempt = 0
        for attempt in range(1, self.retry.attempts + 1):
            t0 = time.monotonic()
            try:
                reply = self.backend.complete(request, transport)
            except TransientError as exc:
                last = exc
                refused = refused + 1 if exc.unreachable and refused == attempt - 1 else 0
                if attempt == self.retry.attempts or refused >= self.retry.unreachable_attempts:
                    break
                with self._rng_lock:
                    wait = self.retry.delay(attempt, exc.retry_after, self._rng)
                time.sleep(wait)
                continue
            except (LMError, UserError) as exc:
                # Not worth retrying (bad request, auth, context window): journal it, then raise.
                self._journal(request_hash=key, model=self.model, cached=False,
                              attempts=attempt, error=self._redact(str(exc)))
                raise
            with self._count_lock:
                self.calls_made += 1
            completion = Completion(
                text=reply.text,
                model=self.model,
                finish_reason=reply.finish_reason,
                usage=Usage(prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                            cached_prompt_tokens=reply.cached_prompt_tokens),
                latency_s=time.monotonic() - t0,
                cost_usd=reply.cost_usd,
                request_hash=key,
            )
            self._journal(
                request_hash=key, model=self.model, cached=False, attempts=attempt,
                prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                cached_prompt_tokens=reply.cached_prompt_tokens,
                latency_s=completion.latency_s, cost_usd=reply.cost_usd,
            )
            return completion
        message = self._redact(f"{self.model}: call failed after {attempt} attempts "
                         f"({time.monotonic() - started:.1f}s): {last}")
        self._journal(request_hash=key, model=self.model, cached=False, attempts=attempt, error=message)
        if isinstance(last, TransientError) and last.unreachable:
            base = self._transport.get("api_base") or "the provider"
            raise EndpointUnreachable(f"cannot reach {base} for model {self.model!r}: connection refused")
        raise LMError(message)

    def _redact(self, text: str) -> str:
        """`redact`, plus the key this LM was given explicitly (it needn't be in the environment)."""
        key = self._transport.get("api_key")
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return redact(text)

    def _journal(self, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.record(**fields)


def _open(spec: Any, cls: type, filename: str) -> Any:
    if spec is False or spec is None:
        return None
    if spec is True:
        return cls(default_state_dir() / filename)
    if isinstance(spec, str | Path):
        return cls(spec)
    return spec
