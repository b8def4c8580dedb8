"""The LM layer with the scripted model: cache, journal, budget, batch, retries, secrets."""

from __future__ import annotations

import itertools
import random
import threading
import time
import types
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agentopt.lm.client as client_mod
from agentopt.errors import BudgetExceeded, EndpointUnreachable, LMError, UserError
from agentopt.lm import LM, Budget, BudgetMeter, CallJournal, ResponseCache, RetryPolicy, register_script
from agentopt.lm.backends.base import TransientError
from agentopt.lm.request import ChatRequest
from agentopt.types import Message
from tests.support import InFlight

FAST = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.01, timeout_s=5)


class Counter:
    """A script that answers like scripted/echo and counts its invocations."""

    def __init__(self, answer=None) -> None:
        self.calls = 0
        self.seen: list[tuple[list[Message], dict]] = []
        self._lock = threading.Lock()
        self.answer = answer or (lambda messages, params: messages[-1].content.upper())
        self.model = register_script(f"count-{uuid.uuid4().hex[:8]}", self)

    def __call__(self, messages, params):
        with self._lock:
            self.calls += 1
            self.seen.append((list(messages), dict(params)))
        return self.answer(messages, params)


@pytest.fixture
def sleeps(monkeypatch):
    """Record the client's backoff sleeps instead of sleeping."""
    delays: list[float] = []
    monkeypatch.setattr(client_mod, "time",
                        types.SimpleNamespace(monotonic=time.monotonic, sleep=delays.append))
    return delays


def journal_of(home: Path) -> list:
    return CallJournal(home / "calls.jsonl").read()


# --- cache -------------------------------------------------------------------------------
def test_repeated_run_is_answered_from_the_cache(agentopt_home):
    script = Counter()
    prompts = [f"question {i}" for i in range(6)]

    def experiment() -> tuple[LM, list]:
        lm = LM(script.model)  # default cache and journal, under AGENTOPT_HOME
        out = [lm.chat(p, temperature=0.5, sample=0) for p in prompts[:3]]
        out += lm.batch(prompts[3:], samples=[0, 0, 0], temperature=0.5)
        return lm, out

    first_lm, first = experiment()
    assert script.calls == 6 and first_lm.calls_made == 6 and first_lm.cache_hits == 0
    assert not any(c.cached for c in first)

    second_lm, second = experiment()  # a fresh LM, as in a re-run of the same experiment
    assert script.calls == 6, "a re-run must make no new calls"
    assert second_lm.calls_made == 0 and second_lm.cache_hits == 6
    assert all(c.cached for c in second)
    assert [c.text for c in second] == [c.text for c in first] == [p.upper() for p in prompts]
    assert [c.request_hash for c in second] == [c.request_hash for c in first]
    assert (agentopt_home / "cache.sqlite").is_file()
    assert len(ResponseCache(agentopt_home / "cache.sqlite")) == 6


def test_completion_carries_text_usage_latency_cost_and_hash():
    lm = LM("scripted/echo")
    c = lm.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "two words"}])
    assert c.text == "two words" and c.model == "scripted/echo" and c.finish_reason == "stop"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (4, 2, 6)
    assert c.latency_s >= 0 and c.cost_usd == 0.0 and not c.cached
    messages = [Message(role="system", content="be brief"), Message(role="user", content="two words")]
    # A scripted model decodes greedily, and the key says so.
    assert c.request_hash == ChatRequest.build("scripted/echo", messages, temperature=0.0).key()


def test_cache_key_leaves_out_key_base_url_and_timeout():
    msgs = [Message(role="user", content="hi")]
    plain = ChatRequest.build("openai/gpt-4o-mini", msgs, temperature=0.2).key()
    routed = ChatRequest.build("openai/gpt-4o-mini", msgs, temperature=0.2,
                               api_key="sk-test-AAAAAAAAAAAAAAAA", api_base="http://10.0.0.1:8000/v1",
                               timeout=3, extra_headers={"x": "y"}).key()
    assert plain == routed
    other = ChatRequest.build("openai/gpt-4o-mini", msgs, temperature=0.2, api_key="sk-test-BBBBBBBBBBBBBBBB",
                              api_base="https://elsewhere.example/v1").key()
    assert other == plain


