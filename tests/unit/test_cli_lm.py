"""`agentopt models` and `agentopt chat`: output, and user errors as one line with exit code 2.

The real entry point runs as a subprocess where it is cheap; cases that need litellm (a few
seconds to import) mostly run in-process through `agentopt.cli.main`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentopt.errors import BudgetExceeded, EndpointUnreachable, UserError
from agentopt.lm import LM
from tests.support.cli import run_main
from tests.support.fault_proxy import closed_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-test-SECRETVALUE123456"


def cli(*args: str, env_drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run([sys.executable, "-m", "agentopt.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_models_lists_the_embedded_default_and_scripted_models(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    proc = cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    by_model = {r["model"]: r for r in rows}
    assert by_model["local/smollm2-135m"]["kind"] == "embedded"
    assert by_model["local/smollm2-135m"]["ready"] is True
    assert {"scripted/echo", "scripted/constant"} <= set(by_model)
    assert by_model["openai/gpt-4o-mini"]["ready"] is True
    assert SECRET not in proc.stdout + proc.stderr  # says the key is set, never what it is


def test_models_says_which_keys_are_missing(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, out, _ = run_main(capsys, "models", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert code == 0 and rows["openai/gpt-4o-mini"]["ready"] is False
    assert "OPENAI_API_KEY not set" in rows["openai/gpt-4o-mini"]["notes"]


def test_models_table():
    proc = cli("models")
    assert proc.returncode == 0, proc.stderr
    assert "local/smollm2-135m" in proc.stdout and "scripted/echo" in proc.stdout


def test_chat_json_with_the_scripted_model(agentopt_home):
    proc = cli("chat", "-m", "scripted/echo", "hi", "--json")
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout)
    assert reply["text"] == "hi" and reply["model"] == "scripted/echo" and reply["cached"] is False
    assert reply["usage"]["total_tokens"] == 2 and reply["request_hash"]
    again = json.loads(cli("chat", "-m", "scripted/echo", "hi", "--json").stdout)
    assert again["cached"] is True and again["request_hash"] == reply["request_hash"]
    assert (agentopt_home / "cache.sqlite").is_file() and (agentopt_home / "calls.jsonl").is_file()


def test_chat_plain_text_and_system_prompt(capsys):
    code, out, _ = run_main(capsys, "chat", "-m", "scripted/echo", "-s", "be terse", "hello world")
    assert code == 0 and out == "hello world\n"
    code, out, _ = run_main(capsys, "chat", "-m", "scripted/echo", "--no-cache", "hello world", "--json")
    assert code == 0 and json.loads(out)["cached"] is False


def test_unknown_model_subprocess_one_line_exit_2():
    proc = cli("chat", "-m", "nonsense-provider/model-xyz", "hi")
    assert_one_line_error(proc.returncode, proc.stderr, "unknown model", "nonsense-provider/model-xyz")
    assert proc.stdout == ""


@pytest.mark.parametrize("model", ["scripted/no-such", "local/llama-70b", "no-such-model-anywhere"])
def test_unknown_model_strings(capsys, model):
    code, out, err = run_main(capsys, "chat", "-m", model, "hi")
    assert_one_line_error(code, err, model)
    assert out == ""


def test_missing_key_for_a_remote_provider(capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = run_main(capsys, "chat", "-m", "openai/gpt-4o-mini", "hi")
    assert_one_line_error(code, err, "OPENAI_API_KEY")


def test_unreachable_endpoint(capsys):
    base = f"http://127.0.0.1:{closed_port()}/v1"
    code, _, err = run_main(capsys, "chat", "-m", "openai/x", "--api-base", base, "hi")
    assert_one_line_error(code, err, "cannot reach", base)


def test_budget_exceeded_is_a_user_error_the_cli_reports_in_one_line(capsys, monkeypatch):
    assert issubclass(BudgetExceeded, UserError) and issubclass(EndpointUnreachable, UserError)

    def spent(self, *args, **kwargs):
        raise BudgetExceeded("budget exceeded: 3/3 calls used")

    monkeypatch.setattr(LM, "chat", spent)  # the CLI has no budget option yet
    code, _, err = run_main(capsys, "chat", "-m", "scripted/echo", "hi")
    assert_one_line_error(code, err, "budget exceeded: 3/3 calls used")


@pytest.mark.parametrize("args", [("chat", "-m", "scripted/echo", "--temperature", "9", "hi"),
                                  ("chat", "-m", "scripted/echo"),
                                  ("no-such-command",)])
def test_usage_errors_exit_2_without_a_traceback(args):
    proc = cli(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
