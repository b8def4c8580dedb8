"""The bad-input catalogue: what a careless or hostile user types, through the CLI.

Every case must end with exit code 2, exactly one line on stderr (``error: ...``, no
traceback), and leave no file behind: nothing new under the working folder or
``AGENTOPT_HOME``. Cases run in-process (`agentopt.cli.main`) so the catalogue stays quick;
`test_one_case_through_the_real_entry_point` checks the same contract in a subprocess.

Read-only folders cannot be made read-only for root, which ignores permissions; as root those
cases tell the check that the folder is not writable (`os.access`), which is what a non-root
user's permissions would say.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agentopt.cli import main
from tests.support.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tasks"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
TASKS = ["--tasks-dir", str(FIXTURES)]
LATIN1 = "caf\xe9 au lait\n".encode("latin-1")
BINARY = b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe" + bytes(range(256))


@dataclasses.dataclass
class Case:
    """``argv`` may hold ``{tmp}`` (the working folder); ``setup`` makes the files it needs and
    may return extra environment variables; ``read_only`` names a folder (relative to tmp)
    that must not be writable."""

    id: str
    argv: list[str]
    needle: str
    setup: Callable[[Path], dict[str, str] | None] | None = None
    read_only: str | None = None


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for one in setups:
            one(tmp)
    return setup


def home_is_a_file(tmp: Path) -> dict[str, str]:
    (tmp / "home-file").write_text("not a folder")
    return {"AGENTOPT_HOME": str(tmp / "home-file")}


def home_under_a_file(tmp: Path) -> dict[str, str]:
    (tmp / "home-file").write_text("not a folder")
    return {"AGENTOPT_HOME": str(tmp / "home-file" / "agentopt")}


def no_openai_key(tmp: Path) -> dict[str, str]:
    return {"OPENAI_API_KEY": ""}


def as_bytes(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode()


def damaged_run(config: str | bytes | None = None, cache: bytes | None = None,
                result: str | bytes | None = None) -> Callable[[Path], None]:
    """A run folder as a crash or a careless edit leaves it."""
    def setup(tmp: Path) -> None:
        run = tmp / "run"
        run.mkdir()
        good = {"task": "linewalk", "method": "human", "model": "scripted/echo",
                "tasks_dirs": [str(FIXTURES)]}
        (run / "config.json").write_bytes(as_bytes(config if config is not None else json.dumps(good)))
        (run / "events.jsonl").write_text('{"type": "start", "time": 1}\n')
        (run / "run.lock").write_text("")  # left by the run that made it
        if cache is not None:
            (run / "cache.sqlite").write_bytes(cache)
        if result is not None:
            (run / "result.json").write_bytes(as_bytes(result))
    return setup


def typo_task(toml: str) -> Callable[[Path], None]:
    """tasks/typo: a dataset task whose task.toml has ``toml`` appended (``metrc`` when empty)."""
    dataset = '[dataset]\npath = "d.jsonl"\nmetric = "numeric"\n' + ("" if toml else 'metrc = "f1"\n')
    return both(write("tasks/typo/task.toml", f'name = "typo"\n{dataset}{toml}'),
                write("tasks/typo/prompt.md", "Answer.\n"),
                write("tasks/typo/d.jsonl", rows(*({"input": f"{i} + 1", "target": str(i + 1)}
                                                   for i in range(40)))))


LEDGER = ["--ledger", "{tmp}/ledger.sqlite"]
ROW = {"prompt": "p", "chosen": "a", "rejected": "b"}


def rows(*lines: dict) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def bad_metric_task(metric: str) -> Callable[[Path], None]:
    """tasks/badmetric: a dataset task whose metric cannot be loaded."""
    return both(write("tasks/badmetric/task.toml",
                      f'name = "badmetric"\n[dataset]\npath = "d.jsonl"\nmetric = "{metric}"\n'),
                write("tasks/badmetric/prompt.md", "Answer.\n"),
                write("tasks/badmetric/d.jsonl", rows(*({"input": f"{i} + 1", "target": str(i + 1)}
                                                         for i in range(40)))))


BAD_METRIC = ["--tasks-dir", "{tmp}/tasks", "-m", "scripted/echo"]


CASES = [
    # 4. files that are not text, folders that cannot be folders
    Case("prompt-binary", ["run", "linewalk", *TASKS, "--prompt", "{tmp}/p.bin", "-m", "scripted/echo"],
         "is a binary file", write("p.bin", BINARY)),
    Case("prompt-latin1", ["run", "linewalk", *TASKS, "--prompt", "{tmp}/p.txt", "-m", "scripted/echo"],
         "not UTF-8", write("p.txt", LATIN1)),
    Case("prompt-folder", ["run", "linewalk", *TASKS, "--prompt", "{tmp}", "-m", "scripted/echo"],
         "is a folder"),
    Case("bench-config-latin1", ["bench", "--tasks", "linewalk", *TASKS, "--methods", "apo", "--config",
                                 "{tmp}/c.json", "--out", "{tmp}/out", "-m", "scripted/echo"],
         "not UTF-8", write("c.json", b'{"apo": {"x": "\xe9"}}')),
    Case("ledger-import-latin1", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "not UTF-8",
         write("rows.jsonl", LATIN1)),
    Case("ledger-import-binary", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "binary",
         write("rows.jsonl", BINARY)),
    Case("finetune-data-latin1", ["finetune", "--data", "{tmp}/d.jsonl", "--out", "{tmp}/ft"], "not UTF-8",
         write("d.jsonl", LATIN1)),
    Case("run-dir-is-a-file", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--run-dir",
                               "{tmp}/f"], "is a file", write("f", "x")),
    Case("run-dir-under-a-file", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--run-dir",
                                  "{tmp}/f/run"], "which is a file", write("f", "x")),
    Case("run-dir-read-only", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--run-dir",
                               "{tmp}/ro/run"], "not writable", read_only="ro"),
    Case("runs-root-is-a-file", ["run", "linewalk", *TASKS, "-m", "scripted/echo", "--runs-root", "{tmp}/f"],
         "is a file", write("f", "x")),
    Case("runs-root-under-a-file", ["run", "linewalk", *TASKS, "-m", "scripted/echo", "--runs-root",
                                    "{tmp}/f/runs"], "which is a file", write("f", "x")),
    Case("runs-root-read-only", ["run", "linewalk", *TASKS, "-m", "scripted/echo", "--runs-root", "{tmp}/ro"],
         "not writable", read_only="ro"),
    Case("bench-out-is-a-file", ["bench", "--tasks", "linewalk", *TASKS, "--methods", "apo", "--out",
                                 "{tmp}/f", "-m", "scripted/echo"], "is a file", write("f", "x")),
    Case("bench-out-read-only", ["bench", "--tasks", "linewalk", *TASKS, "--methods", "apo", "--out",
                                 "{tmp}/ro/out", "-m", "scripted/echo"], "not writable", read_only="ro"),
    Case("finetune-out-under-a-file", ["finetune", "--data", "{tmp}/d.jsonl", "--out", "{tmp}/f/ft"],
         "which is a file", both(write("f", "x"), write("d.jsonl", rows(ROW)))),
    Case("home-is-a-file", ["chat", "-m", "scripted/echo", "hi"], "AGENTOPT_HOME", home_is_a_file),
    Case("home-under-a-file", ["chat", "-m", "scripted/echo", "hi"], "AGENTOPT_HOME", home_under_a_file),
    Case("home-read-only", ["chat", "-m", "scripted/echo", "hi"], "AGENTOPT_HOME", read_only="home"),
    Case("api-base-not-a-url", ["chat", "-m", "openai/x", "--api-base", "notaurl", "hi"],
         "not an http(s) URL"),
    Case("api-base-bad-port", ["run", "linewalk", *TASKS, "-m", "openai/x", "--api-base",
                               "http://127.0.0.1:99999/v1"], "not an http(s) URL"),
    Case("resume-config-damaged", ["optimize", "linewalk", *TASKS, "--resume", "--run-dir", "{tmp}/run"],
         "not a run config", damaged_run(config='{"task": ')),
    Case("resume-config-binary", ["optimize", "linewalk", *TASKS, "--resume", "--run-dir", "{tmp}/run"],
         "binary", damaged_run(config=BINARY)),
    Case("resume-cache-damaged", ["optimize", "linewalk", *TASKS, "--resume", "--run-dir", "{tmp}/run"],
         "cannot be used as a response cache", damaged_run(cache=b"this is not sqlite at all" * 100)),
    Case("report-result-damaged", ["report", "{tmp}/run"], "not a run result",
         damaged_run(result='{"method": "apo"}')),
    Case("report-result-latin1", ["report", "{tmp}/run"], "not UTF-8",
         damaged_run(result=LATIN1)),
    # 6. mistakes found before anything is created
    Case("unknown-task", ["optimize", "no-such-task", *TASKS, "-m", "scripted/echo", "--run-dir",
                          "{tmp}/run"], "unknown task"),
    Case("unknown-task-default-root", ["optimize", "no-such-task", *TASKS, "-m", "scripted/echo"],
         "unknown task"),
    Case("unknown-method", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--method", "nope",
                            "--run-dir", "{tmp}/run"], "nope"),
    Case("unknown-set-key", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--method", "apo",
                             "--set", "no_such_key=1", "--run-dir", "{tmp}/run"], "no_such_key"),
    Case("missing-api-key", ["optimize", "linewalk", *TASKS, "-m", "openai/gpt-4o-mini", "--run-dir",
                             "{tmp}/run"], "OPENAI_API_KEY", no_openai_key),
    Case("missing-optimizer-key", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--optimizer-model",
                                   "openai/gpt-4o-mini"], "OPENAI_API_KEY", no_openai_key),
    # 7. --n past the split
    Case("n-past-the-split", ["run", "linewalk", *TASKS, "-m", "scripted/echo", "--n", "1000000"],
         "holds 3 instances"),
    Case("n-huge", ["run", "gridworld1", "-m", "scripted/echo", "--n", "99999999999999999999999"],
         "holds 16 instances"),
    Case("reflexion-n-past-the-split", ["reflexion", "linewalk", *TASKS, "-m", "scripted/echo", "--n", "50",
                                        "--no-ledger"], "holds 4 instances"),
    # 9. ledger rows that are no comparison
    Case("ledger-nan-weight", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "rows.jsonl:2:",
         write("rows.jsonl", b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                             b'{"prompt": "p", "chosen": "c", "rejected": "d", "weight": NaN}\n')),
    Case("ledger-negative-weight", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "rows.jsonl:1:",
         write("rows.jsonl", rows({**ROW, "weight": -1}))),
    Case("ledger-infinite-weight", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "rows.jsonl:1:",
         write("rows.jsonl", b'{"prompt": "p", "chosen": "a", "rejected": "b", "weight": Infinity}\n')),
    Case("ledger-chosen-is-rejected", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "the same text",
         write("rows.jsonl", rows({**ROW, "chosen": "same", "rejected": "same"}))),
    Case("ledger-empty-chosen", ["ledger", "import", "{tmp}/rows.jsonl", *LEDGER], "chosen is empty",
         write("rows.jsonl", rows(ROW, ROW, {**ROW, "chosen": "  "}))),
    # 10. smaller ones
    Case("prompt-empty", ["run", "linewalk", *TASKS, "--prompt", "{tmp}/p.txt", "-m", "scripted/echo"],
         "is empty", write("p.txt", " \n\n")),
    Case("tasks-dir-missing", ["run", "gridworld1", "-m", "scripted/echo", "--tasks-dir",
                               "{tmp}/nonexistent"], "does not exist"),
    Case("tasks-dir-missing-optimize", ["optimize", "gridworld1", "-m", "scripted/echo", "--tasks-dir",
                                        "/nonexistent/agentopt-tasks"], "does not exist"),
    # 11. a task.toml with a misspelt key: refused, naming the file and the key, never ignored
    *[Case(f"task-toml-{key}", ["run", "typo", "--tasks-dir", "{tmp}/tasks", "-m", "scripted/echo"],
           needle, typo_task(toml))
      for key, toml, needle in [
          ("splits", "[splits]\nvalidaton = 2\n",
           "typo/task.toml: splits.validaton: unknown key (known: train, validation, test)"),
          ("action", '[action]\nregex = "x"\n', "typo/task.toml: action: unknown key (known: name,"),
          ("rule", '[[rule]]\nname = "r"\non = "stuck"\nfeedback = "f"\n',
           "typo/task.toml: rule: unknown key"),
          ("terminate", '[[rules]]\nname = "r"\non = "stuck"\nfeedback = "f"\nterminate = false\n',
           "typo/task.toml: rules[0].terminate: unknown key (known: name, on, feedback, terminates, steps)"),
          ("metrc", "", "typo/task.toml: dataset.metrc: unknown key (known: path, generator,"),
      ]],
    # 12. found by a hostile probe of every command (2026-12-02)
    Case("report-no-such-folder", ["report", "{tmp}/nope"], "nope does not exist: give a run folder"),
    Case("report-a-file", ["report", "{tmp}/f"], "f is a file: give a run folder", write("f", "x")),
    Case("serve-damaged-gguf", ["serve", "-m", "local/{tmp}/fake.gguf", "--port", "47291"], "cannot load",
         write("fake.gguf", b"GGUF" + bytes(range(256)) * 16)),
    Case("usage-missing-argument", ["chat"], "Missing argument 'text'. (see 'agentopt chat --help')"),
    Case("usage-out-of-range", ["optimize", "linewalk", *TASKS, "--n-test", "-1"], "--n-test"),
    Case("usage-unknown-command", ["nosuchcommand"], "No such command"),
    Case("api-base-broken-ipv6", ["chat", "-m", "openai/x", "--api-base", "http://[::1", "hi"],
         "not an http(s) URL"),
    Case("api-base-with-a-space", ["chat", "-m", "openai/x", "--api-base", "http://a b/v1", "hi"],
         "not an http(s) URL"),
    Case("judge-api-base-named-as-such", ["prefer", "linewalk", *TASKS, "-m", "scripted/echo", "--judge",
                                          "openai/x", "--judge-api-base", "xx"], "endpoint 'xx'"),
    Case("timeout-infinite", ["chat", "-m", "scripted/echo", "--timeout", "inf", "hi"], "finite"),
    Case("budget-usd-infinite", ["optimize", "linewalk", *TASKS, "-m", "scripted/echo", "--budget-usd",
                                 "inf"], "finite"),
    Case("finetune-unknown-device", ["finetune", "--data", "{tmp}/d.jsonl", "--device", "tpu"],
         "unknown device 'tpu'", write("d.jsonl", rows(ROW))),
    Case("finetune-base-missing", ["finetune", "--data", "{tmp}/d.jsonl", "--base", "{tmp}/nope"],
         "base model not found", write("d.jsonl", rows(ROW))),
    Case("finetune-base-is-an-endpoint", ["finetune", "--data", "{tmp}/d.jsonl", "--base",
                                          "openai/gpt-4o-mini"], "base model not found",
         write("d.jsonl", rows(ROW))),
    Case("finetune-chosen-is-rejected", ["finetune", "--data", "{tmp}/d.jsonl"], "d.jsonl:2: chosen and "
         "rejected are the same text", write("d.jsonl", rows(ROW, {**ROW, "rejected": "a"}))),
    Case("finetune-no-pairs", ["finetune", "--data", "{tmp}/d.jsonl"], "no usable preference pairs",
         write("d.jsonl", rows({"prompt": "p", "chosen": "a"}))),
    Case("finetune-resume-nothing", ["finetune", "--data", "{tmp}/d.jsonl", "--resume", "--out",
                                     "{tmp}/ft"], "holds no checkpoints", write("d.jsonl", rows(ROW))),
    Case("c3po-ledger-not-a-ledger", ["c3po", "be brief", "-m", "scripted/echo", "--ledger", "{tmp}/l.md"],
         "is not a preference ledger", write("l.md", "# notes\n" * 200)),
    Case("c3po-unknown-judge", ["c3po", "be brief", "-m", "scripted/echo", "--judge", "nosuch/x"],
         "unknown model 'nosuch/x'"),
    Case("reflexion-unknown-reflect-model", ["reflexion", "linewalk", *TASKS, "-m", "scripted/echo",
                                             "--reflect-model", "nosuch/x", "--no-ledger"], "unknown model"),
    Case("prefer-unknown-judge", ["prefer", "linewalk", *TASKS, "-m", "scripted/echo", "--judge",
                                  "nosuch/x"], "unknown model 'nosuch/x'"),
    *[Case(f"metric-{name}-{command}", [*argv, *BAD_METRIC], needle, bad_metric_task(metric))
      for name, metric, needle in [("unknown", "nosuch_metric", "unknown metric 'nosuch_metric'"),
                                   ("file-missing", "nofile.py:score", "metric file not found"),
                                   ("module-missing", "nosuchmod:fn", "cannot import metric module")]
      for command, argv in [("run", ["run", "badmetric"]), ("reflexion", ["reflexion", "badmetric",
                                                                           "--no-ledger"]),
                            ("bench", ["bench", "--tasks", "badmetric", "--methods", "apo", "--out",
                                       "{tmp}/out"])]],
]


def snapshot(folder: Path) -> dict[str, int]:
    """Every file and its size; a run's lock file by name only (taking it writes a pid)."""
    return {str(p.relative_to(folder)): -1 if p.name == "run.lock" else p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agentopt_home: Path) -> Path:
    """The case's working folder: the current directory (so the default runs/ lands here), with
    AGENTOPT_HOME inside it, so "no file left behind" covers both."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGENTOPT_HOME", str(tmp_path / "home"))
    return tmp_path


def make_read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        folder.chmod(0o555)
        return
    real = os.access

    def access(path, mode, *args, **kwargs):  # what the permissions would say to a non-root user
        if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, workdir, monkeypatch, capsys):
    env = case.setup(workdir) if case.setup else None
    for name, value in (env or {}).items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    if case.read_only:
        make_read_only(workdir / case.read_only, monkeypatch)
    before = snapshot(workdir)
    argv = [a.replace("{tmp}", str(workdir)) for a in case.argv]
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if case.read_only and not IS_ROOT:
            (workdir / case.read_only).chmod(0o755)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.needle in lines[0], lines[0]
    assert snapshot(workdir) == before, "files were left behind"
    assert not (workdir / "runs").exists()


def test_retries_exhausted_is_one_line_not_a_traceback(capsys, tmp_path):
    """An endpoint that always fails: the LMError after the last retry is the user's news."""
    with FaultProxy(fault_rate=1.0, kinds=("server_error",)) as proxy:
        try:
            main(["chat", "-m", "openai/fake", "--api-base", proxy.url, "--attempts", "2", "--no-cache",
                  "hi"])
        except SystemExit as exc:
            code = exc.code
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "failed after 2 attempts" in err and "Traceback" not in err


