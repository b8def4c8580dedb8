"""The preference ledger: every pairwise comparison the project gathers, in one SQLite file.

Every method that learns from comparisons (APOHF's person, judge or simulated user, Reflexion's
before/after trials, C3PO's revisions) appends here; the fine-tuner reads it directly or through
the TRL export. The guarantees, and how they are kept:

- **Append-only.** One table, ``preferences``; rows are inserted, never updated or deleted.
  Triggers make an UPDATE or DELETE fail, so a bug elsewhere cannot rewrite history.
- **Deduplicated by content.** The primary key is `Preference.id`, a hash of (context, chosen,
  rejected, source); ``ON CONFLICT(id) DO NOTHING`` makes re-adding the same comparison a no-op,
  so a re-run or a re-import never doubles the data (and only a duplicate is passed over: a
  row that breaks any other rule is an error, never silently dropped).
- **Only real comparisons.** `check_preference` refuses a row whose weight is negative, NaN or
  infinite, whose chosen text or source is empty, or whose chosen text equals the rejected one
  (an empty rejected text is a keep example, as C3PO writes them); an import names the line.
- **Crash-safe.** WAL journal with ``synchronous=FULL``: once `add` returns, the row survives
  a killed process or a power cut; a writer killed mid-transaction leaves no trace of the
  unfinished row (SQLite rolls the WAL back to the last commit), never a torn one.
- **No secrets.** Text and metadata pass through `agentopt.lm.secrets` before they are hashed
  and stored, so a key pasted into a prompt never reaches the file.
- **Labelled by kind.** Each row says what its chosen/rejected texts are, in the ``kind``
  column: ``prompt`` (APOHF's prompt duels), ``response`` (one model reply: C3PO, and APOHF's
  response variant) or ``trajectory`` (Reflexion, a whole multi-step transcript); NULL when
  unknown. The kind is a label, not part of the id.

Schema versions (``PRAGMA user_version``): 0 is the original table; 1 adds ``kind``. A version-0
file is migrated when opened for writing, with ``ALTER TABLE ... ADD COLUMN`` (which the
append-only triggers allow, and which rewrites no row); opened read-only (``read_only=True``,
as ``ledger stats`` and ``export`` do, or because the file may not be written) it is read as it
is, unchanged. Its old rows keep ``kind`` NULL in the file, and are
read with the kind their writer implies (`Preference.infer_kind`: source ``reflexion`` ->
trajectory, ``c3po`` -> response, an APOHF row naming its task instance -> prompt); rows that
imply nothing stay unknown (``kind=None``), and the fine-tuner treats "unknown" as a kind of
its own.

The export is TRL's preference format, one JSON object a line: ``{"prompt", "chosen",
"rejected"}`` plus ``source``, ``task``, ``kind``, ``weight`` and ``metadata`` (TRL ignores extra
columns); `load_jsonl` reads it back into equal `Preference` objects (a row without ``kind``, as
older exports are, gets the inferred one).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agentopt.errors import UserError
from agentopt.files import make_dir, read_text
from agentopt.lm.secrets import redact, scrub
from agentopt.types import UNKNOWN_KIND, Preference, kind_filter

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS preferences (
    id       TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL UNIQUE,
    context  TEXT NOT NULL,
    chosen   TEXT NOT NULL,
    rejected TEXT NOT NULL,
    source   TEXT NOT NULL,
    task     TEXT,
    weight   REAL NOT NULL,
    metadata TEXT NOT NULL,
    created  TEXT NOT NULL,
    kind     TEXT
);
CREATE INDEX IF NOT EXISTS preferences_source ON preferences(source);
CREATE INDEX IF NOT EXISTS preferences_task ON preferences(task);
CREATE TRIGGER IF NOT EXISTS preferences_no_update BEFORE UPDATE ON preferences
BEGIN SELECT RAISE(ABORT, 'the preference ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS preferences_no_delete BEFORE DELETE ON preferences
BEGIN SELECT RAISE(ABORT, 'the preference ledger is append-only'); END;
"""