def test_cache_key_covers_model_messages_params_and_sample():
    msgs = [Message(role="user", content="hi")]
    base = ChatRequest.build("m/a", msgs, temperature=0.2, max_tokens=10)
    variants = [
        ChatRequest.build("m/b", msgs, temperature=0.2, max_tokens=10),
        ChatRequest.build("m/a", [Message(role="user", content="hi!")], temperature=0.2, max_tokens=10),
        ChatRequest.build("m/a", [Message(role="system", content="hi")], temperature=0.2, max_tokens=10),
        ChatRequest.build("m/a", msgs, temperature=0.3, max_tokens=10),
        ChatRequest.build("m/a", msgs, temperature=0.2, max_tokens=11),
        ChatRequest.build("m/a", msgs, temperature=0.2, max_tokens=10, stop=["\n"]),
        ChatRequest.build("m/a", msgs, sample=1, temperature=0.2, max_tokens=10),
    ]
    keys = {v.key() for v in variants}
    assert base.key() not in keys and len(keys) == len(variants)
    # Canonical: parameter order and explicit None values don't change the key.
    assert ChatRequest.build("m/a", msgs, max_tokens=10, temperature=0.2, seed=None).key() == base.key()


def test_another_key_shares_the_cache_but_another_server_does_not():
    script = Counter()
    first = LM(script.model, api_base="http://127.0.0.1:1/v1", api_key="key-one-aaaaaaaa")
    same_server = LM(script.model, api_base="http://user:pw@127.0.0.1:1/v1/?x=1", api_key="key-two-bbbb")
    a = first.chat("same question")
    b = same_server.chat("same question")
    assert script.calls == 1 and b.cached and b.text == a.text
    # Two servers that both call their model openai/x are two models.
    other_server = LM(script.model, api_base="http://127.0.0.2:2/v1")
    assert not other_server.chat("same question").cached and script.calls == 2


def test_sampled_calls_are_fresh_draws_unless_they_name_their_sample(agentopt_home):
    script = Counter(lambda messages, params: f"draw {script.calls}")
    lm = LM(script.model)
    texts = [lm.chat("q", temperature=1.0).text for _ in range(3)]
    assert len(set(texts)) == 3 and script.calls == 3, "three sampled calls, three draws"
    assert not LM(script.model).chat("q", temperature=1.0).cached, "a fresh LM is not served a draw"
    named = LM(script.model).chat("q", temperature=1.0, sample=7)
    again = LM(script.model).chat("q", temperature=1.0, sample=7)
    assert again.cached and again.text == named.text
    # A greedy answer is one answer: every caller shares it, whatever sample it names.
    greedy = LM(script.model).chat("g", temperature=0.0, sample=1)
    assert LM(script.model).chat("g", temperature=0.0, sample=2).text == greedy.text


def test_n_is_refused_and_samples_gives_k_distinct_paid_answers():
    script = Counter(lambda messages, params: f"sample {params['sample']}")
    lm = LM(script.model)
    with pytest.raises(UserError, match="LM.samples"):
        lm.chat("q", temperature=1.0, n=3)
    out = lm.samples("q", 3, temperature=1.0)
    assert [c.text for c in out] == ["sample 0", "sample 1", "sample 2"] and lm.meter.calls == 3
    assert all(c.cached for c in LM(script.model).samples("q", 3, temperature=1.0))


def test_samples_and_params_are_cached_separately():
    script = Counter(lambda messages, params: f"sample {params['sample']} t={params.get('temperature')}")
    lm = LM(script.model)
    texts = [lm.chat("q", sample=s, temperature=t).text for s in (0, 1, 2) for t in (0.5, 1.0)]
    assert script.calls == 6 and len(set(texts)) == 6
    again = [lm.chat("q", sample=s, temperature=t).text for s in (0, 1, 2) for t in (0.5, 1.0)]
    assert script.calls == 6 and again == texts
    # Defaults given to the LM are part of the request, and a call's own params override them.
    hot = LM(script.model, temperature=1.0)
    assert hot.chat("q", sample=1).cached and hot.chat("q", sample=1, temperature=0.5).cached
    assert script.calls == 6


def test_cache_can_be_switched_off_or_placed(tmp_path):
    script = Counter()
    lm = LM(script.model, cache=False)
    lm.chat("x")
    lm.chat("x")
    assert script.calls == 2 and lm.cache is None
    placed = LM(script.model, cache=tmp_path / "mine.sqlite")
    placed.chat("x")
    assert (tmp_path / "mine.sqlite").is_file() and len(ResponseCache(tmp_path / "mine.sqlite")) == 1


# --- secrets -----------------------------------------------------------------------------
SECRETS = ("sk-test-SECRETVALUE123456", "explicit-Secret-Key-777x", "svc-token-zz9-plural-z-alpha")


