"""Append-only call journal: one JSON line per model call (hits, misses and failures).

JSONL because people read it with ``tail`` and ``jq``, and appending a line is atomic enough
for our one-writer-per-process use; a torn last line from a killed process is skipped on read.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentopt.errors import UserError
from agentopt.files import make_dir
from agentopt.lm.secrets import redact


class CallRecord(BaseModel):
    time: float
    request_hash: str
    model: str
    cached: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    attempts: int = 1
    error: str | None = None
    # The tools the reply asked for, in OpenAI's shape: what a tool-using agent did next is part
    # of what a reader of the journal follows (replies' text is in the cache, not here).
    tool_calls: list[dict[str, Any]] | None = None


class CallJournal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"call journal {self.path} is a folder, not a file")
        make_dir(self.path.parent, "folder for the call journal")
        self._lock = threading.Lock()

    def record(self, **fields: Any) -> CallRecord:
        if fields.get("error"):
            fields["error"] = redact(str(fields["error"]))
        entry = CallRecord(time=time.time(), **fields)
        line = (entry.model_dump_json() + "\n").encode("utf-8")
        with self._lock, self.path.open("a+b") as fh:
            # A writer killed mid-line leaves no newline at the end; start on a fresh line, or
            # this record would be glued to the torn one and lost with it on read.
            if fh.seek(0, 2) > 0:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    line = b"\n" + line
            fh.write(line)
        return entry

    def read(self) -> list[CallRecord]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(CallRecord.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValueError):
                continue  # a line torn by a killed writer
        return records