# seq is assigned inside the INSERT, under the write lock that BEGIN IMMEDIATE takes, so two
# processes appending at once still get distinct, increasing numbers.
_INSERT = """
INSERT INTO preferences
    (id, seq, context, chosen, rejected, source, task, weight, metadata, created, kind)
VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM preferences), ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO NOTHING
"""
_COLUMNS = "id, seq, context, chosen, rejected, source, task, weight, metadata, created, kind"
TRL_KEYS = ("prompt", "chosen", "rejected")
# A filter: one value, or several of which any may match (None = no filter).
Filter = str | Sequence[str] | None


def default_ledger_path() -> Path:
    """``$AGENTOPT_HOME/ledger.sqlite`` (beside the shared response cache)."""
    from agentopt.lm.client import default_state_dir

    return default_state_dir() / "ledger.sqlite"


class LedgerStats(BaseModel):
    """What `agentopt ledger stats` prints."""

    path: str
    total: int
    by_source: dict[str, int] = Field(default_factory=dict)
    by_task: dict[str, int] = Field(default_factory=dict)
    by_kind: dict[str, int] = Field(default_factory=dict, description="'unknown' for rows with no kind")
    first_created: str | None = None
    last_created: str | None = None


def clean(preference: Preference) -> Preference:
    """The preference as it will be stored: secrets redacted in every string (the id follows),
    and a missing kind filled in where the source implies one (`Preference.infer_kind`)."""
    metadata = scrub(preference.metadata)
    return Preference(
        context=redact(preference.context),
        chosen=redact(preference.chosen),
        rejected=redact(preference.rejected),
        source=redact(preference.source),
        task=redact(preference.task) if preference.task is not None else None,
        weight=preference.weight,
        metadata=metadata,
        kind=preference.kind or Preference.infer_kind(preference.source, metadata),
    )


def check_preference(preference: Preference) -> str | None:
    """What is wrong with a row as a preference, or None. Every row the ledger stores passes.

    An empty ``context`` is allowed (APOHF compares bare prompts with none), and so is an empty
    ``rejected``: that is how a keep example is written (a reply to keep, with nothing set
    against it, as C3PO's near- and out-of-scope rows are)."""
    weight = preference.weight
    if not math.isfinite(weight) or weight < 0:
        return f"weight must be a finite number >= 0, not {weight}"
    if not preference.chosen.strip():
        return "chosen is empty"
    if not preference.source.strip():
        return "source is empty"
    if preference.chosen == preference.rejected:
        return "chosen and rejected are the same text"
    if preference.rejected and not preference.rejected.strip():
        return "rejected is only whitespace (leave it empty for a keep example)"
    return None


