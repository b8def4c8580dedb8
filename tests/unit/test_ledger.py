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


def test_a_refused_export_leaves_no_file_or_folder(ledger, tmp_path, monkeypatch):
    ledger.add_many([pref(1), pref(2)])
    out = tmp_path / "export" / "pairs.jsonl"
    with pytest.raises(UserError, match="nosuch"):
        ledger.export_jsonl(out, kind="nosuch")
    assert not (tmp_path / "export").exists()

    def broken(*args, **kwargs):  # an export that fails half-way, after its first row
        yield pref(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger, "iter", broken)
    with pytest.raises(OSError):
        ledger.export_jsonl(out)
    assert list((tmp_path / "export").iterdir()) == []


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


# --- kinds: prompt / response / trajectory labels, and the migration of older files -------------
# The schema every ledger had before kinds were stored (schema version 0), with its triggers.
OLD_SCHEMA = """
CREATE TABLE preferences (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, context TEXT NOT NULL, chosen TEXT NOT NULL,
    rejected TEXT NOT NULL, source TEXT NOT NULL, task TEXT, weight REAL NOT NULL,
    metadata TEXT NOT NULL, created TEXT NOT NULL
);
CREATE INDEX preferences_source ON preferences(source);
CREATE INDEX preferences_task ON preferences(task);
CREATE TRIGGER preferences_no_update BEFORE UPDATE ON preferences
BEGIN SELECT RAISE(ABORT, 'the preference ledger is append-only'); END;
CREATE TRIGGER preferences_no_delete BEFORE DELETE ON preferences
BEGIN SELECT RAISE(ABORT, 'the preference ledger is append-only'); END;
"""


def old_rows() -> list[Preference]:
    """One row as each writer stored it before kinds existed (no kind given)."""
    return [
        Preference(
            context="apohf ctx",
            chosen="prompt A",
            rejected="prompt B",
            source="judge:m",
            task="t1",
            metadata={"method": "apohf", "round": 1, "instance": "t1/train/0"},
        ),
        Preference(
            context="rx ctx",
            chosen="Step 1: up",
            rejected="Step 1: down",
            source="reflexion",
            task="t1",
            metadata={"instance": "t1/train/0"},
        ),
        Preference(
            context="c3po ctx", chosen="revised", rejected="baseline", source="c3po", metadata={"scope": "in"}
        ),
        Preference(context="human ctx", chosen="x", rejected="y", source="human", task="t2"),
        # APOHF's bare-arm / response variants left nothing that tells them apart: unknown
        Preference(
            context="arms ctx",
            chosen="r1",
            rejected="r2",
            source="simulated",
            metadata={"method": "apohf", "round": 2},
        ),
    ]


def write_old_ledger(path: Path, rows: list[Preference]) -> None:
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for seq, p in enumerate(rows, 1):
        db.execute(
            "INSERT INTO preferences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.id,
                seq,
                p.context,
                p.chosen,
                p.rejected,
                p.source,
                p.task,
                p.weight,
                json.dumps(p.metadata, sort_keys=True),
                "2024-01-01T00:00:00Z",
            ),
        )
    db.commit()
    db.close()


def test_kind_is_a_label_not_part_of_the_id():
    plain = Preference(context="c", chosen="a", rejected="b", source="s")
    assert plain.kind is None
    assert Preference(context="c", chosen="a", rejected="b", source="s", kind="prompt").id == plain.id
    with pytest.raises(ValueError):
        Preference(context="c", chosen="a", rejected="b", source="s", kind="episode")


def test_kinds_are_stored_filtered_and_counted(ledger):
    ledger.add_many(
        [
            Preference(context="c1", chosen="p1", rejected="p2", source="judge:m", task="t1", kind="prompt"),
            Preference(
                context="c2", chosen="t1", rejected="t2", source="reflexion", task="t1", kind="trajectory"
            ),
            Preference(context="c3", chosen="r1", rejected="r2", source="human", task="t2", kind="response"),
            Preference(context="c4", chosen="x", rejected="y", source="human", task="t2"),
        ]
    )
    stored = dict(ledger._db.execute("SELECT context, kind FROM preferences"))
    assert stored == {"c1": "prompt", "c2": "trajectory", "c3": "response", "c4": None}
    assert [p.context for p in ledger.query(kind="trajectory")] == ["c2"]
    assert [p.context for p in ledger.query(kind="unknown")] == ["c4"]
    assert [p.context for p in ledger.query(kind="prompt,response")] == ["c1", "c3"]
    assert [p.context for p in ledger.query(kind=["response"], source=["human", "judge:"])] == ["c3"]
    assert [p.context for p in ledger.query(task=["t1", "t2"], kind="prompt")] == ["c1"]
    assert ledger.count(kind="unknown") == 1 and ledger.count(kind="prompt", task="t2") == 0
    assert ledger.stats().by_kind == {"prompt": 1, "response": 1, "trajectory": 1, "unknown": 1}
    with pytest.raises(UserError, match="unknown preference kind 'episode'"):
        ledger.query(kind="episode")
    # a writer that names no kind but whose source implies one is stored with it
    ledger.add(Preference(context="c5", chosen="a", rejected="b", source="c3po", metadata={"scope": "in"}))
    assert ledger.get(ledger.query(kind="response")[-1].id).context == "c5"


