"""The embedded model (SmolLM2-135M via llama.cpp): in-process, and served by `agentopt serve`
to litellm over real loopback HTTP, with and without injected faults."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from agentopt.lm import LM, CallJournal, RetryPolicy
from tests.support.fault_proxy import FAULT_KINDS, FaultProxy

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is 2+2?",
    "Name a primary color.",
    "What is 2 + 3?",
    "Say hello in one word.",
    "What animal says moo?",
    "Name a day of the week.",
]
PARAMS = {"temperature": 0.0, "max_tokens": 24}
# Generation on a busy 2-core machine can take seconds; faults are cheap (see `hang_s` below).
HTTP_POLICY = RetryPolicy(timeout_s=120, base_delay_s=0.05, max_delay_s=0.5, attempts=10)


def served(server, **kwargs) -> LM:
    kwargs.setdefault("cache", False)
    kwargs.setdefault("retry", HTTP_POLICY)
    return LM("openai/smollm2-135m", api_base=kwargs.pop("api_base", server.url), **kwargs)


@pytest.fixture(scope="module")
def server_answers(embedded_server) -> list[str]:
    """The fault-free answers of the served model, asked directly."""
    lm = served(embedded_server, journal=False)
    return [lm.chat(p, **PARAMS).text for p in PROMPTS]


def test_embedded_in_process_answers_deterministically(agentopt_home):
    lm = LM("local/smollm2-135m", cache=False)
    a = lm.chat(PROMPTS[0], **PARAMS)
    b = lm.chat(PROMPTS[0], **PARAMS)
    assert a.text.strip() and a.text == b.text
    assert "4" in a.text  # it is weak, but not that weak
    assert 0 < a.usage.completion_tokens <= 24 and a.usage.prompt_tokens > 0
    assert a.finish_reason in ("stop", "length") and a.cost_usd == 0.0
    cached = LM("local/smollm2-135m")
    first = cached.chat(PROMPTS[1], **PARAMS)
    again = LM("local/smollm2-135m").chat(PROMPTS[1], **PARAMS)
    assert again.cached and again.text == first.text
    assert len(CallJournal(agentopt_home / "calls.jsonl").read()) == 4


def test_server_lists_the_model(embedded_server):
    with urllib.request.urlopen(f"{embedded_server.url}/models", timeout=10) as resp:
        ids = [m["id"] for m in json.load(resp)["data"]]
    assert ids == ["smollm2-135m"]


def test_litellm_talks_to_the_served_model_over_http(embedded_server, server_answers):
    assert all(text.strip() for text in server_answers)
    assert "4" in server_answers[0]
    c = served(embedded_server).chat(PROMPTS[0], **PARAMS)
    assert c.text == server_answers[0]  # temperature 0: the same answer every time
    assert c.usage.completion_tokens > 0 and c.usage.prompt_tokens > 0 and c.cost_usd == 0.0


def test_faults_between_litellm_and_the_server_change_nothing(embedded_server, server_answers, agentopt_home):
    # Seed 3 injects every fault kind once while answering these six prompts (11 requests).
    # "timeout" hangs 1 s and hangs up: generation can be slow here, so the client's own
    # timeout stays long (the short client-side timeout is covered in tests/unit/test_lm_faults).
    with FaultProxy(embedded_server.root, fault_rate=0.3, seed=3, hang_s=1) as proxy:
        lm = served(embedded_server, api_base=proxy.url, journal=True)
        texts = [lm.chat(p, **PARAMS).text for p in PROMPTS]
    assert texts == server_answers
    assert set(proxy.faults) == set(FAULT_KINDS), proxy.faults
    assert proxy.passed == len(PROMPTS)
    records = CallJournal(agentopt_home / "calls.jsonl").read()
    assert sum(r.attempts - 1 for r in records) == proxy.total_faults


def test_batch_over_http_respects_the_bound(embedded_server, server_answers):
    with FaultProxy(embedded_server.root, fault_rate=0) as proxy:
        lm = served(embedded_server, api_base=proxy.url, max_concurrency=2)
        out = lm.batch(PROMPTS[:4], **PARAMS)
    assert [c.text for c in out] == server_answers[:4]
    assert proxy.peak_in_flight == 2 and proxy.requests == 4


def test_cli_chat_against_the_server(embedded_server, server_answers):
    proc = subprocess.run(
        [sys.executable, "-m", "agentopt.cli", "chat", "-m", "openai/smollm2-135m", "--api-base",
         embedded_server.url, "--max-tokens", "24", "--json", PROMPTS[0]],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["text"] == server_answers[0] and reply["model"] == "openai/smollm2-135m"