class PreferenceLedger:
    """An append-only, deduplicated SQLite store of `Preference` objects.

    Safe to share between threads (one connection behind a lock) and between processes (WAL,
    immediate transactions, a busy timeout). Use as a context manager or call `close`.

    ``read_only`` opens an existing file for reading only: no schema is created or migrated
    and nothing is written. A file this process may not write is opened that way by itself,
    and adding to it is then a UserError.
    """

    def __init__(
        self, path: str | Path | None = None, *, timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        self.path = Path(path) if path is not None else default_ledger_path()
        if self.path.is_dir():
            raise UserError(f"ledger path {self.path} is a folder; give a file such as ledger.sqlite")
        self.read_only = read_only or (self.path.is_file() and not os.access(self.path, os.W_OK))
        self._lock = threading.Lock()
        try:
            self._db = self._open(timeout_s)
            # A file from before kinds, read as it is: its rows have no kind column.
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(preferences)")}
            if not columns:
                raise sqlite3.DatabaseError("no preferences table")
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a preference ledger ({exc})") from None
        self._columns = _COLUMNS if "kind" in columns else _COLUMNS.replace(", kind", ", NULL AS kind")

    def _open(self, timeout_s: float) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only(timeout_s)
        try:
            return self._connect(timeout_s)
        except sqlite3.OperationalError as exc:
            # A file we may write in a folder we may not (SQLite needs its WAL files beside
            # it), or a read-only file system: read it, as a file we may not write is read.
            if not self.path.is_file() or not any(s in str(exc) for s in ("readonly", "unable to open")):
                raise
            self.read_only = True
            return self._connect_read_only(timeout_s)

    def _connect(self, timeout_s: float) -> sqlite3.Connection:
        if not self.path.exists():
            make_dir(self.path.parent, "folder for the preference ledger")
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each add is exactly one
        # transaction and nothing is left implicitly open.
        db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        self._db = db
        db.executescript(_SCHEMA)
        self._migrate()
        return db

    def _connect_read_only(self, timeout_s: float) -> sqlite3.Connection:
        if not self.path.is_file():
            raise UserError(f"no preference ledger at {self.path}")
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None,
                                 check_same_thread=False)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.OperationalError as exc:
            # A WAL file in a folder we may not write: SQLite cannot make its shared-memory file
            # there. Only on a read-only file system is nobody else writing it, so only there is
            # it safe to read it as immutable (which skips SQLite's locks).
            if not os.statvfs(self.path.parent).f_flag & os.ST_RDONLY:
                raise UserError(f"cannot read the ledger {self.path}: SQLite needs to write its "
                                f"shared-memory file beside it ({exc}); copy it to a folder you can "
                                "write") from None
            db = sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=timeout_s, isolation_level=None,
                                 check_same_thread=False)
        return db

    def _migrate(self) -> None:
        """Bring an older file to `SCHEMA_VERSION`, under the write lock so two processes opening
        the same old file at once migrate it once. Adding a column rewrites no row, so the
        append-only triggers (which stop UPDATE and DELETE) stay in place throughout."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(preferences)")}
            if "kind" not in columns:
                self._db.execute("ALTER TABLE preferences ADD COLUMN kind TEXT")
            self._db.execute("CREATE INDEX IF NOT EXISTS preferences_kind ON preferences(kind)")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._one("PRAGMA user_version", ())[0])

    # --- writing -----------------------------------------------------------------------
    def add(self, preference: Preference) -> bool:
        """Append one preference in its own transaction; False if it was already there."""
        return self.add_many([preference]) == 1

    def add_many(self, preferences: Iterable[Preference]) -> int:
        """Append several in one transaction (all or none survive a crash); returns how many
        were new. A row that is not a real comparison (`check_preference`) is a UserError naming
        it, and then nothing is added."""
        cleaned = [clean(p) for p in preferences]
        for index, preference in enumerate(cleaned):
            problem = check_preference(preference)
            if problem is not None:
                raise UserError(f"preference {index + 1} of {len(cleaned)} is not a comparison: {problem}")
        rows = [self._row(p) for p in cleaned]
        if not rows:
            return 0
        if self.read_only:
            raise UserError(f"{self.path} is read-only: cannot add preferences to it")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock now, so seq is assigned safely
            try:
                added = 0
                for row in rows:
                    added += self._db.execute(_INSERT, row).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added

    @staticmethod
    def _row(p: Preference) -> tuple[Any, ...]:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        metadata = json.dumps(p.metadata, sort_keys=True, ensure_ascii=False, default=str)
        return (p.id, p.context, p.chosen, p.rejected, p.source, p.task, p.weight, metadata, created, p.kind)

    # --- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count()

    def __contains__(self, preference_id: object) -> bool:
        if isinstance(preference_id, Preference):
            preference_id = clean(preference_id).id
        return self._one("SELECT 1 FROM preferences WHERE id = ?", (preference_id,)) is not None

    def get(self, preference_id: str) -> Preference | None:
        row = self._one(f"SELECT {self._columns} FROM preferences WHERE id = ?", (preference_id,))
        return _preference(row) if row else None

    def count(self, *, source: Filter = None, task: Filter = None, kind: Filter = None) -> int:
        if kind is not None:
            return sum(1 for _ in self.iter(source=source, task=task, kind=kind))
        where, args = _filters(source, task)
        return int(self._one(f"SELECT COUNT(*) FROM preferences{where}", args)[0])

    def iter(
        self, *, source: Filter = None, task: Filter = None, kind: Filter = None
    ) -> Iterator[Preference]:
        """Preferences in the order they were added, optionally filtered by source, task and kind.

        Each filter is one value or several (a list, or a comma-separated string for ``kind``),
        any of which may match. ``source`` matches exactly, or as a prefix when it ends in ``:``
        (``judge:`` = every judge model). ``kind`` takes prompt, response, trajectory, and
        ``unknown`` for rows with no kind; rows from before kinds were stored match by the kind
        they imply."""
        where, args = _filters(source, task)
        kinds = kind_filter(kind)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._columns} FROM preferences{where} ORDER BY seq", args
            ).fetchall()
        for row in rows:
            preference = _preference(row)
            if kinds is None or (preference.kind or UNKNOWN_KIND) in kinds:
                yield preference

    def query(
        self,
        *,
        source: Filter = None,
        task: Filter = None,
        kind: Filter = None,
        limit: int | None = None,
    ) -> list[Preference]:
        out = list(self.iter(source=source, task=task, kind=kind))
        return out if limit is None else out[:limit]

    def lookup(self, context: str, a: str, b: str, source: str) -> str | None:
        """Was (a, b) already compared in this context by this source? ``"a"``/``"b"`` for the
        recorded winner, None if never. This is how an interrupted session resumes."""
        for chosen, rejected, verdict in ((a, b, "a"), (b, a, "b")):
            probe = clean(Preference(context=context, chosen=chosen, rejected=rejected, source=source))
            if probe.id in self:
                return verdict
        return None

    def stats(self) -> LedgerStats:
        with self._lock:
            by_source = dict(
                self._db.execute(
                    "SELECT source, COUNT(*) FROM preferences GROUP BY source ORDER BY source"
                ).fetchall()
            )
            by_task = dict(
                self._db.execute(
                    "SELECT COALESCE(task, '-'), COUNT(*) FROM preferences GROUP BY task ORDER BY task"
                ).fetchall()
            )
            first, last = self._db.execute("SELECT MIN(created), MAX(created) FROM preferences").fetchone()
            by_kind: dict[str, int] = {}
            has_kind = "NULL AS kind" not in self._columns
            for kind, n in self._db.execute(
                "SELECT kind, COUNT(*) FROM preferences WHERE kind IS NOT NULL GROUP BY kind"
            ) if has_kind else ():
                by_kind[kind] = by_kind.get(kind, 0) + n
            # Rows from before kinds were stored: count them under the kind they imply.
            for source, metadata in self._db.execute(
                "SELECT source, metadata FROM preferences" + (" WHERE kind IS NULL" if has_kind else "")
            ):
                kind = Preference.infer_kind(source, json.loads(metadata)) or UNKNOWN_KIND
                by_kind[kind] = by_kind.get(kind, 0) + 1
        return LedgerStats(
            path=str(self.path),
            total=sum(by_source.values()),
            by_source=by_source,
            by_task=by_task,
            by_kind=dict(sorted(by_kind.items())),
            first_created=first,
            last_created=last,
        )

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: ``"ok"`` when every page and index is sound."""
        return str(self._one("PRAGMA integrity_check", ())[0])

    def _one(self, sql: str, args: Sequence[Any]) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    # --- TRL JSONL -----------------------------------------------------------------------
    def export_jsonl(
        self,
        path: str | Path,
        *,
        source: Filter = None,
        task: Filter = None,
        kind: Filter = None,
        minimal: bool = False,
    ) -> int:
        """Write TRL-format rows; returns how many. ``minimal`` keeps only prompt/chosen/rejected.

        Written to a temporary file and renamed, so a reader never sees half an export."""
        target = Path(path)
        if target.is_dir():
            raise UserError(f"export target {target} is a folder; give a file name")
        _filters(source, task)
        kind_filter(kind)  # a misspelt filter is refused before any file is made
        make_dir(target.parent, "folder for the export")
        tmp = target.with_name(target.name + ".tmp")
        n = 0
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                for preference in self.iter(source=source, task=task, kind=kind):
                    fh.write(json.dumps(to_trl_row(preference, minimal=minimal), ensure_ascii=False) + "\n")
                    n += 1
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return n

    export = export_jsonl

    def import_jsonl(self, path: str | Path, *, source: str = "import") -> int:
        """Append the rows of a TRL-format file (``source`` fills rows that name none); returns
        how many were new."""
        return self.add_many(load_jsonl(path, default_source=source))

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PreferenceLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Ledger = PreferenceLedger


