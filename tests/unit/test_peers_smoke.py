"""The peer benchmark (benchmarks/peers) end to end on a scripted model behind a loopback server:
agentopt, MIPROv2 and GEPA each run a tiny search, every call is counted at the proxy, and the
report pairs them on the same test instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("dspy")
pytest.importorskip("optuna")

from benchmarks.peers.proxy import CountingProxy  # noqa: E402
from benchmarks.peers.run import (  # noqa: E402
    agentopt_search_budget,
    gepa_metric_calls,
    load_cells,
    main,
    mipro_trials,
)
from tests.support.dspy_fake import DspyFakeServer  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def test_the_proxy_counts_each_tag_apart():
    import litellm

    with DspyFakeServer() as server, CountingProxy(server.url.removesuffix("/v1")) as proxy:
        for tag, n in (("a", 2), ("b", 1)):
            for _ in range(n):
                litellm.completion(
                    model="openai/fake",
                    api_base=proxy.url(tag),
                    api_key="x",
                    messages=[{"role": "user", "content": "two words"}],
                )
        assert proxy.tally("a").calls == 2 and proxy.tally("b").calls == 1
        assert proxy.tally("a").prompt_tokens == 4 and server.requests == 3


def test_peers_are_sized_to_the_budget():
    assert mipro_trials(60, n_train=8, n_validation=8, num_candidates=3, steps=1) == 5
    assert gepa_metric_calls(60, steps=1, minibatch=3) == 51
    assert agentopt_search_budget(60, n_validation=8, steps=1) == 28


def test_a_copied_program_shares_its_task_and_owns_its_instruction(caplog):
    from agentopt.tasks.loader import load_task
    from benchmarks.peers.programs import EnvProgram

    program = EnvProgram(load_task("sums", [str(FIXTURES)]))
    copy = program.deepcopy()  # what DSPy does for every candidate
    copy.act.signature = copy.act.signature.with_instructions("changed")
    assert copy.task is program.task
    assert program.instruction() != "changed" and copy.instruction() == "changed"
    assert "Failed to deep copy" not in caplog.text


def test_the_harness_runs_every_side_and_reports_paired_differences(tmp_path):
    out = tmp_path / "peers"
    cut_short = out / "runs" / "agentopt-sums-seed0"  # what a killed cell leaves behind
    cut_short.mkdir(parents=True)
    (cut_short / "config.json").write_text("{}")
    with DspyFakeServer() as server:
        main(["--api-base", server.url, *_task_args(out), "--budget-calls", "24", "--n-train", "3",
              "--n-validation", "3", "--n-test", "4", "--config", str(_config(tmp_path)),
              "--agentopt-also", "demos"])
    cells = load_cells(out / "cells.jsonl")
    assert {c.method for c in cells} == {"dspy-zero-shot", "agentopt", "agentopt-demos", "mipro", "gepa"}
    for cell in cells:
        assert len(cell.test_scores) == 4, cell.method
        assert cell.test_calls >= 4  # every test instance was played through the proxy
    agentopt = next(c for c in cells if c.method == "agentopt")
    # The cut cell was played again from the start (so the proxy saw all of it), the old one kept.
    assert (out / "runs" / "agentopt-sums-seed0.interrupted-1" / "config.json").read_text() == "{}"
    assert (out / "runs" / "agentopt-sums-seed0" / "result.json").is_file()
    assert 0 < agentopt.search_calls <= 24  # its budget, counted by the proxy, not by agentopt
    assert all(c.search_calls > 0 for c in cells if c.method in ("mipro", "gepa"))
    report = (out / "RESULTS.md").read_text()
    assert "minus this" in report and "p=" in report
    assert "| agentopt promst minus this |" in report
    assert "| agentopt demos (added) |" in report and "agentopt demos (added) minus mipro: " in report
    demos = next(c for c in cells if c.method == "agentopt-demos")
    assert demos.extra["method"] == "demos" and 0 < demos.search_calls <= 24
    assert (out / "score_vs_calls_sums.png").is_file()
    # Finished cells are kept: running again does nothing new.
    main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out), "--report"])
    assert len(load_cells(out / "cells.jsonl")) == len(cells)


def test_an_unknown_agentopt_method_stops_the_run_before_anything_starts(tmp_path, capsys):
    out = tmp_path / "peers"
    with pytest.raises(SystemExit) as stop:
        main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out), "--agentopt-also", "demo"])
    assert "unknown method 'demo'" in str(stop.value) and not out.exists()


def test_a_folder_of_another_primary_method_is_refused(tmp_path):
    out = tmp_path / "peers"
    out.mkdir()
    (out / "cells.jsonl").write_text(json.dumps({
        "task": "sums", "method": "agentopt", "seed": 0, "test_scores": {"a": 1.0}, "search_calls": 1,
        "search_tokens": 1, "test_calls": 1, "wall_s": 1.0, "extra": {"method": "promst"}}) + "\n")
    with pytest.raises(SystemExit) as stop:
        main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out), "--agentopt-method", "demos"])
    assert "holds runs of agentopt method promst" in str(stop.value)


def _task_args(out: Path) -> list[str]:
    """The scripted model, the JSONL fixture task and one seed, written to ``out``."""
    return ["--served-model", "fake", "--tasks", "sums", "--tasks-dir", str(FIXTURES), "--seeds", "0",
            "--out", str(out)]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text('{"promst": {"embedder": "hashing", "n_children": 2, "max_levels": 2}}')
    return path


def test_a_multi_step_task_is_played_step_by_step_by_every_side(tmp_path):
    """linewalk lasts several steps: DSPy's program answers each step of agentopt's environment,
    and every side is scored on the same test episodes."""
    out = tmp_path / "peers-multi"
    with DspyFakeServer(reply="{right}") as server:
        main(["--api-base", server.url, "--served-model", "fake", "--tasks", "linewalk",
              "--tasks-dir", str(FIXTURES), "--seeds", "0", "--out", str(out), "--budget-calls", "60",
              "--steps-per-episode", "4", "--n-train", "2", "--n-validation", "2", "--n-test", "3",
              "--config", str(_config(tmp_path))])
    cells = load_cells(out / "cells.jsonl")
    assert {c.method for c in cells} == {"dspy-zero-shot", "agentopt", "mipro", "gepa"}
    for cell in cells:
        assert set(cell.test_scores) == {f"linewalk/test/{i}" for i in range(3)}, cell.method
    # Always "{right}" walks to the goal in a few steps, on every side: the episodes were
    # played to the end, one model call per step.
    for cell in cells:
        assert all(score == 1.0 for score in cell.test_scores.values()), cell.method
    played = (out / "runs" / "agentopt-linewalk-seed0" / "trajectories.jsonl").read_text().splitlines()
    assert played and all(len(json.loads(line)["steps"]) >= 2 for line in played)
