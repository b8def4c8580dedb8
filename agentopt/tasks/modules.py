"""Importing a user's Python file (a task's task.py, a metric's file.py) by its path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from agentopt.errors import UserError


def import_file(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} is not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as a normal import would be: dataclasses and pickling
    # look their module up in sys.modules.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