def add_preferences(ledger: Any, preferences: Sequence[Preference]) -> int:
    """Write to any ledger with ``add_many`` or ``add``; returns how many were new."""
    if ledger is None or not preferences:
        return 0
    add_many = getattr(ledger, "add_many", None)
    if callable(add_many):
        added = add_many(list(preferences))
        return int(added) if not isinstance(added, list | tuple) else sum(bool(x) for x in added)
    return sum(bool(ledger.add(p)) for p in preferences)


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _filters(source: Filter, task: Filter) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    args: list[Any] = []
    if source is not None:
        alternatives = []
        for one in _as_list(source):
            if one.endswith(":"):
                alternatives.append("substr(source, 1, ?) = ?")
                args += [len(one), one]
            else:
                alternatives.append("source = ?")
                args.append(one)
        clauses.append("(" + " OR ".join(alternatives or ["0"]) + ")")
    if task is not None:
        tasks = _as_list(task)
        clauses.append("task IN (" + ", ".join("?" * len(tasks)) + ")" if tasks else "0")
        args += tasks
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def _preference(row: Sequence[Any]) -> Preference:
    _id, _seq, context, chosen, rejected, source, task, weight, metadata, _created, kind = row
    meta = json.loads(metadata)
    return Preference(
        context=context,
        chosen=chosen,
        rejected=rejected,
        source=source,
        task=task,
        weight=weight,
        metadata=meta,
        kind=kind or Preference.infer_kind(source, meta),
    )