def test_no_secret_reaches_any_file(agentopt_home, monkeypatch):
    env_key, explicit_key, token = SECRETS
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    monkeypatch.setenv("MY_SERVICE_TOKEN", token)
    base = "http://secret-gateway.internal:7777/v1"

    def leaky(messages, params):
        text = messages[-1].content
        if text == "fail hard":
            raise LMError(f"auth rejected {env_key} {explicit_key} {token}")
        if text == "fail soft":
            raise TransientError(f"503 for key={explicit_key} env={env_key} token={token}")
        return text

    model = register_script(f"leaky-{uuid.uuid4().hex[:8]}", leaky)
    lm = LM(model, api_key=explicit_key, api_base=base, retry=FAST)
    lm.chat("hello")
    lm.chat("hello")  # cache hit
    lm.batch(["a", "b", "c"])
    with pytest.raises(LMError):
        lm.chat("fail hard")
    with pytest.raises(LMError) as soft:
        lm.chat("fail soft")
    # The error the caller sees after the retries is redacted as well.
    assert not any(s in str(soft.value) for s in SECRETS)

    files = [p for p in agentopt_home.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"cache.sqlite", "calls.jsonl"}
    for path in files:
        data = path.read_bytes()
        for secret in (*SECRETS, base, "secret-gateway"):
            assert secret.encode() not in data, f"{secret!r} written to {path.name}"
    errors = [r.error for r in journal_of(agentopt_home) if r.error]
    assert len(errors) == 2 and all("***" in e for e in errors)


def test_redact_catches_a_key_echoed_without_its_prefix_and_leaves_prose_alone(monkeypatch):
    from agentopt.lm.secrets import redact

    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-SECRETVALUE123")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")  # secret-named, but a flag, not a key
    assert redact("403: key SECRETVALUE123 is revoked") == "403: key *** is revoked"
    assert redact("Authorization: Basic dXNlcjpwYXNzd29yZA==") == "Authorization: Basic ***"
    # This runs over prompts and replies too: a prompt's words are not credentials.
    prose = "Use basic arithmetic; the answer is false unless both hold."
    assert redact(prose) == prose


# --- budget ------------------------------------------------------------------------------
def test_call_budget_stops_with_a_clear_error():
    script = Counter()
    lm = LM(script.model, budget=Budget(max_calls=3))
    for i in range(3):
        lm.chat(f"q{i}")
    with pytest.raises(BudgetExceeded, match="3/3 calls") as info:
        lm.chat("one too many")
    assert isinstance(info.value, UserError)  # the CLI prints it as one line, exit code 2
    assert script.calls == 3
    assert lm.chat("q1").cached  # cached answers are free unless the budget counts them


def test_cache_hits_count_when_the_budget_says_so():
    script = Counter()
    LM(script.model).chat("warm")
    lm = LM(script.model, budget=Budget(max_calls=2, count_cache_hits=True))
    lm.chat("warm")
    lm.chat("warm")
    with pytest.raises(BudgetExceeded):
        lm.chat("warm")
    assert script.calls == 1 and lm.meter.calls == 2


def test_token_budget_lets_the_crossing_call_finish_then_stops():
    script = Counter(lambda messages, params: "one two three")
    lm = LM(script.model, budget=Budget(max_tokens=10))
    lm.chat("a b c")  # 3 + 3 tokens
    lm.chat("d e f")  # 12 tokens: crosses the limit, completes
    with pytest.raises(BudgetExceeded, match="12/10 tokens"):
        lm.chat("g h i")
    assert script.calls == 2 and lm.usage()["tokens"] == 12


def test_dollar_budget_stops():
    meter = BudgetMeter(Budget(max_usd=0.01))
    meter.reserve_call()
    meter.charge(100, 0.006)
    meter.reserve_call()
    meter.charge(100, 0.006)
    with pytest.raises(BudgetExceeded, match=r"\$0.0120/\$0.0100"):
        meter.reserve_call()


def test_shared_meter_spans_lms_and_concurrent_batches_never_overshoot():
    script = Counter(lambda messages, params: (time.sleep(0.01), "ok")[1])
    meter = BudgetMeter(Budget(max_calls=5))
    a = LM(script.model, budget=meter, max_concurrency=4)
    b = LM(script.model, budget=meter, max_concurrency=4)
    a.chat("first")
    with pytest.raises(BudgetExceeded):
        b.batch([f"q{i}" for i in range(12)])
    assert script.calls == 5 and meter.calls == 5


# --- batch -------------------------------------------------------------------------------
def test_batch_keeps_input_order_and_respects_the_concurrency_bound():
    def answer(messages, params):
        i = int(messages[-1].content.split()[-1])
        time.sleep(0.005 * (12 - i))  # later items finish first
        return f"answer {i}"

    slow = InFlight(answer)
    model = register_script(f"slow-{uuid.uuid4().hex[:8]}", slow)
    done: list[int] = []
    lm = LM(model, max_concurrency=3)
    out = lm.batch([f"item {i}" for i in range(12)], on_done=lambda i, c: done.append(i))
    assert [c.text for c in out] == [f"answer {i}" for i in range(12)]
    assert slow.peak == 3, f"peak concurrency {slow.peak}, bound 3"
    assert sorted(done) == list(range(12))


