"""GridWorld2 (PROMST): GridWorld1, but goals must be picked in label order.

Picking goal_k while a lower-labelled goal is still on the grid is a ``wrong_order`` event (the
task's rules end the episode on it). Instances are kept only if the route that visits the goals
in label order, each leg a shortest path, fits in the step limit.

The world, parser and oracle are GridWorld1's, loaded from the sibling folder ``gridworld1`` so
the two tasks cannot drift apart; keep the two folders side by side.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def _load_gridworld1() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "gridworld1" / "task.py"
    spec = importlib.util.spec_from_file_location("agentopt_task_gridworld1_base", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"gridworld2 needs its sibling task folder: {path} not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_base = _load_gridworld1()

FAMILIES = _base.FAMILIES
STUCK_WINDOW = _base.STUCK_WINDOW  # the "stuck" rule's window that instance generation respects


class Env(_base.Env):  # type: ignore[name-defined,misc]
    """GridWorld with label-ordered picking."""

    ordered = True


def oracle(env: Env) -> str:
    """Follow the planned route: goals in label order, shortest path between them."""
    return _base.oracle(env)