def to_trl_row(preference: Preference, *, minimal: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "prompt": preference.context,
        "chosen": preference.chosen,
        "rejected": preference.rejected,
    }
    if not minimal:
        row.update(
            source=preference.source,
            task=preference.task,
            kind=preference.kind,
            weight=preference.weight,
            metadata=preference.metadata,
        )
    return row


def from_trl_row(row: dict[str, Any], *, default_source: str = "import") -> Preference:
    """One TRL row back into a `Preference`; string fields only (chat-message lists are
    flattened to their JSON text, so nothing is lost). A row without ``kind`` (an export from
    before kinds, or another tool's file) gets the kind its source implies, else None."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    missing = [k for k in TRL_KEYS if k not in row]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    source = row.get("source") or default_source
    metadata = row.get("metadata") or {}
    return Preference(
        context=text(row["prompt"]),
        chosen=text(row["chosen"]),
        rejected=text(row["rejected"]),
        source=source,
        task=row.get("task"),
        weight=row.get("weight", 1.0),
        metadata=metadata,
        kind=row.get("kind") or Preference.infer_kind(source, metadata),
    )


def load_jsonl(path: str | Path, *, default_source: str = "import") -> list[Preference]:
    """Read a TRL-format JSONL file; a malformed line, or a row that is not a real comparison
    (`check_preference`), is a `UserError` naming its line. Nothing is dropped in silence."""
    path = Path(path)
    text = read_text(path, "preference file", allow_empty=True)
    out: list[Preference] = []
    # split("\n"), not splitlines(): a JSON string may hold a raw U+2028, which is no line break.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            preference = from_trl_row(row, default_source=default_source)
        except (json.JSONDecodeError, ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"{path}:{number}: not a preference row ({first})") from None
        problem = check_preference(clean(preference))
        if problem is not None:
            raise UserError(f"{path}:{number}: not a preference row ({problem})")
        out.append(preference)
    return out


__all__ = [
    "SCHEMA_VERSION",
    "UNKNOWN_KIND",
    "Ledger",
    "add_preferences",
    "LedgerStats",
    "PreferenceLedger",
    "check_preference",
    "default_ledger_path",
    "from_trl_row",
    "load_jsonl",
    "to_trl_row",
]
