"""A peer-benchmark folder's record: one `Cell` per (task, method, seed) in ``cells.jsonl``, the
settings every cell shares, and a log of the invocations that ran them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

AGENTOPT_SIDE = "agentopt"
SETTINGS_FILE = "settings.json"
INVOCATIONS_FILE = "invocations.jsonl"
PEERS = ("mipro", "gepa")
BASELINE = "dspy-zero-shot"


class Cell(BaseModel):
    """One method's run on one task and seed, counted at the proxy."""

    task: str
    method: str
    seed: int
    test_scores: dict[str, float]
    search_calls: int
    search_tokens: int
    test_calls: int
    wall_s: float
    budget_calls: int | None = None
    instruction: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def test_mean(self) -> float:
        return sum(self.test_scores.values()) / max(1, len(self.test_scores))


class BadInput(Exception):
    """Input the run cannot start with: reported as one line, exit code 2."""


def load_cells(path: Path) -> list[Cell]:
    """The finished cells. A last line cut off mid-write (the run was killed while appending)
    is dropped from the file, so that the next cell is not glued to it; that cell runs again."""
    if not path.is_file():
        return []
    numbered = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if line.strip()]
    cells = []
    for i, (n, line) in enumerate(numbered):
        try:
            cells.append(Cell.model_validate_json(line))
        except ValueError:
            if i < len(numbered) - 1:
                raise BadInput(f"{path}, line {n}, is not a cell: fix or remove it") from None
            path.write_text("".join(f"{kept}\n" for _, kept in numbered[:-1]), encoding="utf-8")
            print(f"    {path}: dropped a last line cut off mid-write; its cell runs again", flush=True)
    return cells
