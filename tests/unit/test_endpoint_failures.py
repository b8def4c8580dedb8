"""Endpoints that misbehave: an error that echoes the key, a hung server, a name that does not
resolve, a busy port, malformed requests to the served model. Each ends in one clear line, in
bounded time, with no secret in it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentopt.errors import EndpointUnreachable, LMError, UserError
from agentopt.lm import LM, CallJournal, RetryPolicy
from tests.support.cli import one_error_line, run_main
from tests.support.fault_proxy import ECHO_KINDS, FaultProxy

ROOT = Path(__file__).resolve().parents[2]
ENV_KEY = "sk-envSECRETvalue-0123456789"
EXPLICIT_KEY = "opaque-credential-0042"  # no provider shape, not in the environment


# --- 1. an endpoint that echoes the Authorization header ---------------------------------------
@pytest.mark.parametrize("kind", sorted(ECHO_KINDS))
def test_an_echoed_explicit_key_is_in_no_message_cause_context_traceback_or_journal(kind, tmp_path):
    journal = CallJournal(tmp_path / "calls.jsonl")
    with FaultProxy(sequence=[kind]) as proxy:
        lm = LM("openai/fake", api_base=proxy.url, api_key=EXPLICIT_KEY, cache=False, journal=journal)
        with pytest.raises((UserError, LMError)) as info:
            lm.chat("hi")
        assert EXPLICIT_KEY in json.dumps(proxy.seen_headers)  # it was sent, and echoed back
    error = info.value
    assert "headers received" in str(error) and EXPLICIT_KEY not in str(error)
    assert error.__cause__ is None and error.__context__ is None
    assert EXPLICIT_KEY not in "".join(traceback.format_exception(error))
    assert EXPLICIT_KEY not in (tmp_path / "calls.jsonl").read_text()


def test_the_cli_never_prints_an_echoed_environment_key(tmp_path):
    """The real entry point, in a subprocess: the key from the environment goes out in the
    Authorization header, the endpoint's 401 quotes it back, stderr must not."""
    with FaultProxy(sequence=["unauthorized"]) as proxy:
        env = {**os.environ, "OPENAI_API_KEY": ENV_KEY, "AGENTOPT_HOME": str(tmp_path / "home")}
        proc = subprocess.run(
            [sys.executable, "-m", "agentopt.cli", "chat", "-m", "openai/fake", "--api-base", proxy.url,
             "hi"],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert ENV_KEY in json.dumps(proxy.seen_headers)
    line = one_error_line(proc.returncode, proc.stderr)
    assert "authentication failed" in line and ENV_KEY not in proc.stderr + proc.stdout
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert ENV_KEY.encode() not in path.read_bytes(), path


# --- 5. hung endpoints ---------------------------------------------------------------------------
@pytest.fixture
def hung_url() -> Iterator[str]:
    """A server that accepts connections (the kernel does, from its backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"


def test_the_defaults_bound_a_hung_call_to_a_few_timeouts():
    policy = RetryPolicy()
    assert policy.timeout_s <= 60 and policy.down_after_timeouts <= 3
    # A hung endpoint costs at most down_after_timeouts timeouts (plus backoff), not attempts x 120 s.
    assert policy.down_after_timeouts * policy.timeout_s < policy.attempts * 120 / 3


def test_timeouts_in_a_row_mark_the_endpoint_down_and_later_calls_fail_at_once(hung_url, tmp_path):
    policy = RetryPolicy(timeout_s=0.4, attempts=6, base_delay_s=0.01, max_delay_s=0.02,
                         down_after_timeouts=3)
    lm = LM("openai/x", api_base=hung_url, retry=policy, cache=False, journal=tmp_path / "calls.jsonl")
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable, match="did not answer .* 3 times in a row"):
        lm.chat("first")
    first = time.monotonic() - started
    assert first < 3.5, first  # three timeouts, not six
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable, match="looks down"):
        lm.batch([f"call {i}" for i in range(8)])
    assert time.monotonic() - started < 0.5  # no call waits out a timeout any more
    records = CallJournal(tmp_path / "calls.jsonl").read()
    assert records[0].attempts == 3 and all(r.attempts == 0 for r in records[1:])


def test_concurrent_calls_to_a_hung_endpoint_stop_together(hung_url):
    policy = RetryPolicy(timeout_s=0.5, attempts=6, base_delay_s=0.01, max_delay_s=0.02)
    lm = LM("openai/x", api_base=hung_url, retry=policy, cache=False, journal=False, max_concurrency=4)
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable):
        lm.batch([f"call {i}" for i in range(16)])
    # Sixteen calls of six 0.5 s attempts would take 12 s four at a time; down after the first wave.
    assert time.monotonic() - started < 4


def test_an_answer_between_timeouts_keeps_the_endpoint_up():
    with FaultProxy(sequence=["timeout", "pass", "timeout", "pass", "timeout"], fault_rate=0,
                    hang_s=1.0) as proxy:
        policy = RetryPolicy(timeout_s=0.3, attempts=3, base_delay_s=0.01, max_delay_s=0.02,
                             down_after_timeouts=2)
        lm = LM("openai/fake", api_base=proxy.url, retry=policy, cache=False, journal=False)
        assert [lm.chat(t).text for t in ("ab", "cd")] == ["ba", "dc"]
        assert lm.chat("ef").text == "fe"


def test_timeout_and_attempts_are_cli_settings(hung_url, capsys):
    started = time.monotonic()
    code, out, err = run_main(capsys, "chat", "-m", "openai/x", "--api-base", hung_url, "--no-cache",
                              "--timeout", "0.3", "--attempts", "2", "hi")
    line = one_error_line(code, err)
    assert "failed after 2 attempts" in line and out == ""
    assert time.monotonic() - started < 10


def test_an_optimisation_against_a_hung_endpoint_stops_with_one_line(hung_url, capsys, tmp_path):
    fixtures = ROOT / "tests" / "fixtures" / "tasks"
    started = time.monotonic()
    code, _, err = run_main(capsys, "optimize", "linewalk", "--method", "human", "-m", "openai/x",
                            "--api-base", hung_url, "--timeout", "0.3", "--tasks-dir", str(fixtures),
                            "--run-dir", str(tmp_path / "run"), "--json")
    assert "looks down" in one_error_line(code, err)
    assert time.monotonic() - started < 20
    assert json.loads((tmp_path / "run" / "config.json").read_text())["timeout_s"] == 0.3


# --- 10. names that do not resolve, busy ports, malformed requests --------------------------------
def test_a_name_that_does_not_resolve_is_not_called_a_refused_connection(capsys):
    code, _, err = run_main(capsys, "chat", "-m", "openai/x", "--api-base", "http://no-such-host.invalid:9/v1",
                            "--no-cache", "hi")
    line = one_error_line(code, err)
    assert "does not resolve" in line and "refused" not in line


def test_a_second_serve_on_a_busy_port_prints_only_the_error(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = run_main(capsys, "serve", "--port", str(port))
    assert "already in use" in one_error_line(code, err)
    assert "serving" not in out + err


async def _inner_app(scope, receive, send):
    """Stands in for llama.cpp's server: records that it was reached, answers 200."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = json.dumps({"reached": True, "body": body.decode()}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


MALFORMED = [
    (b"this is not json", 400),
    (b"\xff\xfe\x00", 400),
    (b"[1, 2]", 422),
    (b"{}", 422),
    (b'{"messages": []}', 422),
    (b'{"messages": "hello"}', 422),
    (b'{"messages": [{"role": "user"}]}', 422),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 422),
]


