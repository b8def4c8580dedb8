"""SQLite response cache, keyed by `ChatRequest.key()`.

The key covers only what determines the answer (never a key or base URL), so a re-run of a
finished experiment is answered entirely from here and makes no new calls.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from agentopt.errors import UserError
from agentopt.files import make_dir
from agentopt.types import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    completion TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class ResponseCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"response cache {self.path} is a folder, not a file")
        make_dir(self.path.parent, "folder for the response cache")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.execute("SELECT key, model, completion, created FROM responses LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            # A file that is not SQLite, a damaged one, or one we may not write: the user's to
            # fix (move it away and the cache starts afresh), never a traceback.
            raise UserError(f"{self.path} cannot be used as a response cache ({exc}); "
                            "move it away to start a fresh one") from None

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Completion.model_validate_json(row[0]).model_copy(update={"cached": True})

    def put(self, key: str, completion: Completion) -> None:
        blob = completion.model_copy(update={"cached": False}).model_dump_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, completion, created) VALUES (?, ?, ?, ?)",
                (key, completion.model, blob, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