def test_an_old_ledger_is_migrated_in_place_and_old_rows_read_with_their_implied_kind(tmp_path):
    path = tmp_path / "old.sqlite"
    rows = old_rows()
    write_old_ledger(path, rows)
    with PreferenceLedger(path) as store:
        assert store.schema_version == 1
        columns = [r[1] for r in store._db.execute("PRAGMA table_info(preferences)")]
        assert columns[-1] == "kind"
        # nothing was rewritten: the old rows keep NULL in the file, and their ids
        assert [r[0] for r in store._db.execute("SELECT kind FROM preferences ORDER BY seq")] == [None] * 5
        assert [p.id for p in store.iter()] == [p.id for p in rows]
        assert [p.kind for p in store.iter()] == ["prompt", "trajectory", "response", None, None]
        assert store.stats().by_kind == {"prompt": 1, "response": 1, "trajectory": 1, "unknown": 2}
        assert [p.source for p in store.query(kind="unknown")] == ["human", "simulated"]
        # still append-only after the migration
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store._db.execute("UPDATE preferences SET kind = 'prompt'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            store._db.execute("DELETE FROM preferences")
        assert store.add(Preference(context="new", chosen="a", rejected="b", source="human", kind="response"))
        assert store.integrity_check() == "ok"
    with PreferenceLedger(path) as again:  # opening a migrated file changes nothing
        assert again.schema_version == 1 and len(again) == 6
        assert again.stats().by_kind["response"] == 2


def test_several_processes_opening_an_old_ledger_migrate_it_once(tmp_path):
    path = tmp_path / "old.sqlite"
    write_old_ledger(path, old_rows())
    code = textwrap.dedent(
        f"""
        from agentopt.preferences import PreferenceLedger
        with PreferenceLedger({str(path)!r}) as store:
            print(store.schema_version, len(store))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {"1 5"}


def test_kind_round_trips_through_the_export_and_an_old_export_reimports_as_a_no_op(tmp_path):
    path = tmp_path / "old.sqlite"
    write_old_ledger(path, old_rows())
    with PreferenceLedger(path) as store:
        store.add(Preference(context="new", chosen="a", rejected="b", source="human", kind="response"))
        out = tmp_path / "all.jsonl"
        assert store.export_jsonl(out) == 6
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["kind"] for r in exported] == ["prompt", "trajectory", "response", None, None, "response"]
        loaded = load_jsonl(out)
        assert loaded == list(store.iter()) and [p.kind for p in loaded][-1] == "response"
        assert store.export_jsonl(tmp_path / "t.jsonl", kind="trajectory") == 1
        # an export written before kinds existed: the same rows without the column
        legacy = tmp_path / "legacy.jsonl"
        legacy.write_text(
            "".join(json.dumps({k: v for k, v in r.items() if k != "kind"}) + "\n" for r in exported)
        )
        assert [p.kind for p in load_jsonl(legacy)] == ["prompt", "trajectory", "response", None, None, None]
        assert store.import_jsonl(legacy) == 0 and store.import_jsonl(out) == 0
    fresh = tmp_path / "fresh.sqlite"
    with PreferenceLedger(fresh) as other:
        assert other.import_jsonl(out) == 6
        assert [p.kind for p in other.iter()] == ["prompt", "trajectory", "response", None, None, "response"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "kind": "episode"}) + "\n")
    with pytest.raises(UserError, match="bad.jsonl:1"):
        load_jsonl(bad)


def test_cli_ledger_stats_counts_kinds_and_export_filters_by_kind(tmp_path):
    path = tmp_path / "old.sqlite"
    write_old_ledger(path, old_rows())
    result = cli("ledger", "stats", "--ledger", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["by_kind"] == {"prompt": 1, "response": 1, "trajectory": 1, "unknown": 2}
    text = cli("ledger", "stats", "--ledger", str(path)).stdout
    assert "kind" in text and "trajectory" in text and "unknown" in text
    out = tmp_path / "p.jsonl"
    result = cli("ledger", "export", "--out", str(out), "--kind", "prompt,unknown", "--ledger", str(path))
    assert result.exit_code == 0 and "exported 3" in result.stdout
    result = cli("ledger", "export", "--out", str(out), "--kind", "episode", "--ledger", str(path))
    assert isinstance(result.exception, UserError) and "unknown preference kind" in str(result.exception)
