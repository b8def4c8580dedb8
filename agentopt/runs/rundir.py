"""A run directory: config, results appended as they arrive, a summary at the end.

Files are JSON / JSONL so they can be read by people, ``jq`` and pandas alike. Everything
written passes through `scrub`, so a key that slipped into a config never reaches disk.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentopt.lm.secrets import scrub


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @classmethod
    def new(cls, root: str | Path, name: str) -> RunDir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{stamp}-{name}"
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path(root) / f"{stamp}-{name}-{suffix}"
        return cls(path)

    def write_json(self, name: str, data: Any) -> Path:
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(scrub(_plain(data)), indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(target)  # atomic: a reader never sees half a file
        return target

    def append_jsonl(self, name: str, record: Any) -> None:
        line = json.dumps(scrub(_plain(record)), default=str) + "\n"
        with self._lock, (self.path / name).open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    return data
