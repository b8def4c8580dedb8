"""The preference ledger: append-only, deduplicated, crash-safe, TRL export and import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agentopt.errors import UserError
from agentopt.preferences import PreferenceLedger, default_ledger_path, load_jsonl
from agentopt.types import Preference, content_hash


def pref(i: int, source: str = "judge:m", task: str | None = "t1", **metadata) -> Preference:
    return Preference(
        context=f"context {i}",
        chosen=f"good {i}",
        rejected=f"bad {i}",
        source=source,
        task=task,
        weight=1.0 + i / 10,
        metadata={"round": i, **metadata},
    )


@pytest.fixture
def ledger(tmp_path):
    with PreferenceLedger(tmp_path / "ledger.sqlite") as store:
        yield store


def test_add_dedups_by_content_hash(ledger):
    assert ledger.add(pref(1)) is True
    assert ledger.add(pref(1)) is False
    # metadata is not part of the identity: the same comparison again is the same preference
    assert ledger.add(pref(1, note="again")) is False
    assert ledger.add_many([pref(1), pref(2), pref(3), pref(2)]) == 2
    assert len(ledger) == 3
    assert pref(2).id in ledger and pref(2) in ledger and "nope" not in ledger
    assert ledger.get(pref(3).id) == pref(3)


def test_queries_by_source_and_task_keep_insertion_order(ledger):
    ledger.add_many([pref(3, task="t2"), pref(1, source="human"), pref(2), pref(4, source="judge:other")])
    assert [p.metadata["round"] for p in ledger.query()] == [3, 1, 2, 4]
    assert [p.metadata["round"] for p in ledger.query(source="judge:m")] == [3, 2]
    assert [p.metadata["round"] for p in ledger.query(source="judge:")] == [3, 2, 4]  # prefix
    assert [p.metadata["round"] for p in ledger.query(task="t2")] == [3]
    assert ledger.count(source="human") == 1 and ledger.count(source="judge:", task="t1") == 2
    stats = ledger.stats()
    assert stats.total == 4
    assert stats.by_source == {"human": 1, "judge:m": 2, "judge:other": 1}
    assert stats.by_task == {"t1": 3, "t2": 1}


def test_ledger_is_append_only(ledger):
    ledger.add(pref(1))
    db = sqlite3.connect(ledger.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE preferences SET chosen = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM preferences")
    db.close()
    assert ledger.query() == [pref(1)]


def test_wal_and_full_sync(ledger):
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_secrets_are_redacted_before_hashing(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "topsecretvalue42")
    p = Preference(
        context="key is topsecretvalue42",
        chosen="sk-abcdefghijklmnop1234",
        rejected="r",
        source="human",
        metadata={"api_key": "x", "note": "topsecretvalue42"},
    )
    with PreferenceLedger(tmp_path / "l.sqlite") as store:
        assert store.add(p)
        assert store.add(p) is False  # the same after redaction
        stored = store.query()[0]
    assert stored.context == "key is ***" and stored.chosen == "***"
    assert stored.metadata == {"note": "***"}
    assert b"topsecretvalue42" not in (tmp_path / "l.sqlite").read_bytes()


def test_concurrent_threads_get_unique_sequence_numbers(ledger):
    def writer(k: int) -> None:
        for i in range(40):
            ledger.add(pref(1000 * k + i))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [row[0] for row in ledger._db.execute("SELECT seq FROM preferences ORDER BY seq")]
    assert seqs == list(range(1, 161))


def test_export_is_trl_format_and_loads_back_equal(ledger, tmp_path):
    items = [
        pref(1),
        pref(2, source="human", task=None),
        Preference(context="ünïcode\nlines", chosen='{"json": 1}', rejected="", source="s"),
    ]
    ledger.add_many(items)
    out = tmp_path / "export" / "pairs.jsonl"
    assert ledger.export_jsonl(out) == 3
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (
        rows[0]["prompt"] == "context 1" and rows[0]["chosen"] == "good 1" and rows[0]["rejected"] == "bad 1"
    )
    assert rows[0]["source"] == "judge:m" and rows[0]["weight"] == 1.1 and rows[0]["metadata"] == {"round": 1}
    assert load_jsonl(out) == items
    assert ledger.export_jsonl(out, source="human") == 1
    assert ledger.export_jsonl(out, task="t1", minimal=True) == 1
    assert set(json.loads(out.read_text())) == {"prompt", "chosen", "rejected"}


def test_export_loads_in_hf_datasets_as_trl_expects(ledger, tmp_path):
    datasets = pytest.importorskip("datasets")
    ledger.add_many([pref(1), pref(2)])
    out = tmp_path / "pairs.jsonl"
    ledger.export_jsonl(out)
    data = datasets.load_dataset("json", data_files=str(out), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(data.column_names)
    assert data[1]["chosen"] == "good 2"


def test_import_dedups_and_names_bad_lines(ledger, tmp_path):
    good = tmp_path / "in.jsonl"
    good.write_text(
        json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"})
        + "\n\n"
        + json.dumps(
            {
                "prompt": "p2",
                "chosen": [{"role": "assistant", "content": "c"}],
                "rejected": "r",
                "source": "c3po",
            }
        )
        + "\n"
    )
    assert ledger.import_jsonl(good) == 2
    assert ledger.import_jsonl(good) == 0
    assert {p.source for p in ledger.query()} == {"import", "c3po"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + '\n{"prompt": "x"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: .*missing chosen, rejected"):
        ledger.import_jsonl(bad)
    with pytest.raises(UserError, match="not found"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_lookup_finds_either_order(ledger):
    ledger.add(Preference(context="c", chosen="x", rejected="y", source="human"))
    assert ledger.lookup("c", "x", "y", "human") == "a"
    assert ledger.lookup("c", "y", "x", "human") == "b"
    assert ledger.lookup("c", "x", "y", "judge:m") is None
    assert ledger.lookup("other", "x", "y", "human") is None


def test_default_path_and_bad_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTOPT_HOME", str(tmp_path / "home"))
    assert default_ledger_path() == tmp_path / "home" / "ledger.sqlite"
    with PreferenceLedger() as store:
        assert store.path == tmp_path / "home" / "ledger.sqlite"
    with pytest.raises(UserError, match="is a folder"):
        PreferenceLedger(tmp_path)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(UserError, match="not a preference ledger"):
        PreferenceLedger(junk)


# --- durability under SIGKILL ---------------------------------------------------------------
WRITER = textwrap.dedent("""
    import random, sys
    from agentopt.preferences import PreferenceLedger
    from agentopt.types import Preference

    ledger = PreferenceLedger(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    i = 0
    while True:
        # Big, varied rows, sometimes in batches, so the kill can land inside a write.
        batch = [Preference(context=f"ctx {i}-{k} " + "x" * rng.randint(10, 20000),
                            chosen=f"chosen {i}-{k} " + "y" * rng.randint(10, 20000),
                            rejected=f"rejected {i}-{k}", source="stress", metadata={"i": i, "k": k})
                 for k in range(rng.choice([1, 1, 3]))]
        ledger.add_many(batch)
        for p in batch:
            print(p.id, flush=True)  # only after the commit returned
        i += 1
""")


def _run_and_kill(path: Path, seed: int, wait_lines: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    printed: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(printed) < wait_lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            printed.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    printed += [line.strip() for line in rest.splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL, err
    assert len(printed) >= wait_lines, err
    return printed


def test_sigkilled_writer_loses_nothing_committed_and_leaves_no_torn_rows(tmp_path):
    path = tmp_path / "ledger.sqlite"
    printed = _run_and_kill(path, seed=1, wait_lines=40)
    printed += _run_and_kill(path, seed=2, wait_lines=25)  # a second writer appends to the survivor
    with PreferenceLedger(path) as store:
        assert store.integrity_check() == "ok"
        stored = {p.id: p for p in store.query(source="stress")}
        rows = store._db.execute(
            "SELECT id, seq, context, chosen, rejected, source, weight, metadata, created "
            "FROM preferences ORDER BY seq"
        ).fetchall()
    missing = [i for i in printed if i not in stored]
    assert not missing, f"{len(missing)} committed preferences lost"
    assert [r[1] for r in rows] == list(range(1, len(rows) + 1))
    for row_id, _seq, context, chosen, rejected, source, weight, metadata, created in rows:
        assert None not in (context, chosen, rejected, source, weight, created)
        meta = json.loads(metadata)
        # the stored text hashes back to the row's id: nothing was cut short
        assert content_hash(context, chosen, rejected, source) == row_id
        assert context.startswith(f"ctx {meta['i']}-{meta['k']} ")
        assert chosen.startswith(f"chosen {meta['i']}-{meta['k']} ")


# --- agentopt ledger stats | export | import ----------------------------------------------------
def cli(*args: str):
    import typer
    from typer.testing import CliRunner

    from agentopt.commands.prefer import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return CliRunner().invoke(app, list(args))


def test_cli_ledger_stats_export_import(tmp_path):
    path = tmp_path / "l.sqlite"
    with PreferenceLedger(path) as store:
        store.add_many([pref(1), pref(2, source="human")])
    result = cli("ledger", "stats", "--ledger", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["by_source"] == {"human": 1, "judge:m": 1}
    assert "2 preferences" in cli("ledger", "stats", "--ledger", str(path)).stdout
    out = tmp_path / "h.jsonl"
    result = cli("ledger", "export", "--out", str(out), "--source", "human", "--ledger", str(path))
    assert result.exit_code == 0 and "exported 1" in result.stdout
    assert [p.chosen for p in load_jsonl(out)] == ["good 2"]
    other = tmp_path / "other.sqlite"
    result = cli("ledger", "import", str(out), "--ledger", str(other), "--json")
    assert json.loads(result.stdout) == {"read": 1, "added": 1, "ledger": str(other)}
    assert "0 new, 1 already" in cli("ledger", "import", str(out), "--ledger", str(other)).stdout


def test_cli_ledger_user_errors(tmp_path):
    result = cli("ledger", "stats", "--ledger", str(tmp_path / "none.sqlite"))
    assert isinstance(result.exception, UserError) and "no preference ledger" in str(result.exception)
    result = cli("ledger", "import", str(tmp_path / "none.jsonl"), "--ledger", str(tmp_path / "l.sqlite"))
    assert isinstance(result.exception, UserError) and "not found" in str(result.exception)
    assert cli("ledger", "export", "--ledger", str(tmp_path / "l.sqlite")).exit_code == 2  # --out missing
