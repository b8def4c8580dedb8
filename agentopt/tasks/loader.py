"""Finds and loads task folders.

A task folder holds:

- ``task.toml``: name, title, description, split sizes and the feedback rules (data).
- ``task.py``: the environment (``Env``, a `TextEnv` subclass), ``CONFIGS`` (the instance
  families, a list of dicts cycled over by instance index) and optionally ``oracle(env) -> str``,
  a scripted policy that solves the task (used by tests and as a sanity check).
- ``prompt.md``: the human-written initial prompt.

A single-turn task instead has a ``[dataset]`` table in ``task.toml`` (a data file, or a
``generate`` function in ``task.py``), and no environment code: see `agentopt.tasks.dataset`.

Folders are looked up, in order, in the directories given by the caller (``--tasks-dir``), in
``AGENTOPT_TASKS_PATH`` (``os.pathsep``-separated), then in the built-in suite, which lives in
``tasks/`` of a checkout or ``agentopt/_data/tasks`` of an installed wheel.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agentopt.errors import UserError
from agentopt.feedback.rules import Rule
from agentopt.tasks.actions import ActionGrammar
from agentopt.tasks.dataset import DatasetSpec, build_examples, env_class_for
from agentopt.tasks.env import TextEnv
from agentopt.tasks.modules import import_file
from agentopt.types import Instance, Split

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def builtin_data_dir(kind: str) -> Path:
    """``tasks`` or ``prompts``: the checkout's top-level folder, else the wheel's copy."""
    checkout = _PACKAGE_DIR.parent / kind
    if checkout.is_dir():
        return checkout
    return _PACKAGE_DIR / "_data" / kind


def search_path(extra: Iterable[str | Path] = ()) -> list[Path]:
    """The folders searched for tasks. Each one the caller names (``--tasks-dir``) must be a
    folder: one that is missing is a typo, and would otherwise be passed over in silence."""
    dirs = [Path(p) for p in extra]
    for folder in dirs:
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise UserError(f"tasks folder {folder} {what}")
    env = os.environ.get("AGENTOPT_TASKS_PATH", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(builtin_data_dir("tasks"))
    return dirs


class SplitSizes(BaseModel):
    train: int = Field(default=8, ge=0)
    validation: int = Field(default=8, ge=0)
    test: int = Field(default=16, ge=0)


class TaskManifest(BaseModel):
    """The data half of a task (``task.toml``)."""

    name: str
    title: str = ""
    description: str = ""
    splits: SplitSizes = Field(default_factory=SplitSizes)
    rules: list[Rule] = Field(default_factory=list)
    dataset: DatasetSpec | None = Field(default=None, description="set for single-turn dataset tasks")
    actions: ActionGrammar | None = Field(
        default=None, description="well-formed actions, for --constrain-actions"
    )


@dataclass
class Task:
    """A loaded task: its manifest, environment class and instance families."""

    manifest: TaskManifest
    folder: Path
    module: ModuleType | None = field(repr=False)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def rules(self) -> list[Rule]:
        return self.manifest.rules

    @property
    def single_turn(self) -> bool:
        return self.manifest.dataset is not None

    @cached_property
    def env_class(self) -> type[TextEnv]:
        if self.manifest.dataset is not None:
            return env_class_for(self.name, self.manifest.dataset, self.folder)
        return self.module.Env

    @property
    def configs(self) -> Sequence[dict[str, Any]]:
        return self.module.CONFIGS

    @property
    def oracle(self) -> Callable[[TextEnv], str] | None:
        if self.manifest.dataset is not None:
            # The reference answer, in the format the bundled prompts ask for.
            return lambda env: f"Answer: {env.instance.config['target']}"
        return getattr(self.module, "oracle", None)

    @cached_property
    def examples(self) -> dict[Split, list[dict[str, Any]]]:
        """A dataset task's examples, dealt to distinct splits (see `agentopt.tasks.dataset`)."""
        spec = self.manifest.dataset
        if spec is None:
            raise UserError(f"{self.name} is not a dataset task")
        generator = getattr(self.module, spec.generator, None) if spec.generator else None
        sizes = self.manifest.splits.model_dump()
        return build_examples(spec, sizes, folder=self.folder, generator=generator)

    @cached_property
    def initial_prompt(self) -> str:
        return (self.folder / "prompt.md").read_text(encoding="utf-8").strip()

    def instances(self, split: Split, n: int | None = None) -> list[Instance]:
        """The split's instances; the same on every machine (seeds are derived from names)."""
        size = getattr(self.manifest.splits, split)
        count = size if n is None else n
        if count < 0:
            raise UserError(f"number of instances must be >= 0, got {count}")
        if count > size:
            # Past the end are instances of no split (an environment task would go on making
            # them, a million if asked): the split is the bound.
            unit = "examples" if self.single_turn else "instances"
            raise UserError(f"{self.name}'s {split} split holds {size} {unit}; asked for {count} "
                            f"(leave --n out for all {size})")
        return [self.instance(split, i) for i in range(count)]

    def instance(self, split: Split, index: int) -> Instance:
        if self.single_turn:
            return Instance(task=self.name, split=split, index=index, seed=index,
                            config=dict(self.examples[split][index]))
        digest = hashlib.sha256(f"{self.name}:{split}:{index}".encode()).hexdigest()
        return Instance(
            task=self.name,
            split=split,
            index=index,
            seed=int(digest[:8], 16),
            config=dict(self.configs[index % len(self.configs)]),
        )

    def make_env(self, instance: Instance) -> TextEnv:
        return self.env_class(instance)