def test_one_case_through_the_real_entry_point(tmp_path):
    (tmp_path / "p.txt").write_bytes(LATIN1)
    proc = subprocess.run(
        [sys.executable, "-m", "agentopt.cli", "run", "linewalk", *TASKS, "--prompt", str(tmp_path / "p.txt"),
         "-m", "scripted/echo", "--runs-root", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "AGENTOPT_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "not UTF-8" in proc.stderr and not (tmp_path / "runs").exists()


# --- the ledger, read without being changed --------------------------------------------------
def _old_ledger(path: Path) -> None:
    """A ledger as version 0 wrote it: no kind column, user_version 0."""
    from agentopt.preferences.ledger import _SCHEMA

    db = sqlite3.connect(path)
    db.executescript(_SCHEMA.replace("    created  TEXT NOT NULL,\n    kind     TEXT\n",
                                     "    created  TEXT NOT NULL\n"))
    db.execute("INSERT INTO preferences VALUES ('x', 1, 'c', 'a', 'b', 'reflexion', 't', 1.0, '{}', "
               "'2024-01-01T00:00:00Z')")
    db.commit()
    db.close()


def test_ledger_stats_and_export_read_an_old_ledger_without_migrating_it(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite"
    _old_ledger(path)
    before = path.read_bytes()
    main(["ledger", "stats", "--ledger", str(path), "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert stats["total"] == 1 and stats["by_kind"] == {"trajectory": 1}
    main(["ledger", "export", "--ledger", str(path), "--out", str(tmp_path / "pairs.jsonl")])
    assert json.loads((tmp_path / "pairs.jsonl").read_text())["kind"] == "trajectory"
    assert path.read_bytes() == before  # not migrated, not touched
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0


@pytest.mark.skipif(IS_ROOT, reason="root may write a read-only file")
def test_ledger_stats_on_a_read_only_ledger(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite"
    _old_ledger(path)
    path.chmod(0o444)
    main(["ledger", "stats", "--ledger", str(path), "--json"])
    assert json.loads(capsys.readouterr().out)["total"] == 1


def test_a_ledger_that_may_not_be_written_is_read_and_refuses_writes(tmp_path, monkeypatch):
    from agentopt.errors import UserError
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.types import Preference

    path = tmp_path / "ledger.sqlite"
    _old_ledger(path)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == path and mode & os.W_OK
                        else real(p, mode, *a, **k))
    with PreferenceLedger(path) as ledger:
        assert ledger.read_only and len(ledger) == 1 and ledger.schema_version == 0
        with pytest.raises(UserError, match="read-only"):
            ledger.add(Preference(context="c", chosen="x", rejected="y", source="s"))


def test_add_many_refuses_a_bad_row_and_adds_none(tmp_path):
    from agentopt.errors import UserError
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.types import Preference

    good = Preference(context="c", chosen="x", rejected="y", source="s")
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        for bad in (good.model_copy(update={"weight": float("nan")}),
                    good.model_copy(update={"weight": float("inf")}),
                    good.model_copy(update={"weight": -0.5}),
                    good.model_copy(update={"rejected": "x"}),
                    good.model_copy(update={"chosen": ""})):
            with pytest.raises(UserError, match="preference 2 of 2"):
                ledger.add_many([good, bad])
        assert len(ledger) == 0
        keep = good.model_copy(update={"rejected": "", "metadata": {"scope": "near"}})
        assert ledger.add_many([good, keep]) == 2


def test_a_ledger_sqlite_cannot_open_for_writing_is_read_instead(tmp_path, monkeypatch):
    """A writable file in a folder that is not (SQLite cannot put its WAL files beside it), or a
    read-only file system: SQLite's refusal, as root never sees it, stands in for the real one."""
    from agentopt.preferences.ledger import PreferenceLedger

    path = tmp_path / "ledger.sqlite"
    _old_ledger(path)

    def refused(self, timeout_s):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(PreferenceLedger, "_connect", refused)
    with PreferenceLedger(path) as ledger:
        assert ledger.read_only and ledger.stats().total == 1
