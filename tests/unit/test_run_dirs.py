"""Run directories under stress: two processes on one, a resume told something else, journals
after a resume, a torn or damaged journal line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agentopt.errors import UserError
from agentopt.lm import CallJournal
from agentopt.runs.optimize import run_optimization
from agentopt.store.journal import RunJournal
from agentopt.store.rundir import RunDir
from tests.support import promst_toy
from tests.support.cli import one_error_line, run_main
from tests.support.fault_proxy import FaultProxy, closed_port

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tasks"


def paid_calls(run: Path) -> int:
    """Calls that reached the model (not answered from the cache)."""
    return sum(1 for r in CallJournal(run / "calls.jsonl").read() if not r.cached and r.error is None)


def result_of(run: Path) -> dict:
    data = json.loads((run / "result.json").read_text())
    data.pop("run_dir")
    return data


# --- 2. one process per run directory ------------------------------------------------------------
def test_a_second_process_on_a_run_dir_is_refused_and_nothing_is_paid_twice(tmp_path):
    clean = tmp_path / "clean"
    run_optimization(promst_toy.config(promst_toy.register()), clean)

    run = tmp_path / "run"
    env = {**os.environ, "PROMST_TOY_DELAY": "0.02"}
    first = subprocess.Popen([sys.executable, "-m", "tests.support.promst_toy", str(run)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        events = run / "events.jsonl"
        while not (events.is_file() and events.read_bytes().count(b"\n") >= 2):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never got going"
            time.sleep(0.01)
        # Frozen, it holds its lock; the second process must be refused however long it takes.
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run([sys.executable, "-m", "tests.support.promst_toy", str(run), "--resume"],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode != 0 and "in use by process" in second.stderr, second.stderr[-2000:]
        cli = subprocess.run([sys.executable, "-m", "agentopt.cli", "optimize", "linewalk", "--resume",
                              "--run-dir", str(run), "--tasks-dir", str(FIXTURES)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        line = one_error_line(cli.returncode, cli.stderr)
        assert f"in use by process {first.pid}" in line
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    assert paid_calls(run) == paid_calls(clean)  # every call paid once, by the run that holds the lock
    assert result_of(run) == result_of(clean)


def test_the_lock_is_per_folder_and_released_on_unlock(tmp_path):
    held = RunDir(tmp_path / "a").lock()
    with pytest.raises(UserError, match=f"in use by process {os.getpid()}"):
        RunDir(tmp_path / "a").lock()
    RunDir(tmp_path / "b").lock().unlock()  # another folder is free
    held.unlock()
    RunDir(tmp_path / "a").lock().unlock()


def test_a_killed_run_leaves_no_lock_behind(tmp_path):
    """The kernel drops an flock with its process: SIGKILL, then resume at once."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.promst_toy", str(run)], cwd=ROOT,
                            env={**os.environ, "PROMST_TOY_DELAY": "0.02"})
    deadline = time.monotonic() + 120
    while not ((run / "events.jsonl").is_file() and (run / "events.jsonl").stat().st_size):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    RunDir(run).lock().unlock()


# --- 3. --resume and what it is told ---------------------------------------------------------------
@pytest.fixture
def finished_run(tmp_path, capsys) -> Path:
    run = tmp_path / "run"
    code, _, err = run_main(capsys, "optimize", "linewalk", "--method", "human", "-m", "scripted/echo",
                            "--tasks-dir", str(FIXTURES), "--run-dir", str(run), "--seed", "3", "--json")
    assert code == 0, err
    return run


