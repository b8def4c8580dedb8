"""The run's append-only event journal, and resume by replay.

Every costly step of an optimiser (generating a candidate, evaluating a prompt) goes through
`RunJournal.memo(key, compute)`. The first time, ``compute`` runs and its JSON result is
appended to ``events.jsonl`` together with the LM budget it consumed. On ``--resume`` the
optimiser simply runs again from the top with the same seed: every memoised step is read back
from the journal (and its budget charged again, so budgets stop at the same place), and the
step that was interrupted is recomputed, mostly from the run's LM cache. The resumed run
therefore ends exactly where the uninterrupted one would have.

Appends are idempotent: an informational event (`log`) that a resumed run makes again on its
way through the replayed steps (a round summary, the start) is written only once, so the file
holds one account of the run however often it was resumed.

A last line torn by SIGKILL is cut off. A damaged line with valid events after it is not: the
journal refuses to open (one line naming it) rather than drop the events that follow.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.budget import BudgetMeter
from agentopt.lm.secrets import scrub
from agentopt.types import content_hash


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
        # How often each informational event is in the file, and how often this process has
        # logged it: a resumed run logs the same events again on its way through the replay.
        self._on_file: Counter[str] = Counter()
        self._logged: Counter[str] = Counter()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        good_bytes = 0
        bad: tuple[int, str] | None = None  # the first damaged line: its number and the problem
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                event, problem = _parse(raw)
                if problem is not None:
                    bad = bad or (number, problem)
                    continue
                if bad is not None:
                    raise UserError(
                        f"{self.path}: line {bad[0]} is damaged ({bad[1]}) and valid events follow it; "
                        "refusing to drop them: repair or delete that line, then resume")
                good_bytes += len(raw)
                self._remember(event)
        # Cut a torn tail (the last line of a killed writer) so new events start on a clean line.
        if good_bytes < self.path.stat().st_size:
            with self.path.open("r+b") as fh:
                fh.truncate(good_bytes)

    def _remember(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("type") == "memo":
            self._memo[event["key"]] = event
        else:
            self._on_file[_identity(event)] += 1

    def log(self, type: str, *, once: bool = True, **data: Any) -> None:
        """Append an informational event (round summaries, candidates, the final result).

        With ``once`` (the default) an event already in the file is not written again: the
        n-th time this process logs an event, it is skipped if the file holds it n times."""
        # In the form it takes on file, so it compares equal to what an earlier process wrote.
        event = json.loads(json.dumps(scrub({"type": type, "time": time.time(), **data}), default=str))
        if once:
            identity = _identity(event)
            with self._lock:
                self._logged[identity] += 1
                if self._logged[identity] <= self._on_file[identity]:
                    return
        self._append(event)

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

    @property
    def memo_count(self) -> int:
        """How many steps the journal holds answers for."""
        return len(self._memo)

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


def _parse(raw: bytes) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """One journal line as an event, or the reason it is not one."""
    if not raw.endswith(b"\n"):
        return None, "cut short"
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "not JSON"
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return None, "not an event"
    if event["type"] == "memo" and not (isinstance(event.get("key"), str) and "value" in event):
        return None, "a step without its key or value"
    return event, None


def _identity(event: dict[str, Any]) -> str:
    """What makes two informational events the same: everything but the time."""
    return content_hash({k: v for k, v in event.items() if k != "time"}, length=24)
