"""The plan a test writes before its first run, and keeps.

A test on fresh instances counts only if what it tests was fixed before any result: the plan
(``OUT/plan.json``) is written before the first run, and a rerun into the same folder (to
resume) must plan exactly the same, or it is refused. Both ``confirm.py`` and ``rescore.py``
keep their plans this way; each has its own plan model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from agentopt.errors import UserError

PlanT = TypeVar("PlanT", bound=BaseModel)


def instance_index(instance_id: str) -> int:
    """N in ``task/split/N``: test instances past the row's own are the fresh ones."""
    return int(instance_id.rsplit("/", 1)[1])


def plan_path(out: Path) -> Path:
    return out / "plan.json"


def read_plan(out: Path, model: type[PlanT], kind: str) -> PlanT | None:
    """The plan in ``out``, or None when there is none; ``kind`` names it in the error."""
    path = plan_path(out)
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValidationError:
        raise UserError(f"{path} is not a {kind} plan") from None


def keep_plan(out: Path, plan: BaseModel, kind: str) -> None:
    """Write ``plan`` before the first run; a rerun must bring the plan already written."""
    old = read_plan(out, type(plan), kind)
    if old is None:
        out.mkdir(parents=True, exist_ok=True)
        plan_path(out).write_text(plan.model_dump_json(indent=1) + "\n", encoding="utf-8")
    elif old != plan:
        raise UserError(f"{plan_path(out)} plans something else; a {kind} keeps its plan "
                        "(use another folder)")
