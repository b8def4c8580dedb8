"""Shared fixtures: a private AGENTOPT_HOME per test, and the embedded model served on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# litellm fetches its price table from GitHub at import unless told to use the copy it ships;
# agentopt sets this too, but a test module might import litellm first.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def agentopt_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own response cache and call journal, never ~/.cache/agentopt."""
    home = tmp_path_factory.mktemp("agentopt-home")
    monkeypatch.setenv("AGENTOPT_HOME", str(home))
    return home


class EmbeddedServer:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc

    @property
    def root(self) -> str:
        """Base URL without /v1 (what the fault proxy forwards to)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """OpenAI base URL (``api_base``)."""
        return f"{self.root}/v1"


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """`agentopt serve` in a subprocess on a free loopback port, for the whole session.

    A subprocess rather than a thread: the server's llama.cpp threads then never wait on the
    test process's GIL. One llama.cpp thread, because on a small shared CPU a model that wants
    every core slows to a crawl as soon as anything else runs (the client, the proxy).
    """
    from tests.support.fault_proxy import closed_port, wait_until_up

    port = closed_port()
    log = tmp_path_factory.mktemp("embedded-server") / "serve.log"
    env = {**os.environ, "AGENTOPT_THREADS": os.environ.get("AGENTOPT_TEST_SERVER_THREADS", "1"),
           "AGENTOPT_HOME": str(log.parent)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentopt.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_until_up(f"http://127.0.0.1:{port}/v1/models", timeout_s=90)
        except TimeoutError:
            proc.kill()
            pytest.fail(f"agentopt serve did not come up:\n{log.read_text(errors='replace')[-2000:]}")
        yield EmbeddedServer(port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
