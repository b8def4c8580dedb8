"""litellm over real loopback HTTP, through an endpoint that injects faults (tests/support)."""

from __future__ import annotations

import time
import types

import pytest

import agentopt.lm.client as client_mod
from agentopt.errors import BudgetExceeded, EndpointUnreachable, LMError, UserError
from agentopt.lm import LM, Budget, CallJournal, RetryPolicy
from tests.support.fault_proxy import FAULT_KINDS, FaultProxy, closed_port, fake_answer

# A per-call timeout of 1 s; the proxy's "timeout" fault hangs for 3 s, so the client times out.
POLICY = RetryPolicy(timeout_s=1, base_delay_s=0.01, max_delay_s=0.05, attempts=8)
PROMPTS = [f"request {i}: list {i} fruits that are not apples" for i in range(20)]


def remote_lm(proxy: FaultProxy, **kwargs) -> LM:
    kwargs.setdefault("retry", POLICY)
    kwargs.setdefault("cache", False)
    return LM("openai/fake", api_base=proxy.url, **kwargs)


@pytest.fixture(scope="module")
def reference() -> list[str]:
    """The fault-free run: the same requests against the fake model directly."""
    with FaultProxy(fault_rate=0) as clean:
        texts = [c.text for c in remote_lm(clean, journal=False).batch(PROMPTS)]
        assert clean.total_faults == 0 and clean.passed == len(PROMPTS)
    return texts


def test_reference_run_is_the_fake_models_answers(reference):
    assert reference == [p[::-1] for p in PROMPTS]


def test_calls_succeed_despite_faults_and_equal_the_fault_free_run(reference, agentopt_home):
    with FaultProxy(fault_rate=0.3, seed=7, hang_s=3) as proxy:
        lm = remote_lm(proxy, max_concurrency=4, journal=True)
        out = lm.batch(PROMPTS)
    assert [c.text for c in out] == reference
    assert all(c.text for c in out)
    # Faults really happened, of every kind, at about the rate asked for.
    assert set(proxy.faults) == set(FAULT_KINDS), proxy.faults
    assert 0.15 <= proxy.total_faults / proxy.requests <= 0.5, (proxy.faults, proxy.requests)
    assert proxy.passed == len(PROMPTS)
    assert 2 <= proxy.peak_in_flight <= 4  # concurrent, within the LM's bound
    assert proxy.statuses[429] == proxy.faults["rate_limit"]
    assert sum(proxy.statuses[s] for s in (500, 502, 503)) == proxy.faults["server_error"]
    # Every injected fault cost exactly one retry, and the journal accounts for each of them.
    records = CallJournal(agentopt_home / "calls.jsonl").read()
    assert len(records) == len(PROMPTS) and all(r.error is None for r in records)
    assert sum(r.attempts - 1 for r in records) == proxy.total_faults
    assert lm.calls_made == len(PROMPTS)


def test_sequential_calls_through_faults_match_too(reference):
    with FaultProxy(fault_rate=0.3, seed=3, kinds=("rate_limit", "server_error", "garbage", "empty_choices"),
                    retry_after=0) as proxy:
        lm = remote_lm(proxy)
        out = [lm.chat(p) for p in PROMPTS[:10]]
    assert [c.text for c in out] == reference[:10]
    assert proxy.total_faults >= 2


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried(kind, agentopt_home):
    with FaultProxy(sequence=[kind], hang_s=3) as proxy:
        c = remote_lm(proxy).chat("hello there")
    assert c.text == "ereht olleh" and proxy.faults[kind] == 1 and proxy.requests == 2
    (record,) = CallJournal(agentopt_home / "calls.jsonl").read()
    assert record.attempts == 2 and record.error is None


def test_server_errors_cycle_through_500_502_503():
    with FaultProxy(sequence=["server_error"] * 3) as proxy:
        remote_lm(proxy).chat("x")
    assert [proxy.statuses[s] for s in (500, 502, 503)] == [1, 1, 1]


