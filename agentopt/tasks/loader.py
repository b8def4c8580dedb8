"""Finds and loads task folders.

A task folder holds:

- ``task.toml``: name, title, description, split sizes and the feedback rules (data).
- ``task.py``: the environment (``Env``, a `TextEnv` subclass), ``FAMILIES`` (the instance
  families, a list of dicts cycled over by instance index: instance i is built from
  ``FAMILIES[i % len(FAMILIES)]``) and optionally ``oracle(env) -> str``, a scripted policy that
  solves the task (used by tests and as a sanity check). ``CONFIGS``, the name the families had
  before, still works in a task.py that has no ``FAMILIES``.
- ``prompt.md``: the human-written initial prompt.

A single-turn task instead has a ``[dataset]`` table in ``task.toml`` (a data file, or a
``generate`` function in ``task.py``), and no environment code: see `agentopt.tasks.dataset`.

Folders are looked up, in order, in the directories given by the caller (``--tasks-dir``), in
``AGENTOPT_TASKS_PATH`` (``os.pathsep``-separated), then in the built-in suite, which lives in
``tasks/`` of a checkout or ``agentopt/_data/tasks`` of an installed wheel. A folder is named
after its task (its task.toml ``name``). `load_task` has the order of every source.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import tomllib
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentopt.errors import UserError, one_line, validation_message
from agentopt.files import read_text
from agentopt.tasks import registry
from agentopt.tasks.actions import ActionGrammar
from agentopt.tasks.dataset import DatasetSpec, build_examples, env_class_for
from agentopt.tasks.env import TextEnv
from agentopt.tasks.modules import import_folder_as_package, import_submodule
from agentopt.tasks.protocol import is_task
from agentopt.tasks.rules import Rule
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
    # A misspelt key (``validaton``) must not be dropped in silence: the split would keep its default.
    model_config = ConfigDict(extra="forbid")

    train: int = Field(default=8, ge=0)
    validation: int = Field(default=8, ge=0)
    test: int = Field(default=16, ge=0)


class TaskManifest(BaseModel):
    """The data half of a task (``task.toml``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = ""
    description: str = ""
    splits: SplitSizes = Field(default_factory=SplitSizes)
    rules: list[Rule] = Field(default_factory=list)
    dataset: DatasetSpec | None = Field(default=None, description="set for single-turn dataset tasks")
    actions: ActionGrammar | None = Field(
        default=None, description="well-formed actions, for --constrain-actions"
    )


@dataclass(eq=False)
class Task:
    """A loaded task: what every optimiser, agent and command works with.

    The public contract (`agentopt.tasks.protocol.TaskProtocol`) is ``name``, ``initial_prompt``,
    ``rules``, ``splits``, ``actions``, ``single_turn``, ``instances(split, n)`` and
    ``make_env(instance)``. A task comes from a folder (``task.toml`` + ``task.py`` +
    ``prompt.md``) or from code (`agentopt.tasks.define`): the fields after ``module`` hold
    what code gave directly, and each one, when set, takes the place of its folder file.
    """

    manifest: TaskManifest
    folder: Path | None = None
    module: ModuleType | None = field(default=None, repr=False)
    prompt_text: str | None = field(default=None, repr=False)
    env: type[TextEnv] | None = field(default=None, repr=False)
    instance_families: Sequence[dict[str, Any]] | None = field(default=None, repr=False)
    oracle_fn: Callable[[TextEnv], str] | None = field(default=None, repr=False)
    rows: Sequence[dict[str, Any]] | None = field(default=None, repr=False)
    row_labels: Sequence[str] | None = field(default=None, repr=False)  # where each row is, for errors
    generator_fn: Callable[[Any], dict[str, Any]] | None = field(default=None, repr=False)
    metric_fn: Callable[[str, dict[str, Any]], float] | None = field(default=None, repr=False)
    source: str = "code"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def description(self) -> str:
        return self.manifest.description

    @property
    def rules(self) -> list[Rule]:
        return self.manifest.rules

    @property
    def splits(self) -> SplitSizes:
        return self.manifest.splits

    @property
    def actions(self) -> ActionGrammar | None:
        return self.manifest.actions

    @property
    def single_turn(self) -> bool:
        return self.manifest.dataset is not None

    @cached_property
    def env_class(self) -> type[TextEnv]:
        if self.manifest.dataset is not None:
            return env_class_for(self.name, self.manifest.dataset, self.folder, metric=self.metric_fn)
        if self.env is not None:
            return self.env
        return self.module.Env

    @property
    def families(self) -> Sequence[dict[str, Any]]:
        """The instance families: instance i is built from ``families[i % len(families)]``."""
        if self.instance_families is not None:
            return self.instance_families
        return next(getattr(self.module, name) for name in _FAMILY_NAMES if hasattr(self.module, name))

    @property
    def oracle(self) -> Callable[[TextEnv], str] | None:
        if self.manifest.dataset is not None:
            # The reference answer, in the format the bundled prompts ask for.
            return lambda env: f"Answer: {env.instance.config['target']}"
        return self.oracle_fn or getattr(self.module, "oracle", None)

    @cached_property
    def examples(self) -> dict[Split, list[dict[str, Any]]]:
        """A dataset task's examples, dealt to distinct splits (see `agentopt.tasks.dataset`)."""
        spec = self.manifest.dataset
        if spec is None:
            raise UserError(f"{self.name} is not a dataset task")
        generator = self.generator_fn
        if generator is None and spec.generator:
            generator = getattr(self.module, spec.generator, None)
        sizes = self.manifest.splits.model_dump()
        return build_examples(spec, sizes, folder=self.folder, generator=generator, rows=self.rows,
                              labels=self.row_labels)

    @cached_property
    def initial_prompt(self) -> str:
        if self.prompt_text is not None:
            return self.prompt_text.strip()
        if self.folder is None:
            raise UserError(f"task {self.name} has no initial prompt")
        return read_text(self.folder / "prompt.md", f"{self.name}'s prompt").strip()

    def instances(self, split: Split, n: int | None = None) -> list[Instance]:
        """The split's instances; the same on every machine (seeds are derived from names)."""
        if split not in SPLIT_NAMES:
            raise UserError(f"unknown split {split!r} (use train, validation or test)")
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
            config=dict(self.families[index % len(self.families)]),
        )

    def make_env(self, instance: Instance) -> TextEnv:
        return self.env_class(instance)


