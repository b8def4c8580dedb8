"""Tasks registered by name: in code (`register_task`) and by installed packages (entry points).

A package makes its tasks appear in ``agentopt tasks`` (and usable by name everywhere) by
declaring them in the ``agentopt.tasks`` entry-point group of its ``pyproject.toml``::

    [project.entry-points."agentopt.tasks"]
    support_tickets = "mytasks:support_tickets"      # a task object
    invoices = "mytasks:make_invoices"               # or a function that returns one
    routes = "mytasks:ROUTES_FOLDER"                 # or the path of a task folder

The entry point's name is the task's name. Nothing is imported until the task is asked for
(or every task is listed), so a broken plugin only breaks its own tasks. Built-in tasks win over
plugins: an entry point named like a built-in task is never loaded by that name (`agentopt
tasks` says which one it hides), and ``register_task`` takes a built-in's name only with
``replace=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.tasks.protocol import is_task, missing_members

ENTRY_POINT_GROUP = "agentopt.tasks"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# lower-case name -> a task, a zero-argument function returning one, or a task folder.
_REGISTERED: dict[str, Any] = {}
# Tasks already made from a registration or an entry point: one object per name, so a run and
# its resume, or two commands of one process, see the same task.
_MADE: dict[str, Any] = {}


def register_task(task: Any, name: str | None = None, *, replace: bool = False) -> str:
    """Make ``task`` loadable by name (``optimize``, ``bench``, ``run``, ``load_task``).

    ``task`` is a task object (registered under its own ``name``; a ``name`` given must be that
    one), the path of a task folder (its folder name is its task's name), or, with ``name``, a
    zero-argument function that builds the task when it is first asked for (the task it builds
    must be named ``name``). What can be checked now is: an object's name, a folder's
    task.toml. A built-in task's name, or a name already registered for another task, is
    refused unless ``replace``. Returns the name."""
    if isinstance(task, (str, Path)):
        name = _checked_folder(Path(task), name)
    elif is_task(task):
        if name is not None and (not isinstance(name, str) or name.lower() != task.name.lower()):
            raise UserError(f"register_task: the task object is named {task.name!r}, not {name!r}: it "
                            "is registered under its own name (leave name out, or rename the task)")
        name = task.name
    elif name is None:
        raise UserError("register_task needs a task object, or a name with a function or folder "
                        f"(got {type(task).__name__}; missing {', '.join(missing_members(task))})")
    elif not callable(task):
        raise UserError(f"register_task: {name!r} is given a {type(task).__name__}, not a task, a "
                        "function returning one or a task folder")
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"task name {name!r} must be letters, digits, '_', '-' or '.'")
    key = name.lower()
    held = _REGISTERED.get(key)
    if not replace and held is not None and held is not task and not _same_folder(held, task):
        raise UserError(f"a different task is already registered as {name!r} (pass replace=True)")
    if not replace and held is None:
        from agentopt.tasks.loader import builtin_task_names

        if key in builtin_task_names():
            raise UserError(f"{name!r} is a built-in task's name: choose another, or pass replace=True "
                            "to use yours in its place in this process")
    _REGISTERED[key] = task
    _MADE.pop(key, None)
    return name


def _checked_folder(folder: Path, name: str | None) -> str:
    """The name a task folder is registered under: its folder's name, which ``name`` must be."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"register_task: the task folder {folder} {what}")
    if not (folder / "task.toml").is_file():
        raise UserError(f"register_task: {folder} is not a task folder (it holds no task.toml)")
    own = folder.resolve().name
    if name is not None and isinstance(name, str) and name.lower() != own.lower():
        raise UserError(f"register_task: the folder {folder} holds the task {own!r} (a folder is named "
                        f"after its task), not {name!r}")
    return own if name is None else name


def _same_folder(held: Any, task: Any) -> bool:
    paths = [Path(x).resolve() if isinstance(x, (str, Path)) else None for x in (held, task)]
    return paths[0] is not None and paths[0] == paths[1]


def unregister_task(name: str) -> None:
    _REGISTERED.pop(name.lower(), None)
    _MADE.pop(name.lower(), None)


def registered_names() -> list[str]:
    return sorted(_REGISTERED)


def from_registry(name: str) -> Any | None:
    """The task registered in code under ``name``, made on first use; None when there is none."""
    key = name.lower()
    if key not in _REGISTERED:
        return None
    if key not in _MADE:
        _MADE[key] = materialise(_REGISTERED[key], name, f"the task registered as {name!r}")
    return _MADE[key]


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name.lower(), point)  # the first distribution on sys.path wins
    return found


def entry_point_names() -> list[str]:
    return sorted(_entry_points())


def entry_point_source(name: str) -> str:
    """Which entry point (and package) declares the task ``name``, for listings and errors."""
    point = _entry_points()[name.lower()]
    return f"entry point {point.name} = {point.value!r}{_distribution(point)}"


def from_entry_point(name: str) -> Any | None:
    """The task an installed package declares under ``name``; None when none does."""
    key = name.lower()
    point = _entry_points().get(key)
    if point is None:
        return None
    made_key = f"entry-point:{key}"
    if made_key not in _MADE:
        where = entry_point_source(key)
        try:
            loaded = point.load()
        except Exception as exc:  # a plugin's import error is its own, shown in one line
            raise UserError(f"cannot load task from {where}: {type(exc).__name__}: {exc}") from None
        _MADE[made_key] = materialise(loaded, point.name, where)
    return _MADE[made_key]


def _distribution(point: EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f" (package {dist.name})" if dist is not None else ""


def materialise(held: Any, name: str | None, where: str) -> Any:
    """A task from what was registered: the task itself, a folder, or what a function returns;
    its name must be ``name`` when one is given."""
    from agentopt.tasks.loader import load_task_folder

    if isinstance(held, (str, Path)):
        folder = Path(held)
        if not (folder / "task.toml").is_file():
            raise UserError(f"{where}: {folder} is not a task folder (no task.toml)")
        task = load_task_folder(folder)
    elif is_task(held):
        task = held
    elif callable(held):
        task = _call_factory(held, where)
    else:
        raise UserError(f"{where} is a {type(held).__name__}, not a task, a function or a folder")
    if name is not None and task.name.lower() != name.lower():
        raise UserError(f"{where} gave the task {task.name!r}; its name must be {name!r}")
    return task


def _call_factory(factory: Callable[[], Any], where: str) -> Any:
    try:
        task = factory()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{where} failed to build its task: {type(exc).__name__}: {exc}") from None
    if isinstance(task, (str, Path)):
        from agentopt.tasks.loader import load_task_folder

        return load_task_folder(Path(task))
    if not is_task(task):
        raise UserError(f"{where} returned a {type(task).__name__}, not a task "
                        f"(missing {', '.join(missing_members(task))})")
    return task
