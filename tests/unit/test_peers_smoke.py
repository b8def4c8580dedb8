"""The peer benchmark (benchmarks/peers) end to end on a scripted model behind a loopback server:
agentopt, MIPROv2 and GEPA each run a tiny search, every call is counted at the proxy, and the
report pairs them on the same test instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("dspy")
pytest.importorskip("gepa")
pytest.importorskip("optuna")

from benchmarks.peers.proxy import CountingProxy  # noqa: E402
from benchmarks.peers.run import agentopt_search_budget, load_cells, main, parse_args, settings  # noqa: E402
from benchmarks.peers.stopping import BudgetStop, optuna_budget  # noqa: E402
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


def test_agentopt_leaves_room_for_its_choice_on_validation():
    # 60 calls, less the top 3 prompts and the human one on 8 validation instances.
    assert agentopt_search_budget(60, n_validation=8, steps=1) == 28


def test_a_peer_is_stopped_before_a_step_that_could_pass_the_budget():
    spent = iter([10, 40, 52, 53])
    stop = BudgetStop(lambda: next(spent), budget=60, step_cost=8)
    checks = [stop.check(0.5), stop.check(0.6), stop.check(None), stop.check(0.6)]
    assert checks == [False, False, False, True]
    assert stop.stopped and stop.progress == [(10, 0.5), (40, 0.6), (53, 0.6)]


def test_the_bound_on_a_step_follows_the_longest_episode_seen():
    # Sized at 3 steps an episode before any is played; then at the longest one played, so a
    # task whose episodes end early is not stopped as if each took the worst case.
    longest = {"n": 0}
    stop = BudgetStop(lambda: 40, budget=60, step_cost=lambda: 9 * (longest["n"] or 3) + 1)
    assert stop.check(None) and stop.next_step_cost == 28
    longest["n"] = 1
    assert not stop.check(0.0) and stop.next_step_cost == 10
    longest["n"] = 3  # a candidate that plays longer episodes raises it again
    assert stop.check(0.0)


def test_a_copied_program_shares_its_task_and_owns_its_instruction(caplog):
    from agentopt.tasks.loader import load_task
    from benchmarks.peers.programs import EnvProgram

    program = EnvProgram(load_task("sums", [str(FIXTURES)]))
    copy = program.deepcopy()  # what DSPy does for every candidate
    copy.act.signature = copy.act.signature.with_instructions("changed")
    assert copy.task is program.task
    assert copy.lengths is program.lengths  # every candidate's episodes count for the search
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
    for peer in (c for c in cells if c.method in ("mipro", "gepa")):
        assert 0 < peer.search_calls <= 24, peer.method  # not past the budget
        assert peer.extra["progress"], peer.method  # the stop was asked as the search went
        if peer.extra["stopped_by"] == "budget":  # and then within one step of it
            assert peer.search_calls + peer.extra["next_step_cost"] > 24, peer.method
    # Each GEPA iteration asks its reflection model, which is not cached, so GEPA spends until the
    # budget stops it. (MIPROv2's candidates all repeat the one scripted reply: it runs out first.)
    assert next(c for c in cells if c.method == "gepa").extra["stopped_by"] == "budget"
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


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--agentopt-also", "demo"], "unknown method 'demo'"),
        (["--tasks", "no_such_task"], "no_such_task"),
        (["--config", "missing.json"], "--config missing.json"),
        (["--budget-calls", "4"], "--budget-calls 4 leaves agentopt 0 calls of search"),
    ],
)
def test_bad_input_stops_the_run_before_anything_starts(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "peers"
    with pytest.raises(SystemExit) as stop:
        # Port 9 answers nothing: the run must stop before it calls any server.
        main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out), *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def _cell(name: str, **extra: object) -> str:
    return json.dumps({"task": "sums", "method": name, "seed": 0, "test_scores": {"a": 1.0},
                       "search_calls": 1, "search_tokens": 1, "test_calls": 1, "wall_s": 1.0,
                       "extra": extra}) + "\n"


def test_a_folder_of_another_primary_method_is_refused(tmp_path, capsys):
    out = tmp_path / "peers"
    out.mkdir()
    (out / "cells.jsonl").write_text(_cell("agentopt", method="promst"))
    args = ["--api-base", "http://127.0.0.1:9/v1", *_task_args(out)]
    (out / "settings.json").write_text(json.dumps(settings(parse_args(args))))
    with pytest.raises(SystemExit) as stop:
        main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out), "--agentopt-method", "demos"])
    assert stop.value.code == 2 and "holds runs of agentopt method promst" in capsys.readouterr().err


def test_a_folder_run_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "peers"
    with DspyFakeServer() as server:
        main(["--api-base", server.url, *_task_args(out), "--budget-calls", "24", "--n-train", "3",
              "--n-validation", "3", "--n-test", "4", "--config", str(_config(tmp_path)), "--peers", "mipro"])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["budget_calls"] == 24 and settings["n_test"] == 4
    cells = (out / "cells.jsonl").read_text()
    with pytest.raises(SystemExit) as stop:
        main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out), "--budget-calls", "30",
              "--n-train", "3", "--n-validation", "3", "--n-test", "4", "--config", str(_config(tmp_path))])
    assert stop.value.code == 2 and "budget_calls 24 there, 30 here" in capsys.readouterr().err
    assert (out / "cells.jsonl").read_text() == cells
    # The report needs only the folder, and says how its cells were run.
    main(["--report", "--out", str(out)])
    report = (out / "RESULTS.md").read_text()
    assert "budget 24 LM calls per search" in report and "n train/validation/test 3/3/4" in report
    assert "--budget-calls 24" in report  # the command that ran the cells, not the --report one
    assert "--budget-calls 30" not in report  # the refused run is not in the log


def test_a_folder_of_cells_without_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "peers"
    out.mkdir()
    (out / "cells.jsonl").write_text(_cell("mipro"))
    with pytest.raises(SystemExit) as stop:
        main(["--api-base", "http://127.0.0.1:9/v1", *_task_args(out)])
    assert stop.value.code == 2 and "no settings.json" in capsys.readouterr().err


def test_an_optuna_study_is_stopped_at_the_budget_and_not_started_without_room():
    import optuna

    calls = {"n": 0}

    def trial(t: optuna.Trial) -> float:  # each trial costs 3 calls
        calls["n"] += 3
        return t.suggest_float("x", 0, 1)

    stop = BudgetStop(lambda: calls["n"], budget=10, step_cost=3)
    with optuna_budget(stop):
        optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).optimize(trial, n_trials=50)
    assert calls["n"] == 9 and stop.stopped and stop.distinct_configs == 3
    assert [c for c, _ in stop.progress] == [3, 6, 9]
    calls["n"] = 8  # what came before the study left no room for one trial
    with optuna_budget(stop):
        optuna.create_study().optimize(trial, n_trials=50)
    assert calls["n"] == 8
    # Outside the block, studies run as Optuna runs them.
    optuna.create_study().optimize(trial, n_trials=2)
    assert calls["n"] == 14


def test_a_peer_search_that_overflows_the_context_is_played_again_under_its_own_tag(monkeypatch):
    from dspy.utils.exceptions import ContextWindowExceededError

    import benchmarks.peers.run as harness

    tags = []

    def once(method, task, seed, args, proxy, tag):
        tags.append(tag)
        if len(tags) == 1:
            raise ContextWindowExceededError(model="fake", message="too long\nmore")
        return harness.Cell(task="t", method=method, seed=seed, test_scores={}, search_calls=5,
                            search_tokens=1, test_calls=1, wall_s=1.0)

    class Proxy:
        def tally(self, tag):
            return type("T", (), {"calls": 7})()

    task = type("Task", (), {"name": "t"})()
    monkeypatch.setattr(harness, "run_peer_once", once)
    cell = harness.run_peer("mipro", task, 0, None, Proxy())
    assert tags == ["mipro-t-seed0", "mipro-t-seed0-attempt2"]
    assert cell.search_calls == 5 and cell.extra["failed_attempts"][0]["calls"] == 7
    assert cell.extra["failed_attempts"][0]["tag"] == "mipro-t-seed0"


def test_a_cell_cut_off_mid_write_is_dropped_and_runs_again(tmp_path):
    path = tmp_path / "cells.jsonl"
    path.write_text(_cell("mipro") + _cell("gepa")[:40])
    assert [c.method for c in load_cells(path)] == ["mipro"]
    assert path.read_text() == _cell("mipro")


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