SPLIT_NAMES = ("train", "validation", "test")


def _find_folder(name: str, dirs: list[Path]) -> Path | None:
    wanted = name.lower()
    for root in dirs:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name.lower() == wanted and (child / "task.toml").is_file():
                return child
    return None


# Where a task.py keeps its instance families: FAMILIES, or CONFIGS, the name they had before
# (task folders written then still load); FAMILIES wins where a task.py has both.
_FAMILY_NAMES = ("FAMILIES", "CONFIGS")


def _import_task_module(
    folder: Path, required: tuple[str | tuple[str, ...], ...] = ("Env", _FAMILY_NAMES)
) -> ModuleType:
    """``task.py``, imported as the ``task`` module of a package made of the folder, so the
    folder's modules can import each other (``from .grid import Grid``, ``from . import data``).
    Each of ``required`` is a name the module must define, or a tuple of names one of which it
    must define (the first is the one to use)."""
    package = import_folder_as_package(folder)
    module = import_submodule(package, "task", folder / "task.py")
    for attr in required:
        names = (attr,) if isinstance(attr, str) else attr
        if not any(hasattr(module, name) for name in names):
            raise UserError(f"{folder / 'task.py'} must define {names[0]}")
    return module


_CACHE: dict[Path, Task] = {}


def load_task_folder(folder: Path) -> Task:
    folder = folder.resolve()
    if folder in _CACHE:
        return _CACHE[folder]
    manifest_text = read_text(folder / "task.toml", "task manifest")
    try:
        manifest = TaskManifest.model_validate(tomllib.loads(manifest_text))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"invalid {folder / 'task.toml'}: {exc}") from exc
    except ValidationError as exc:
        raise UserError(f"invalid {folder / 'task.toml'}: {validation_message(TaskManifest, exc)}") from None
    if manifest.name.lower() != folder.name.lower():
        # A folder is found by its name and listed by its task's: two names for one task would
        # list it twice, and let a folder stand in for another task's name.
        raise UserError(f"task folder {folder} holds the task {manifest.name!r} (task.toml's name): "
                        "rename one, so the folder is named after its task")
    spec = manifest.dataset
    if spec is not None and (spec.path is None) == (spec.generator is None):
        raise UserError(f"invalid {folder / 'task.toml'}: dataset: give exactly one of path or generator")
    if spec is None:
        module: ModuleType | None = _import_task_module(folder)
    elif spec.generator:
        module = _import_task_module(folder, required=(spec.generator,))
    else:
        module = None  # a dataset from a file needs no code
    task = Task(manifest=manifest, folder=folder, module=module, source=str(folder))
    if spec is not None:
        # Binds (and so loads) the metric now: a misnamed one is refused when the task loads,
        # before a command makes its run folder, not at the first answer it scores.
        task.env_class  # noqa: B018
    _CACHE[folder] = task
    return task