@pytest.mark.parametrize(("args", "named"), [
    (["gridworld1", "--method", "apo", "--seed", "7"], ["task=", "method=", "seed="]),
    (["linewalk", "--model", "scripted/constant"], ["model="]),
    (["linewalk", "--budget-calls", "5", "--n-test", "1"], ["budget_calls=", "n_test="]),
    (["linewalk", "--set", "rounds=2"], ["method_config="]),
])
def test_resume_refuses_what_would_change_the_run(finished_run, capsys, args, named):
    def files() -> dict[str, bytes]:  # the run's own files (SQLite checkpoints its cache when it likes)
        return {p.name: p.read_bytes() for p in finished_run.iterdir() if p.suffix in (".json", ".jsonl")}

    before = files()
    code, _, err = run_main(capsys, "optimize", *args, "--tasks-dir", str(FIXTURES), "--resume",
                            "--run-dir", str(finished_run), "--json")
    line = one_error_line(code, err)
    assert all(n in line for n in named), line
    assert files() == before  # untouched


def test_resume_accepts_what_the_run_already_is(finished_run, capsys):
    code, out, err = run_main(capsys, "optimize", "linewalk", "--method", "human", "--seed", "3",
                              "-m", "scripted/echo", "--tasks-dir", str(FIXTURES), "--resume",
                              "--run-dir", str(finished_run), "--json")
    assert code == 0, err
    assert json.loads(out)["method"] == "human"


def test_resume_takes_a_new_endpoint_and_timeout(tmp_path, capsys):
    run = tmp_path / "run"
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    code, _, err = run_main(capsys, "optimize", "linewalk", "--method", "human", "-m", "openai/fake",
                            "--api-base", dead, "--tasks-dir", str(FIXTURES), "--run-dir", str(run), "--json")
    assert "cannot reach" in one_error_line(code, err)
    with FaultProxy(fault_rate=0) as healthy:
        code, out, err = run_main(capsys, "optimize", "linewalk", "--resume", "--run-dir", str(run),
                                  "--api-base", healthy.url, "--timeout", "7", "--concurrency", "1", "--json")
        assert code == 0, err
        assert healthy.passed > 0
    config = json.loads((run / "config.json").read_text())
    assert config["api_base"] == healthy.url and config["timeout_s"] == 7 and config["concurrency"] == 1
    resumed = [e for e in map(json.loads, (run / "events.jsonl").read_text().splitlines())
               if e["type"] == "resumed"]
    assert [e["changed"] for e in resumed] == [["api_base", "concurrency", "timeout_s"]]
    assert json.loads(out)["test"]["score"]["n"] == 3


# --- 8. journals after a resume -------------------------------------------------------------------
def _info_events(run: Path) -> list[str]:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return [json.dumps({k: v for k, v in e.items() if k != "time"}, sort_keys=True)
            for e in events if e["type"] not in ("memo", "resumed")]