def test_batch_samples_give_distinct_requests():
    script = Counter(lambda messages, params: f"s{params['sample']}")
    out = LM(script.model).batch(["q"] * 4, samples=[0, 1, 2, 3], temperature=0.7)
    assert [c.text for c in out] == ["s0", "s1", "s2", "s3"] and script.calls == 4


def test_batch_stops_starting_work_after_a_failure():
    def fragile(messages, params):
        if messages[-1].content == "boom":
            raise LMError("the request is malformed")
        time.sleep(0.02)
        return "ok"

    counter = Counter(fragile)
    lm = LM(counter.model, max_concurrency=2)
    with pytest.raises(LMError, match="malformed"):
        lm.batch(["fine", "boom"] + [f"later {i}" for i in range(30)])
    assert counter.calls < 10, f"{counter.calls} calls: queued requests ran after the failure"
    assert LM(counter.model).chat("fine").cached  # what finished is kept for the retry


# --- retries -----------------------------------------------------------------------------
def flaky(failures: int, *, retry_after: float | None = None, unreachable: bool = False) -> Counter:
    def script(messages, params):
        if counter.calls <= failures:
            raise TransientError(f"503 attempt {counter.calls}", retry_after=retry_after,
                                 unreachable=unreachable)
        return "recovered"

    counter = Counter(script)
    return counter


def test_transient_errors_are_retried_with_jittered_backoff(agentopt_home, sleeps):
    script = flaky(3)
    policy = RetryPolicy(attempts=5, base_delay_s=0.5, max_delay_s=20)
    c = LM(script.model, retry=policy).chat("q")
    assert c.text == "recovered" and script.calls == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= 0.5 * 2 ** (attempt - 1)
    (record,) = journal_of(agentopt_home)
    assert record.attempts == 4 and record.error is None and not record.cached


def test_retry_after_is_honoured_and_capped(sleeps):
    LM(flaky(2, retry_after=2.5).model, retry=RetryPolicy(attempts=3)).chat("q")
    assert sleeps == [2.5, 2.5]
    sleeps.clear()
    LM(flaky(1, retry_after=3600).model, retry=RetryPolicy(attempts=3, max_delay_s=7)).chat("q")
    assert sleeps == [7]


def test_jitter_seed_replays_the_retry_waits_and_the_old_name_seed_is_refused(sleeps):
    def waits(jitter_seed: int) -> list[float]:
        sleeps.clear()
        LM(flaky(3).model, retry=RetryPolicy(attempts=5), jitter_seed=jitter_seed).chat("q")
        return list(sleeps)

    assert waits(7) == waits(7) != waits(8)
    with pytest.raises(UserError, match=r"LM\(jitter_seed=...\)"):
        LM(flaky(0).model, seed=1)


def test_after_the_last_retry_the_caller_gets_an_error_not_an_empty_string(agentopt_home, sleeps):
    script = flaky(10**6)
    lm = LM(script.model, retry=RetryPolicy(attempts=4))
    with pytest.raises(LMError) as info:
        lm.chat("q")
    assert type(info.value) is LMError  # not a TransientError leaking out, not a UserError
    assert "after 4 attempts" in str(info.value) and "503 attempt 4" in str(info.value)
    assert script.calls == 4 and len(sleeps) == 3
    assert len(lm.cache) == 0  # a failure is never cached as an answer
    (record,) = journal_of(agentopt_home)
    assert record.attempts == 4 and "503" in record.error
    with pytest.raises(LMError):  # and the next try calls again
        lm.chat("q")
    assert script.calls == 8


def test_errors_that_retrying_cannot_fix_fail_at_once(agentopt_home, sleeps):
    for exc in (LMError("context window exceeded"), UserError("authentication failed")):
        def script(messages, params, exc=exc):
            raise exc

        counter = Counter(script)
        with pytest.raises(type(exc)):
            LM(counter.model, retry=RetryPolicy(attempts=5)).chat("q")
        assert counter.calls == 1
    assert sleeps == []
    errors = [r.error for r in journal_of(agentopt_home)]
    assert errors == ["context window exceeded", "authentication failed"]


