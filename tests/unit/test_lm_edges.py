"""Edges of the LM layer: sample identity in rollouts, the in-flight bound, async calls,
message shapes, empty replies, error kinds, budgets after failures, process-wide state."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pydantic import BaseModel

from agentopt.errors import BudgetExceeded, LMError, UserError
from agentopt.lm import LM, Budget, CallJournal, RetryPolicy, register_script
from agentopt.lm.backends.remote import _classify
from agentopt.lm.request import ChatRequest
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import LMAgent, rollout
from agentopt.types import Message
from tests.support import InFlight

FAST = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.01, timeout_s=5)


def script(fn) -> str:
    return register_script(f"edge-{uuid.uuid4().hex[:8]}", fn)


# --- sample identity -------------------------------------------------------------------------
def test_rollouts_at_temperature_draw_their_own_samples_per_seed_and_replay_on_resume(tmp_path):
    seen: list[str] = []
    lock = threading.Lock()

    def policy(messages, params):
        with lock:
            seen.append(str(params["sample"]))
            return f"{{{('left', 'right', 'up', 'down')[len(seen) % 4]}}}"

    model = script(policy)
    task = load_task("gridworld1")
    instances = task.instances("train", 2)
    cache = tmp_path / "cache.sqlite"
    first = rollout(LMAgent(LM(model, cache=cache), task, temperature=0.8, seed=0), "p", instances)
    calls_seed0 = len(seen)
    assert calls_seed0 == sum(t.n_steps for t in first)
    # Every step of every episode named its own sample.
    assert len(set(seen)) == calls_seed0 and all(s.startswith("seed0/gridworld1/train/") for s in seen)
    # Another seed through the same cache draws afresh.
    rollout(LMAgent(LM(model, cache=cache), task, temperature=0.8, seed=1), "p", instances)
    assert len(seen) > calls_seed0 and all(s.startswith("seed1/") for s in seen[calls_seed0:])
    # The same seed again (a resumed run) is served what it drew, with no new call.
    before = len(seen)
    again = rollout(LMAgent(LM(model, cache=cache), task, temperature=0.8, seed=0), "p", instances)
    assert len(seen) == before
    assert [t.model_dump()["steps"] for t in again] == [t.model_dump()["steps"] for t in first]


# --- the in-flight bound ----------------------------------------------------------------------
def test_nested_thread_pools_never_exceed_the_lms_bound():
    slow = InFlight(lambda messages, params: (time.sleep(0.01), "ok")[1])
    lm = LM(script(slow), max_concurrency=2, cache=False, journal=False)

    def outer(i: int) -> None:
        # Each outer worker runs its own pool, as rollouts inside Reflexion or C3PO do.
        with ThreadPoolExecutor(4) as inner:
            list(inner.map(lambda j: lm.chat(f"{i}-{j}"), range(4)))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(outer, range(4)))
    assert slow.peak == 2, f"peak {slow.peak} calls in flight, bound 2"


def test_achat_and_abatch_answer_in_order_within_the_bound():
    slow = InFlight(lambda messages, params: (time.sleep(0.01), messages[-1].content.upper())[1])
    lm = LM(script(slow), max_concurrency=3, cache=False, journal=False)

    async def main():
        one = await lm.achat("single")
        many = await lm.abatch([f"q{i}" for i in range(10)])
        return one, many

    one, many = asyncio.run(main())
    assert one.text == "SINGLE" and [c.text for c in many] == [f"Q{i}" for i in range(10)]
    assert slow.peak == 3


# --- message shapes ---------------------------------------------------------------------------
def test_tool_calls_names_and_tool_messages_reach_the_model_and_the_cache_key():
    seen = []
    lm = LM(script(lambda messages, params: (seen.append(messages), "done")[1]), cache=False, journal=False)
    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    conversation = [
        {"role": "user", "content": "add one", "name": "alice"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "2", "tool_call_id": "call_1"},
    ]
    lm.chat(conversation)
    got = seen[0]
    assert got[0].name == "alice" and got[1].tool_calls == [call] and got[2].role == "tool"
    assert got[2].tool_call_id == "call_1"
    assert got[1].wire() == {"role": "assistant", "content": None, "tool_calls": [call]}
    renamed = [{**conversation[0], "name": "bob"}, *conversation[1:]]
    assert ChatRequest.build("m", conversation).key() != ChatRequest.build("m", renamed).key()
    # Unset optional fields stay out of the key: a plain message hashes as role and content.
    plain = Message(role="user", content="hi")
    assert plain.model_dump(exclude_none=True) == {"role": "user", "content": "hi"}


CALCULATOR = [{"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "1 + 1"}'}}


def test_a_replys_tool_calls_are_cached_replayed_and_journalled(tmp_path):
    seen = []

    def model(messages, params):
        seen.append((messages, params))
        if messages[-1].role == "tool":
            return f"Answer: {messages[-1].content}"
        return {"content": None, "tool_calls": [CALL]}  # a tool-calling turn, as on the wire

    name = script(model)
    cache, journal = tmp_path / "cache.sqlite", CallJournal(tmp_path / "calls.jsonl")
    ask = [{"role": "user", "content": "1 + 1 ="}]
    first = LM(name, cache=cache, journal=journal).chat(ask, tools=CALCULATOR, tool_choice="auto")
    assert first.tool_calls == [CALL] and first.text == "" and first.finish_reason == "tool_calls"
    assert seen[0][1]["tools"] == CALCULATOR and seen[0][1]["tool_choice"] == "auto"
    # A second LM on the same cache (a resumed run) is served the same tool calls, unpaid.
    again = LM(name, cache=cache, journal=journal).chat(ask, tools=CALCULATOR, tool_choice="auto")
    assert again.cached and again.tool_calls == [CALL] and again.text == "" and len(seen) == 1
    # The conversation goes on with the tool's result, whose name and call id reach the model.
    answer = [*ask, {"role": "assistant", "content": None, "tool_calls": [CALL]},
              {"role": "tool", "content": "2", "tool_call_id": "call_1", "name": "calculator"}]
    assert LM(name, cache=cache, journal=journal).chat(answer, tools=CALCULATOR).text == "Answer: 2"
    tool_message = seen[-1][0][-1]
    assert (tool_message.name, tool_message.tool_call_id) == ("calculator", "call_1")
    records = journal.read()
    assert [(r.cached, r.tool_calls) for r in records] == [(False, [CALL]), (True, [CALL]), (False, None)]
    assert '"name":"calculator"' in (tmp_path / "calls.jsonl").read_text().splitlines()[0]


def test_tools_and_tool_choice_are_part_of_the_cache_key():
    ask = [Message(role="user", content="1 + 1 =")]
    keys = {
        ChatRequest.build("m", ask).key(),
        ChatRequest.build("m", ask, tools=CALCULATOR).key(),
        ChatRequest.build("m", ask, tools=CALCULATOR, tool_choice="required").key(),
        ChatRequest.build("m", ask, tools=[{**CALCULATOR[0], "function": {
            **CALCULATOR[0]["function"], "description": "Adds."}}]).key(),
    }
    assert len(keys) == 4


def test_tools_and_tool_messages_reach_a_hosted_endpoint_and_its_tool_calls_come_back(monkeypatch):
    import litellm

    sent = {}

    def completion(**kwargs):
        sent.update(kwargs)
        message = {"role": "assistant", "content": None, "tool_calls": [CALL]}
        return litellm.ModelResponse(
            choices=[{"index": 0, "finish_reason": "tool_calls", "message": message}],
            usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})

    monkeypatch.setattr(litellm, "completion", completion)
    lm = LM("openai/x", api_base="http://127.0.0.1:9/v1", cache=False, journal=False, retry=FAST)
    history = [{"role": "user", "content": "1 + 1 ="},
               {"role": "assistant", "content": None, "tool_calls": [CALL]},
               {"role": "tool", "content": "2", "tool_call_id": "call_1", "name": "calculator"}]
    reply = lm.chat(history, tools=CALCULATOR, tool_choice="auto")
    assert sent["tools"] == CALCULATOR and sent["tool_choice"] == "auto"
    assert sent["messages"] == history
    assert reply.tool_calls == [CALL] and reply.finish_reason == "tool_calls"


def test_a_pydantic_response_format_is_hashed_as_its_json_schema():
    class Answer(BaseModel):
        value: int
        note: str = ""

    request = ChatRequest.build("m", [Message(role="user", content="2+2")], response_format=Answer)
    schema = request.params["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["value"]["type"] == "integer"
    # Strict mode as OpenAI requires it: every field required, nothing else allowed.
    assert schema["required"] == ["value", "note"] and schema["additionalProperties"] is False
    assert request.key() == ChatRequest.build("m", [Message(role="user", content="2+2")],
                                              response_format=Answer).key()


# --- empty replies and error kinds ------------------------------------------------------------
def test_an_empty_reply_is_asked_once_more_then_refused_unless_allowed():
    calls = []
    lm = LM(script(lambda m, p: (calls.append(1), "")[1]), cache=False, journal=False, retry=FAST)
    with pytest.raises(LMError, match="empty reply"):
        lm.chat("say nothing")
    assert len(calls) == 2 and lm.meter.calls == 1  # the endpoint answered (with nothing): paid
    assert lm.chat("say nothing", allow_empty=True).text == ""

    # An empty answer cached for a caller that accepted it is not served to one that did not.
    cached = LM(script(lambda m, p: ""), journal=False, retry=FAST)
    assert cached.chat("q", allow_empty=True).text == ""
    with pytest.raises(LMError, match="empty reply"):
        cached.chat("q")

    flaky = []
    lm = LM(script(lambda m, p: (flaky.append(1), "" if len(flaky) == 1 else "now")[1]),
            cache=False, journal=False, retry=FAST)
    assert lm.chat("glitch").text == "now"


def test_programming_errors_from_litellm_are_not_retried_as_transient():
    import litellm

    for exc in (TypeError("unexpected keyword"), ValueError("bad value"), KeyError("choices")):
        classified = _classify(exc, litellm)
        assert isinstance(classified, LMError) and type(classified).__name__ == "LMError", exc


def test_a_bug_in_a_backend_is_raised_once_and_journalled(tmp_path):
    calls = []

    def buggy(messages, params):
        calls.append(1)
        raise TypeError("a bug, not a flaky server")

    journal = CallJournal(tmp_path / "calls.jsonl")
    lm = LM(script(buggy), cache=False, journal=journal, retry=FAST)
    with pytest.raises(LMError, match="TypeError: a bug"):
        lm.chat("x")
    assert len(calls) == 1
    assert [r.error for r in journal.read()] == ["TypeError: a bug, not a flaky server"]


# --- budgets ----------------------------------------------------------------------------------
def test_a_failed_call_gives_its_reservation_back_and_a_refusal_is_journalled(tmp_path):
    def sometimes(messages, params):
        if messages[-1].content == "bad":
            raise LMError("the request is malformed")
        return "ok"

    journal = CallJournal(tmp_path / "calls.jsonl")
    lm = LM(script(sometimes), budget=Budget(max_calls=2), cache=False, journal=journal, retry=FAST)
    for _ in range(3):
        with pytest.raises(LMError):
            lm.chat("bad")
    assert lm.meter.calls == 0, "failed calls were charged to the budget"
    lm.chat("good")
    lm.chat("good")
    with pytest.raises(BudgetExceeded):
        lm.chat("good")
    records = journal.read()
    assert records[-1].error is not None and "budget exceeded" in records[-1].error
    assert isinstance(BudgetExceeded("x"), UserError)


# --- process-wide state -----------------------------------------------------------------------
def test_the_library_leaves_hugging_face_settings_and_torchs_global_rng_alone(monkeypatch):
    import torch

    from agentopt.optimizers.apohf import ApohfConfig, DuelingBandit

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    torch.manual_seed(1234)
    DuelingBandit(np.zeros((4, 8), dtype=np.float32), ApohfConfig())  # seeds its own network
    after = torch.rand(3)
    torch.manual_seed(1234)
    assert torch.equal(after, torch.rand(3)), "the user's torch random stream was reseeded"

    from agentopt.optimizers.embeddings import MiniLMEmbedder, minilm_path

    try:
        minilm_path()
    except UserError:
        pytest.skip("the MiniLM package is not installed")
    MiniLMEmbedder().encode(["a prompt"])
    assert "HF_HUB_OFFLINE" not in os.environ and "TRANSFORMERS_OFFLINE" not in os.environ


def test_an_endpoint_echoing_the_key_never_gets_it_printed_or_chained(tmp_path):
    explicit = "opaque-credential-0042"  # no provider shape, not in the environment
    other = "zz-gateway-token-777"  # a key the LM was not given, echoed in a header dump

    def echo_401(messages, params):
        raise UserError(f"authentication failed: 401 {{'Authorization': 'Bearer {explicit}', "
                        f"'x-api-key': '{other}'}}")

    journal = CallJournal(tmp_path / "calls.jsonl")
    lm = LM(script(echo_401), api_key=explicit, cache=False, journal=journal, retry=FAST)
    with pytest.raises(UserError) as info:
        lm.chat("hi")
    shown = str(info.value)
    assert "authentication failed" in shown and explicit not in shown and other not in shown
    # The original is neither chained nor kept as the context a traceback or debugger would show.
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert explicit not in (tmp_path / "calls.jsonl").read_text()


def test_greedy_samples_are_one_paid_answer_and_a_custom_error_keeps_its_class():
    calls = []
    lm = LM(script(lambda m, p: (calls.append(1), "same")[1]), journal=False)
    out = lm.samples("q", 4, temperature=0.0)
    assert [c.text for c in out] == ["same"] * 4 and len(calls) == 1 and lm.meter.calls == 1

    class QuotaError(LMError):
        def __init__(self, message: str, quota: int = 0) -> None:
            super().__init__(message)
            self.quota = quota

    def refuse(messages, params):
        raise QuotaError("quota gone for key sk-test-ABCDEFGHIJKLMNOP", quota=7)

    with pytest.raises(QuotaError) as info:
        LM(script(refuse), cache=False, journal=False, retry=FAST).chat("x")
    assert info.value.quota == 7 and "ABCDEFGHIJKLMNOP" not in str(info.value)


def test_a_password_in_an_endpoint_url_never_reaches_the_run_directory(tmp_path):
    from agentopt.store.rundir import RunDir

    rundir = RunDir(tmp_path / "run")
    rundir.write_json("config.json", {"api_base": "http://alice:pw-9f8e7d6c@gw.example:8000/v1"})
    text = (tmp_path / "run" / "config.json").read_text()
    assert "pw-9f8e7d6c" not in text and "gw.example:8000/v1" in text