def _find_folder(name: str, dirs: list[Path]) -> Path | None:
    wanted = name.lower()
    for root in dirs:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name.lower() == wanted and (child / "task.toml").is_file():
                return child
    return None


def _import_task_module(folder: Path, required: tuple[str, ...] = ("Env", "CONFIGS")) -> ModuleType:
    module_name = f"agentopt_task_{folder.name.lower()}_{abs(hash(str(folder))):x}"
    module = import_file(folder / "task.py", module_name)
    for attr in required:
        if not hasattr(module, attr):
            raise UserError(f"{folder / 'task.py'} must define {attr}")
    return module


_CACHE: dict[Path, Task] = {}


def load_task_folder(folder: Path) -> Task:
    folder = folder.resolve()
    if folder in _CACHE:
        return _CACHE[folder]
    try:
        manifest = TaskManifest.model_validate(
            tomllib.loads((folder / "task.toml").read_text(encoding="utf-8"))
        )
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"invalid {folder / 'task.toml'}: {exc}") from exc
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise UserError(f"invalid {folder / 'task.toml'}: {where}: {error['msg']}") from exc
    if manifest.dataset is None:
        module: ModuleType | None = _import_task_module(folder)
    elif manifest.dataset.generator:
        module = _import_task_module(folder, required=(manifest.dataset.generator,))
    else:
        module = None  # a dataset from a file needs no code
    task = Task(manifest=manifest, folder=folder, module=module)
    _CACHE[folder] = task
    return task


def load_task(name: str, tasks_dirs: Iterable[str | Path] = ()) -> Task:
    """Load a task by name (case-insensitive) or by folder path."""
    tasks_dirs = list(tasks_dirs)
    dirs = search_path(tasks_dirs)
    as_path = Path(name)
    if (as_path / "task.toml").is_file():
        return load_task_folder(as_path)
    folder = _find_folder(name, dirs)
    if folder is None:
        known = ", ".join(t.name for t in list_tasks(tasks_dirs)) or "none"
        raise UserError(f"unknown task {name!r} (known: {known})")
    return load_task_folder(folder)


def list_tasks(tasks_dirs: Iterable[str | Path] = ()) -> list[Task]:
    """Every task on the search path; earlier directories shadow later ones by name."""
    seen: dict[str, Task] = {}
    for root in search_path(tasks_dirs):
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if (child / "task.toml").is_file() and child.name.lower() not in seen:
                seen[child.name.lower()] = load_task_folder(child)
    return list(seen.values())