def test_retry_after_header_is_honoured(monkeypatch):
    delays: list[float] = []
    fake_time = types.SimpleNamespace(monotonic=time.monotonic, sleep=delays.append)
    monkeypatch.setattr(client_mod, "time", fake_time)
    with FaultProxy(sequence=["rate_limit", "rate_limit"], retry_after=4) as proxy:
        c = remote_lm(proxy, retry=RetryPolicy(timeout_s=5, attempts=3, max_delay_s=30)).chat("abc")
    assert c.text == "cba"
    assert delays == [4.0, 4.0]


def test_usage_and_cost_come_from_the_reply_and_the_price_table():
    with FaultProxy(fault_rate=0) as proxy:
        lm = LM("openai/gpt-4o-mini", api_base=proxy.url, retry=POLICY, cache=False,
                budget=Budget(max_usd=5e-6))
        c = lm.chat("one two three four")
        assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (4, 4)
        # gpt-4o-mini: $0.15 per million prompt tokens, $0.60 per million completion tokens.
        assert c.cost_usd == pytest.approx(4 * 0.15e-6 + 4 * 0.60e-6)
        lm.chat("five six seven eight")  # crosses the dollar budget, completes
        with pytest.raises(BudgetExceeded, match=r"\$"):
            lm.chat("nine")
        assert proxy.requests == 2


def test_unreachable_endpoint_is_a_quick_user_error(agentopt_home):
    port = closed_port()
    lm = LM("openai/x", api_base=f"http://127.0.0.1:{port}/v1", retry=RetryPolicy(timeout_s=2))
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable, match=f"127.0.0.1:{port}") as info:
        lm.chat("anyone there?")
    assert isinstance(info.value, UserError)
    assert time.monotonic() - t0 < 10
    (record,) = CallJournal(agentopt_home / "calls.jsonl").read()
    assert record.attempts == RetryPolicy().unreachable_attempts and record.error


def test_an_endpoint_that_always_fails_raises_after_the_last_retry(agentopt_home):
    kinds = ("rate_limit", "server_error", "garbage", "empty_choices")
    with FaultProxy(fault_rate=1.0, kinds=kinds) as proxy:
        lm = remote_lm(proxy, retry=RetryPolicy(timeout_s=2, base_delay_s=0.01, attempts=5), cache=True)
        with pytest.raises(LMError, match="after 5 attempts") as info:
            lm.chat("doomed")
    assert not isinstance(info.value, EndpointUnreachable)
    assert proxy.requests == 5 and proxy.passed == 0
    assert len(lm.cache) == 0
    (record,) = CallJournal(agentopt_home / "calls.jsonl").read()
    assert record.attempts == 5 and "after 5 attempts" in record.error


def test_the_environment_key_is_sent_but_never_written(agentopt_home, monkeypatch):
    secret = "sk-test-SECRETVALUE123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with FaultProxy(fault_rate=0.5, seed=1, kinds=("server_error", "garbage", "rate_limit")) as proxy:
        lm = LM("openai/fake", api_base=proxy.url, retry=POLICY)
        lm.batch(PROMPTS[:6])
        with FaultProxy(fault_rate=1.0, kinds=("server_error",)) as dead, pytest.raises(LMError) as info:
            LM("openai/fake", api_base=dead.url, retry=RetryPolicy(attempts=2, base_delay_s=0)).chat("x")
    assert secret not in str(info.value)
    assert proxy.total_faults > 0
    # litellm reads the provider's variable and sends it; the stand-in key is only for keyless setups.
    assert {h["authorization"] for h in proxy.seen_headers} == {f"Bearer {secret}"}
    files = [p for p in agentopt_home.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert secret.encode() not in path.read_bytes(), path.name


def test_explicit_key_is_sent_and_without_one_a_stand_in(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FaultProxy(fault_rate=0) as proxy:
        LM("openai/fake", api_base=proxy.url, cache=False).chat("a")
        LM("openai/fake", api_base=proxy.url, api_key="sk-explicit-0123456789ab", cache=False).chat("a")
    assert [h["authorization"] for h in proxy.seen_headers] == ["Bearer sk-no-key-needed",
                                                                "Bearer sk-explicit-0123456789ab"]


def test_fake_model_answers():
    assert fake_answer([{"role": "system", "content": "s"}, {"role": "user", "content": "abc"}]) == "cba"