def load_task(name: str | Any, tasks_dirs: Iterable[str | Path] = ()) -> Any:
    """A task, from (first match wins):

    1. a task object (anything with `TaskProtocol`'s members), returned as it is;
    2. the path of a task folder;
    3. ``module:attribute``, a task object (or a function returning one) in an importable module;
    4. a name (case-insensitive) registered in code (`agentopt.register_task`; a built-in
       task's name only with ``replace=True``);
    5. a folder of that name in ``tasks_dirs`` (``--tasks-dir``), then ``AGENTOPT_TASKS_PATH``
       (such a folder may stand in for a built-in task: ``agentopt tasks`` says which it hides);
    6. the built-in suite;
    7. a task an installed package declares (entry-point group ``agentopt.tasks``); a plugin's
       task named like a built-in one is hidden by it, as a plugin optimiser is.
    """
    if is_task(name):
        return name
    if not isinstance(name, str) or not name:
        raise UserError(f"a task is a name, a folder or a task object (got {type(name).__name__})")
    tasks_dirs = list(tasks_dirs)
    user_dirs = search_path(tasks_dirs)[:-1]
    as_path = Path(name)
    if (as_path / "task.toml").is_file():
        return load_task_folder(as_path)
    if _IMPORT_SPEC.match(name):
        return _import_task_object(name)
    for lookup in (
        lambda: registry.from_registry(name),
        lambda: _folder_task(name, user_dirs),
        lambda: _folder_task(name, [builtin_data_dir("tasks")]),
        lambda: registry.from_entry_point(name),
    ):
        task = lookup()
        if task is not None:
            return task
    if as_path.exists() or os.sep in name or name.endswith(".toml"):
        raise UserError(f"{name} is not a task folder (a task folder holds task.toml)")
    known = ", ".join(sorted({entry.key for entry in _candidates(tasks_dirs)})) or "none"
    raise UserError(f"unknown task {name!r} (known: {known}; a task made in code is found by name "
                    "once agentopt.register_task has registered it in this process)")


def builtin_task_names() -> set[str]:
    """The built-in suite's task names (lower case): names no plugin may take, and code only
    with ``register_task(..., replace=True)``."""
    return {child.name.lower() for child in _task_folders(builtin_data_dir("tasks"))}


# package.module:attribute (a Windows drive letter "C:" is one letter, so never matches).
_IMPORT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _import_task_object(spec: str) -> Any:
    module_name, attribute = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not _is_part_of(module_name, exc.name):
            raise UserError(f"{_user_frame(exc, module_name)}: the task {spec!r}: {one_line(exc)}") from None
        raise UserError(f"cannot import {module_name!r} for the task {spec!r}: {exc}") from None
    except SyntaxError as exc:
        raise UserError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg} (the task {spec!r})") from None
    except Exception as exc:  # the user's module failed as it ran: where, in one line
        raise UserError(f"{_user_frame(exc, module_name)}: the task {spec!r}: {one_line(exc)}") from None
    held = getattr(module, attribute, None)
    if held is None:
        raise UserError(f"{module_name} has no {attribute!r} (the task {spec!r})")
    return registry.materialise(held, None, f"the task {spec!r}")


def _is_part_of(module_name: str, missing: str) -> bool:
    """Whether ``missing`` is ``module_name`` or one of its parent packages (so the module asked
    for is what is missing, not something its code imports)."""
    return module_name == missing or module_name.startswith(missing + ".")


