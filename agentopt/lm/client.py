"""The one LM interface: ``LM(model).chat(messages) -> Completion`` and its concurrent batch form.

Every call goes through the same path, whatever the backend:

    budget reserve -> cache lookup -> backend call with retries -> cache store -> journal

so caching, accounting, fault handling and secret hygiene are the same for a hosted API, the
embedded model and the scripted test model. The bound on concurrent calls sits in that path too
(a semaphore around the backend call), so thread pools nested anywhere above it (rollouts,
Reflexion, C3PO, APOHF) never put more than ``max_concurrency`` calls in flight on one LM.
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentopt.errors import BudgetExceeded, EndpointUnreachable, LMError, UserError
from agentopt.files import check_writable_dir
from agentopt.lm.backends.base import Backend, TransientError
from agentopt.lm.backends.embedded import EMBEDDED_MODEL, EmbeddedBackend
from agentopt.lm.backends.remote import RemoteBackend
from agentopt.lm.backends.scripted import ScriptedBackend
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.lm.cache import ResponseCache
from agentopt.lm.journal import CallJournal
from agentopt.lm.local_models import is_local
from agentopt.lm.request import ChatRequest, Sample, check_endpoint
from agentopt.lm.retry import RetryPolicy
from agentopt.lm.secrets import redact
from agentopt.paths import agentopt_home
from agentopt.types import Completion, Message, Usage, content_hash

DEFAULT_MODEL = EMBEDDED_MODEL
MessagesLike = Sequence[Message] | Sequence[dict[str, Any]] | str
# An empty reply is asked for once more before it is an error: from a hosted API it is usually
# a glitch, and from a deterministic model a second try would only repeat it.
EMPTY_REPLY_ATTEMPTS = 2


class _EndpointDown(Exception):
    """Raised inside the call loop when the endpoint was found down before this attempt."""


class EmptyReply(LMError):
    """The endpoint answered with nothing, every time it was asked."""


def default_state_dir() -> Path:
    """Where the shared response cache and call journal live unless a run says otherwise
    (checked, so an ``AGENTOPT_HOME`` that is a file or read-only is one line naming it)."""
    return check_writable_dir(agentopt_home(), "AGENTOPT_HOME")


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


def check_model(model: str, *, api_base: str | None = None, api_key: str | None = None) -> None:
    """What `LM` checks when it is made (a known model, its key, a well-formed endpoint),
    without opening a cache or journal: for callers that check everything before they create
    any file."""
    check_endpoint(api_base)
    make_backend(model).check({"api_base": api_base, "api_key": api_key})


def check_models(models: Sequence[str | None], *, api_base: str | None = None) -> None:
    """`check_model` for each model a run talks to at one endpoint: None (a role that falls
    back to another model) is skipped, and a model named twice is checked once."""
    for model in dict.fromkeys(m for m in models if m is not None):
        check_model(model, api_base=api_base)


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
        retry: backoff policy, per-attempt timeout and when an endpoint counts as down
            (`RetryPolicy`; `retry_policy(timeout_s, attempts)` builds one).
        max_concurrency: how many calls this LM has in flight at once, however many threads
            or tasks call it.
        jitter_seed: seeds the random waits between retries (the backoff's jitter), so a run's
            retry timing can be replayed. It has no effect on answers: which sample a sampled
            call gets is named per call (``sample=``, below).
        defaults: sampling parameters applied to every call unless overridden (temperature...).

    Repeated samples: a sampled call (temperature above 0) is cached only under the ``sample``
    it names, so ``chat(q, temperature=1)`` three times gives three fresh draws and
    ``samples(q, 3, temperature=1)`` gives three named, cached ones (`agentopt.lm.request`).
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
        jitter_seed: int = 0,
        **defaults: Any,
    ) -> None:
        if "seed" in defaults:
            # Once the name of jitter_seed; taking it as a sampling default now would change
            # what an existing caller's requests ask for, and their cache keys, in silence.
            raise UserError(
                "LM(seed=...) is now LM(jitter_seed=...): it only ever seeded the waits between "
                "retries. A sampling seed for the provider goes with each call (lm.chat(..., seed=N))"
            )
        self.model = model
        check_endpoint(api_base)
        self.backend = make_backend(model)
        self._transport = {"api_base": api_base, "api_key": api_key}
        self.backend.check(self._transport)
        self._weights_version = self.backend.weights_version()
        self.cache = _open(cache, ResponseCache, "cache.sqlite")
        self.journal = _open(journal, CallJournal, "calls.jsonl")
        self.meter = budget if isinstance(budget, BudgetMeter) else BudgetMeter(budget)
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max(1, max_concurrency)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self.defaults = defaults
        self._jitter_rng = random.Random(jitter_seed)  # the retry backoff's jitter, nothing else
        self._jitter_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.calls_made = 0
        self.cache_hits = 0
        # Attempts in a row, over all of this LM's calls, that timed out with no answer in
        # between, and when the first of them started. The endpoint counts as down once there
        # are `RetryPolicy.down_after_timeouts` of them spanning that many timeouts of silence
        # (so queued calls to a slow, serial server that time out together do not count as a
        # dead one); the message saying so is kept here, every waiting call fails with it, and
        # any answer clears it.
        self._timeouts_in_a_row = 0
        self._silent_since: float | None = None
        self._down: str | None = None

    def __repr__(self) -> str:
        return f"LM({self.model!r})"

    # --- the interface ---------------------------------------------------------------
    def chat(
        self, messages: MessagesLike, *, sample: Sample | None = None, allow_empty: bool = False,
        **params: Any,
    ) -> Completion:
        """Answer one conversation.

        ``sample`` names which of a sampled request's repeated answers this is (see the class
        docstring). Raises `LMError` if every retry fails, and on an empty reply unless
        ``allow_empty`` (an agent's empty step is its own failure, not the endpoint's); every
        error that leaves here has its secrets redacted."""
        request = self._request(messages, sample, params)
        key = request.key()
        if self._weights_version is not None:
            key = content_hash(key, self._weights_version, length=32)
        cache = self.cache if request.cacheable else None
        if cache is not None:
            hit = cache.get(key)
            if hit is not None and not hit.text and not hit.tool_calls and not allow_empty:
                hit = None  # an empty answer cached for a caller that accepted one: ask again
            if hit is not None:
                with self._count_lock:
                    self.cache_hits += 1
                if self.meter.budget.count_cache_hits:
                    self._reserve(key)
                    self.meter.charge(hit.usage.total_tokens, hit.cost_usd)
                self._journal(request_hash=key, model=self.model, cached=True, tool_calls=hit.tool_calls)
                return hit
        self._reserve(key)
        try:
            completion = self._call_with_retries(request, key, allow_empty)
        except EmptyReply:
            raise  # the endpoint answered, with nothing: the call was made and stays counted
        except BaseException:
            self.meter.release_call()  # nothing was answered, so nothing is owed
            raise
        self.meter.charge(completion.usage.total_tokens, completion.cost_usd)
        if cache is not None:
            cache.put(key, completion)
        return completion

    def samples(self, messages: MessagesLike, k: int, **params: Any) -> list[Completion]:
        """``k`` samples of one conversation (samples 0..k-1), each cached and paid on its own;
        what ``n=k`` asks of an endpoint, made of single calls every backend can answer."""
        if k < 1:
            raise UserError(f"k={k}: ask for at least one sample")
        if self._request(messages, None, params).greedy:
            return [self.chat(messages, **params)] * k  # a greedy request has one answer: pay once
        return self.batch([messages] * k, samples=list(range(k)), **params)

    def batch(
        self,
        conversations: Sequence[MessagesLike],
        *,
        samples: Sequence[Sample | None] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        """Answer many conversations concurrently (at most ``max_concurrency`` at a time).

        Results come back in input order. The first failure is raised after the in-flight
        calls finish (queued ones are cancelled); answers already received stay in the cache,
        so a retry resumes.
        """
        sample_ids = list(samples) if samples is not None else [None] * len(conversations)

        def one(i: int) -> Completion:
            result = self.chat(conversations[i], sample=sample_ids[i], **params)
            if on_done is not None:
                on_done(i, result)
            return result

        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(one, range(len(conversations))))

    async def achat(self, messages: MessagesLike, **kwargs: Any) -> Completion:
        """`chat` for asyncio code: the call runs on a worker thread, so the event loop stays
        free, and it counts against the same in-flight bound as every other call."""
        return await asyncio.to_thread(self.chat, messages, **kwargs)

    async def abatch(
        self,
        conversations: Sequence[MessagesLike],
        *,
        samples: Sequence[Sample | None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        """`batch` for asyncio code; results in input order, the first failure raised."""
        sample_ids = list(samples) if samples is not None else [None] * len(conversations)
        return list(await asyncio.gather(
            *(self.achat(c, sample=s, **params) for c, s in zip(conversations, sample_ids, strict=True))
        ))

    def usage(self) -> dict[str, float]:
        return {**self.meter.summary(), "cache_hits": self.cache_hits, "calls_made": self.calls_made}

    # --- internals -------------------------------------------------------------------
    def _request(self, messages: MessagesLike, sample: Sample | None, params: dict[str, Any]) -> ChatRequest:
        """The request a call makes: the LM's defaults under the call's parameters."""
        merged = {**self.defaults, **params}
        if merged.get("temperature") is None and self.backend.greedy_by_default:
            merged["temperature"] = 0.0  # what the backend does anyway; now the key says so
        return ChatRequest.build(self.model, as_messages(messages), sample=sample,
                                 endpoint=self._transport.get("api_base"), **merged)

    def _reserve(self, key: str) -> None:
        try:
            self.meter.reserve_call()
        except BudgetExceeded as exc:
            self._journal(request_hash=key, model=self.model, cached=False, attempts=0, error=str(exc))
            raise

    def _call_with_retries(self, request: ChatRequest, key: str, allow_empty: bool) -> Completion:
        transport = {**self._transport, "timeout": self.retry.timeout_s}
        last: Exception | None = None
        refused = 0  # consecutive refused connections since the first attempt
        empty = 0
        started = time.monotonic()
        tried = 0
        for attempt in range(1, self.retry.attempts + 1):
            if self._down is not None:
                break  # another call found the endpoint down: no point waiting out a timeout
            tried = attempt
            t0 = time.monotonic()
            fatal: Exception | None = None
            try:
                with self._slots:
                    if self._down is not None:
                        raise _EndpointDown  # found down while this call waited for its slot
                    reply = self.backend.complete(request, transport)
            except _EndpointDown:
                break
            except TransientError as exc:
                last = exc
                self._note_timeout(exc.timed_out, t0)
                refused = refused + 1 if exc.unreachable and refused == attempt - 1 else 0
                if (attempt == self.retry.attempts or refused >= self.retry.unreachable_attempts
                        or self._down is not None):
                    break
                with self._jitter_lock:
                    wait = self.retry.delay(attempt, exc.retry_after, self._jitter_rng)
                time.sleep(wait)
                continue
            except Exception as exc:
                # Not worth retrying (bad request, auth, context window, a bug): journalled,
                # and raised below, outside this block, so the original (which may quote a key
                # an endpoint echoed back) is neither its cause nor its context.
                fatal = self._fail(exc, key, attempt)
            if fatal is not None:
                raise fatal
            self._note_timeout(False, t0)
            if not reply.text and not reply.tool_calls and not allow_empty:
                empty += 1
                self.meter.charge(reply.prompt_tokens + reply.completion_tokens, reply.cost_usd)
                if empty < EMPTY_REPLY_ATTEMPTS and attempt < self.retry.attempts:
                    continue
                message = self._redact(f"{self.model}: the model returned an empty reply {empty} times")
                self._journal(request_hash=key, model=self.model, cached=False, attempts=attempt,
                              prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                              error=message)
                raise EmptyReply(message)
            with self._count_lock:
                self.calls_made += 1
            completion = Completion(
                text=reply.text,
                tool_calls=reply.tool_calls,
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
                latency_s=completion.latency_s, cost_usd=reply.cost_usd, tool_calls=reply.tool_calls,
            )
            return completion
        raise self._gave_up(last, key, tried, started)

    def _gave_up(self, last: Exception | None, key: str, attempts: int, started: float) -> LMError:
        """The error for a call that got no answer: journalled, secrets redacted. An endpoint
        that is down or unreachable is the user's to fix (`EndpointUnreachable`, one line)."""
        base = self._transport.get("api_base") or "the provider"
        if self._down is not None:
            error: LMError = EndpointUnreachable(self._down)
        elif isinstance(last, TransientError) and last.unreachable:
            error = EndpointUnreachable(self._redact(
                f"cannot reach {base} for model {self.model!r}: {last.reason or 'connection refused'}"))
        else:
            error = LMError(self._redact(f"{self.model}: call failed after {attempts} attempts "
                                         f"({time.monotonic() - started:.1f}s): {last}"))
        self._journal(request_hash=key, model=self.model, cached=False, attempts=attempts,
                      error=str(error))
        return error

    def _note_timeout(self, timed_out: bool, started: float) -> None:
        """Count attempts that timed out in a row (any answer, even an error, resets the count
        and clears a down endpoint); past the policy's limit, in number and in silence, the
        endpoint is down for this LM."""
        with self._count_lock:
            if not timed_out:
                self._timeouts_in_a_row, self._silent_since, self._down = 0, None, None
                return
            self._timeouts_in_a_row += 1
            self._silent_since = started if self._silent_since is None else min(self._silent_since, started)
            silence = time.monotonic() - self._silent_since
            limit = self.retry.down_after_timeouts
            if (self._down is None and self._timeouts_in_a_row >= limit
                    and silence >= limit * self.retry.timeout_s * 0.99):
                base = self._transport.get("api_base") or "the provider"
                self._down = self._redact(
                    f"{base} did not answer model {self.model!r} within {self.retry.timeout_s:g}s, "
                    f"{self._timeouts_in_a_row} times in a row: it looks down (wait longer with "
                    "--timeout, or point --api-base at a working endpoint)")

    def _fail(self, exc: Exception, key: str, attempt: int) -> Exception:
        """The error to raise for a failed call: journalled, and of the same kind, but with
        every secret redacted from its message (the original, which may quote a key an
        endpoint echoed back, is not chained)."""
        known = isinstance(exc, LMError | UserError)
        message = self._redact(str(exc) if known else f"{type(exc).__name__}: {exc}")
        self._journal(request_hash=key, model=self.model, cached=False, attempts=attempt, error=message)
        if known:
            # The same error, class and attributes kept, with only its message replaced.
            redacted = copy.copy(exc)
            redacted.args = (message,)
            if str(redacted) == message:
                return redacted
            return UserError(message) if isinstance(exc, UserError) else LMError(message)
        return LMError(f"{self.model}: {message}")

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