@pytest.mark.parametrize(("body", "status"), MALFORMED)
def test_the_request_guard_answers_malformed_chat_requests_as_openai_does(body, status):
    from fastapi.testclient import TestClient

    from agentopt.lm.serve import RequestGuard

    client = TestClient(RequestGuard(_inner_app))
    reply = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status and "reached" not in reply.json()
    assert reply.json()["error"]["type"] == "invalid_request_error"
    good = b'{"messages": [{"role": "user", "content": "hi"}]}'
    reply = client.post("/v1/chat/completions", content=good, headers={"content-type": "application/json"})
    assert reply.status_code == 200 and reply.json() == {"reached": True, "body": good.decode()}


def test_the_served_model_answers_malformed_requests_with_4xx_not_500():
    pytest.importorskip("llama_cpp.server")
    from fastapi.testclient import TestClient

    from agentopt.lm.serve import create_server_app

    client = TestClient(create_server_app(), raise_server_exceptions=False)  # type: ignore[arg-type]
    for body, status in MALFORMED:
        reply = client.post("/v1/chat/completions", content=body,
                            headers={"content-type": "application/json"})
        assert reply.status_code == status, (body, reply.status_code, reply.text[:200])
    assert client.post("/v1/completions", content=b"{}").status_code == 422
    assert client.get("/v1/models").status_code == 200



def test_timeouts_that_come_together_are_not_yet_silence_and_an_answer_clears_down():
    policy = RetryPolicy(timeout_s=10.0, down_after_timeouts=3)
    lm = LM("scripted/echo", retry=policy, cache=False, journal=False)
    now = time.monotonic()
    for _ in range(4):  # four queued calls timing out at once: not three timeouts of silence
        lm._note_timeout(True, now)
    assert lm._down is None
    lm._note_timeout(True, now - 31)  # the silence has now lasted three timeouts
    assert lm._down is not None and "looks down" in lm._down
    lm._note_timeout(False, time.monotonic())  # any answer: the endpoint is back
    assert lm._down is None and lm._timeouts_in_a_row == 0