def test_refused_connections_give_up_early_as_endpoint_unreachable(sleeps):
    script = flaky(10**6, unreachable=True)
    policy = RetryPolicy(attempts=6, unreachable_attempts=2)
    lm = LM(script.model, api_base="http://127.0.0.1:9/v1", retry=policy)
    with pytest.raises(EndpointUnreachable, match="127.0.0.1:9") as info:
        lm.chat("q")
    assert isinstance(info.value, UserError) and isinstance(info.value, LMError)
    assert script.calls == 2


def test_a_server_that_refuses_after_answering_errors_gets_every_retry(sleeps):
    # A 503 first, then refusals (a server restarting): not "nothing listens there".
    def script(messages, params):
        raise TransientError("refused", unreachable=counter.calls > 1)

    counter = Counter(script)
    with pytest.raises(LMError):
        LM(counter.model, retry=RetryPolicy(attempts=5, unreachable_attempts=2)).chat("q")
    assert counter.calls == 5


@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=60),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delay_stays_within_its_ceiling(attempt, base, cap, seed):
    policy = RetryPolicy(base_delay_s=base, max_delay_s=cap)
    delay = policy.delay(attempt, None, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1)) + 1e-12


@given(retry_after=st.floats(min_value=-100, max_value=1e6), cap=st.floats(min_value=0, max_value=60))
def test_retry_after_delay_is_clamped(retry_after, cap):
    delay = RetryPolicy(max_delay_s=cap).delay(3, retry_after, random.Random(0))
    assert delay == min(max(retry_after, 0.0), cap)


def test_backoff_is_jittered_and_grows():
    policy = RetryPolicy(base_delay_s=1, max_delay_s=100)
    rng = random.Random(1)
    first = [policy.delay(1, None, rng) for _ in range(200)]
    sixth = [policy.delay(6, None, rng) for _ in range(200)]
    assert len(set(first)) == 200  # jitter: no two waits alike
    assert max(first) <= 1 < max(sixth) <= 32
    assert sum(sixth) / 200 > 5 * sum(first) / 200


# --- journal -----------------------------------------------------------------------------
def test_journal_records_every_call_hits_and_failures(agentopt_home, sleeps):
    def script(messages, params):
        if messages[-1].content == "bad":
            raise TransientError("always 500")
        return "fine answer"

    model = register_script(f"mixed-{uuid.uuid4().hex[:8]}", script)
    lm = LM(model, retry=RetryPolicy(attempts=2))
    a = lm.chat("one two")
    b = lm.chat("three")
    hit = lm.chat("one two")
    with pytest.raises(LMError):
        lm.chat("bad")
    records = journal_of(agentopt_home)
    assert [(r.cached, r.error is None) for r in records] == [(False, True), (False, True), (True, True),
                                                                (False, False)]
    assert [r.request_hash for r in records[:3]] == [a.request_hash, b.request_hash, hit.request_hash]
    assert records[0].request_hash == records[2].request_hash
    assert (records[0].prompt_tokens, records[0].completion_tokens) == (2, 2)
    assert all(r.model == model for r in records) and records[3].attempts == 2


def test_journal_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "calls.jsonl"
    journal = CallJournal(path)
    journal.record(request_hash="a", model="m", cached=False)
    with path.open("a") as fh:
        fh.write('{"time": 1.0, "request_hash": "torn", "mod')  # a writer killed mid-line
    assert [r.request_hash for r in journal.read()] == ["a"]
    CallJournal(path).record(request_hash="b", model="m", cached=True)  # the next process appends
    assert [r.request_hash for r in CallJournal(path).read()] == ["a", "b"]
    assert path.read_text().count("\n") == 3


def test_journal_is_append_only_across_instances(tmp_path):
    path = tmp_path / "j" / "calls.jsonl"
    for i in range(3):
        lm = LM("scripted/echo", journal=path, cache=False)
        lm.chat(f"m{i}")
    records = CallJournal(path).read()
    assert len(records) == 3 and [r.time for r in records] == sorted(r.time for r in records)


def test_concurrent_journal_lines_stay_whole(tmp_path):
    journal = CallJournal(tmp_path / "calls.jsonl")
    threads = [threading.Thread(target=lambda k=k: [journal.record(request_hash=f"{k}-{i}", model="m",
                                                                   cached=False, error="x" * 500)
                                                    for i in range(50)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hashes = {r.request_hash for r in journal.read()}
    assert hashes == {f"{k}-{i}" for k, i in itertools.product(range(4), range(50))}


# --- model strings -----------------------------------------------------------------------
@pytest.mark.parametrize("model", ["scripted/no-such-script", "local/llama-70b"])
def test_unknown_models_are_user_errors(model):
    with pytest.raises(UserError, match="unknown"):
        LM(model)
