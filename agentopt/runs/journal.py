"""The run's append-only event journal, and resume by replay.

Every costly step of an optimiser (generating a candidate, evaluating a prompt) goes through
`RunJournal.memo(key, compute)`. The first time, ``compute`` runs and its JSON result is
appended to ``events.jsonl`` together with the LM budget it consumed. On ``--resume`` the
optimiser simply runs again from the top with the same seed: every memoised step is read back
from the journal (and its budget charged again, so budgets stop at the same place), and the
step that was interrupted is recomputed, mostly from the run's LM cache. The resumed run
therefore ends exactly where the uninterrupted one would have.

A line torn by SIGKILL is ignored, and so is everything after it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentopt.lm.budget import BudgetMeter
from agentopt.lm.secrets import scrub


class RunJournal:
    def __init__(self, path: str | Path, meter: BudgetMeter | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.meter = meter
        self._lock = threading.Lock()
        self._memo: dict[str, dict[str, Any]] = {}
        # Keys whose cost this process has already charged: a replayed result is paid for once
        # (as the original run paid once), and asking again for it later in the run is free.
        self._paid: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        good_bytes = 0
        with self.path.open("rb") as fh:
            for raw in fh:
                try:
                    event = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    break
                if not raw.endswith(b"\n"):
                    break
                good_bytes += len(raw)
                self.events.append(event)
                if event.get("type") == "memo":
                    self._memo[event["key"]] = event
        # Cut a torn tail so new events start on a clean line.
        if good_bytes < self.path.stat().st_size:
            with self.path.open("r+b") as fh:
                fh.truncate(good_bytes)

    def log(self, type: str, **data: Any) -> None:
        """Append an informational event (round summaries, candidates, the final result)."""
        self._append({"type": type, "time": time.time(), **data})

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Return the journalled result for ``key``, or compute, journal and return it."""
        event = self._memo.get(key)
        if event is not None:
            if self.meter is not None and key not in self._paid:
                calls, tokens, usd = event.get("cost", [0, 0, 0.0])
                self.meter.charge_replayed(calls, tokens, usd)
            self._paid.add(key)
            return event["value"]
        before = self.meter.snapshot() if self.meter is not None else (0, 0, 0.0)
        value = compute()
        after = self.meter.snapshot() if self.meter is not None else (0, 0, 0.0)
        cost = [after[0] - before[0], after[1] - before[1], after[2] - before[2]]
        event = {"type": "memo", "key": key, "time": time.time(), "cost": cost, "value": value}
        self._append(event)
        self._memo[key] = event
        self._paid.add(key)
        return value

    def has(self, key: str) -> bool:
        return key in self._memo

    def of_type(self, type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type]

    def _append(self, event: dict[str, Any]) -> None:
        line = json.dumps(scrub(event), default=str, ensure_ascii=False) + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.events.append(event)