def _user_frame(exc: BaseException, module_name: str) -> str:
    """file:line where the user's module failed: the innermost frame in its folder, else the
    innermost frame outside Python's import machinery, else the module's name."""
    spec = None
    parent = module_name.rpartition(".")[0]
    if not parent or parent in sys.modules:  # else finding it would run the failing parent again
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(module_name)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    frames = [f for f in frames if not f.filename.startswith(str(_PACKAGE_DIR))]
    origin = getattr(spec, "origin", None)
    if origin and origin not in ("built-in", "frozen"):
        folder = str(Path(origin).resolve().parent)
        mine = [f for f in frames if str(Path(f.filename).resolve()).startswith(folder)]
        frames = mine or frames
        if not frames:
            return origin
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else module_name


def _folder_task(name: str, dirs: list[Path]) -> Task | None:
    folder = _find_folder(name, dirs)
    return None if folder is None else load_task_folder(folder)


def list_tasks(tasks_dirs: Iterable[str | Path] = (), *, skip_broken: bool = False) -> list[Any]:
    """Every task that `load_task` can find by name, in its order; an earlier source shadows a
    later one of the same name. A task that fails to load raises, or with ``skip_broken`` is
    left out; `task_listing` has every name with its source and, for a broken one, its error."""
    tasks = []
    for entry in task_listing(tasks_dirs):
        if entry.error is not None and not skip_broken:
            raise UserError(entry.error)
        if entry.task is not None:
            tasks.append(entry.task)
    return tasks


@dataclass
class ListedTask:
    """One name of the listing: the task its first source gives (``task``), or why that source
    failed (``error``), and the later sources of the same name it hides (``hides``)."""

    name: str
    source: str  # "built-in", "registered in code", a folder, or the entry point and its package
    kind: str  # built-in, code, folder or plugin
    task: Any | None = None
    error: str | None = None
    hides: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    key: str  # the lower-case name
    source: str  # where, for a listing
    kind: str
    make: Callable[[], Any]
    path: Path | None = None  # a folder's resolved path: the same folder twice is one source


def _candidates(tasks_dirs: Iterable[str | Path]) -> list[_Candidate]:
    """Every (name, source) pair, in `load_task`'s order, nothing loaded."""
    found = [_Candidate(key, "registered in code", "code", lambda key=key: registry.from_registry(key))
             for key in registry.registered_names()]
    dirs = search_path(tasks_dirs)
    for root in dirs[:-1]:
        found += [_Candidate(child.name.lower(), str(child), "folder",
                             lambda child=child: load_task_folder(child),
                             child.resolve()) for child in _task_folders(root)]
    found += [_Candidate(child.name.lower(), "built-in", "built-in",
                         lambda child=child: load_task_folder(child),
                         child.resolve()) for child in _task_folders(dirs[-1])]
    found += [_Candidate(key, registry.entry_point_source(key), "plugin",
                         lambda key=key: registry.from_entry_point(key))
              for key in registry.entry_point_names()]
    return found


def task_listing(tasks_dirs: Iterable[str | Path] = ()) -> list[ListedTask]:
    """Every task name `load_task` can find, once, with the source that wins it (`load_task`'s
    order) and the sources it hides. A source that fails to load is listed with its error, and
    the rest are listed all the same: one broken plugin or folder never hides the others."""
    listed: dict[str, ListedTask] = {}
    paths: dict[str, Path | None] = {}
    for candidate in _candidates(tasks_dirs):
        held = listed.get(candidate.key)
        if held is not None:
            if candidate.path is None or candidate.path != paths[candidate.key]:
                held.hides.append(candidate.source)
            continue
        entry = ListedTask(name=candidate.key, source=candidate.source, kind=candidate.kind)
        try:
            entry.task = candidate.make()
            entry.name = entry.task.name
        except UserError as exc:
            entry.error = str(exc)
        except Exception as exc:  # a listing never stops at one bad source
            entry.error = " ".join(f"{candidate.source}: {type(exc).__name__}: {exc}".split())
        listed[candidate.key] = entry
        paths[candidate.key] = candidate.path
    return list(listed.values())


def _task_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [child for child in sorted(root.iterdir()) if (child / "task.toml").is_file()]