def _keys(run: Path) -> list[str]:
    out = []
    for line in (run / "trajectories.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line)["key"])
        except ValueError:
            continue  # the torn line
    return out


@pytest.fixture(scope="module")
def promst_model() -> str:
    return promst_toy.register()


def test_resuming_a_finished_run_adds_one_resumed_line_and_nothing_else(promst_model, tmp_path):
    run = tmp_path / "run"
    first = run_optimization(promst_toy.config(promst_model), run)
    events, trajectories = _info_events(run), (run / "trajectories.jsonl").read_bytes()
    assert len(events) == len(set(events)) and any('"round"' in e or '"level"' in e for e in events)
    for _ in range(2):
        again = run_optimization(None, run, resume=True)
        assert again.model_dump(exclude={"run_dir"}) == first.model_dump(exclude={"run_dir"})
    assert _info_events(run) == events
    assert (run / "trajectories.jsonl").read_bytes() == trajectories
    kinds = Counter(json.loads(line)["type"] for line in (run / "events.jsonl").read_text().splitlines())
    assert kinds["resumed"] == 2 and kinds["start"] == 1


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_a_run_killed_mid_step_resumes_without_duplicate_episodes(promst_model, tmp_path, cut):
    full = tmp_path / "full"
    expected = run_optimization(promst_toy.config(promst_model), full).model_dump(exclude={"run_dir"})
    killed = tmp_path / "killed"
    shutil.copytree(full, killed)
    (killed / "result.json").unlink()
    events = (killed / "events.jsonl").read_text().splitlines(keepends=True)
    kept = events[: int(len(events) * cut)]
    (killed / "events.jsonl").write_text("".join(kept) + events[len(kept)][:30])
    # As a kill leaves it: every episode of the journalled steps (they are written before their
    # step's memo line), two of the step in progress, and a third torn mid-line.
    done = {e["key"] for e in map(json.loads, kept) if e["type"] == "memo"}
    lines = (killed / "trajectories.jsonl").read_text().splitlines(keepends=True)
    last = max((i for i, line in enumerate(lines)
                if any(json.loads(line)["key"].startswith(k + "/") for k in done)), default=-1)
    written = lines[: last + 3]
    (killed / "trajectories.jsonl").write_text("".join(written) + lines[len(written)][:40])

    resumed = run_optimization(None, killed, resume=True).model_dump(exclude={"run_dir"})
    assert resumed == expected
    keys = _keys(killed)
    assert len(keys) == len(set(keys)) and set(keys) == set(_keys(full))
    assert sorted(_info_events(killed)) == sorted(_info_events(full))


def test_an_append_after_a_torn_line_cuts_it_so_every_line_is_a_record(tmp_path):
    rundir = RunDir(tmp_path)
    rundir.append_jsonl("t.jsonl", {"n": 1}, key="a")
    with (tmp_path / "t.jsonl").open("a") as fh:
        fh.write('{"key": "b", "n": ')  # a writer killed mid-line
    assert RunDir(tmp_path).append_jsonl("t.jsonl", {"n": 3}, key="c")
    assert not RunDir(tmp_path).append_jsonl("t.jsonl", {"n": 1}, key="a")  # already there
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"key": "a", "n": 1}, {"key": "c", "n": 3}]


def test_a_damaged_line_in_the_middle_of_the_journal_is_refused_not_cut(promst_model, tmp_path, capsys):
    run = tmp_path / "run"
    run_optimization(promst_toy.config(promst_model), run)
    (run / "result.json").unlink()
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    lines[2] = '{"type": "memo", "key": "score/tr\x00garbage\n'
    (run / "events.jsonl").write_text("".join(lines))
    before = (run / "events.jsonl").read_bytes()
    with pytest.raises(UserError, match="line 3 is damaged"):
        RunJournal(run / "events.jsonl")
    code, _, err = run_main(capsys, "optimize", "linewalk", "--resume", "--run-dir", str(run),
                            "--tasks-dir", str(FIXTURES))
    assert "line 3 is damaged" in one_error_line(code, err)
    assert (run / "events.jsonl").read_bytes() == before


def test_a_torn_last_line_of_the_journal_is_still_cut(tmp_path):
    path = tmp_path / "events.jsonl"
    journal = RunJournal(path)
    journal.memo("kept", lambda: 1)
    journal.log("round", n=1)
    with path.open("a") as fh:
        fh.write('{"type": "memo", "key": "torn", "va')
    reopened = RunJournal(path)
    assert reopened.has("kept") and not reopened.has("torn")
    reopened.log("round", n=1)  # already there
    reopened.log("round", n=2)
    assert [json.loads(line).get("n") for line in path.read_text().splitlines()] == [None, 1, 2]


def test_a_bench_run_again_resumes_its_unfinished_runs(tmp_path):
    """bench passes its whole config to every resume, the gate's "decide for me" included."""
    from agentopt.runs.bench import run_bench
    from agentopt.runs.optimize import RunConfig

    base = RunConfig(task="linewalk", model="scripted/echo", tasks_dirs=[str(FIXTURES)],
                     significance_gate=None, seed=0)
    first = run_bench(base, ["linewalk"], ["human"], tmp_path / "out")
    run = tmp_path / "out" / "runs" / "human-linewalk-seed0"
    (run / "result.json").unlink()
    again = run_bench(base, ["linewalk"], ["human"], tmp_path / "out")
    assert again[0].model_dump(exclude={"run_dir"}) == first[0].model_dump(exclude={"run_dir"})
    events = [json.loads(line)["type"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events.count("resumed") == 1 and events.count("start") == 1
