"""Importing a user's Python code by its path: a task folder as a package, a metric's file.py."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from agentopt.errors import UserError, one_line


def import_file(path: Path, module_name: str, *, package_dir: Path | None = None) -> ModuleType:
    """Run ``path`` as the module ``module_name`` (as a package's ``__init__`` when
    ``package_dir`` is given, so its submodules are found there)."""
    locations = None if package_dir is None else [str(package_dir)]
    spec = importlib.util.spec_from_file_location(module_name, path, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} is not a loadable Python file")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as a normal import would be: dataclasses and pickling
    # look their module up in sys.modules.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def package_name(folder: Path) -> str:
    """A module name for a folder that is unique to its path and valid in an import."""
    folder = folder.resolve()
    safe = re.sub(r"\W", "_", folder.name.lower())
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    return f"agentopt_task_{safe}_{digest}"


def import_folder_as_package(folder: Path) -> ModuleType:
    """The folder as an importable package (its ``__init__.py`` run, if it has one), under a
    name of its own, so two task folders with a module of the same name never collide, and a
    module inside can import its siblings with relative imports."""
    folder = folder.resolve()
    name = package_name(folder)
    if name in sys.modules:
        return sys.modules[name]
    init = folder / "__init__.py"
    if init.is_file():
        with reported_as_user_error(init):
            return import_file(init, name, package_dir=folder)
    package = ModuleType(name, f"the task folder {folder}")
    package.__path__ = [str(folder)]
    package.__package__ = name
    package.__file__ = None
    sys.modules[name] = package
    return package


def import_submodule(package: ModuleType, name: str, path: Path) -> ModuleType:
    """``package.name``, imported the normal way (so it may use relative imports)."""
    if not path.is_file():
        raise UserError(f"{path} not found")
    with reported_as_user_error(path):
        return importlib.import_module(f"{package.__name__}.{name}")


@contextmanager
def reported_as_user_error(path: Path) -> Iterator[None]:
    """The user's code at ``path`` failed as it was imported: one line saying where and why."""
    try:
        yield
    except UserError:
        raise
    except SyntaxError as exc:
        raise UserError(f"{exc.filename or path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise UserError(f"{_where(exc, path)}: {one_line(exc)}") from None


def _where(exc: BaseException, path: Path) -> str:
    """file:line of the innermost frame in the user's folder, else the file imported."""
    folder = str(path.resolve().parent)
    where = str(path)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(folder):
            where = f"{frame.filename}:{frame.lineno}"
    return where

