"""A run directory: config, results appended as they arrive, a summary at the end.

Files are JSON / JSONL so they can be read by people, ``jq`` and pandas alike. Everything
written passes through `scrub`, so a key that slipped into a config never reaches disk.

One process at a time: `lock` takes an exclusive ``flock`` on ``run.lock`` in the folder, held
until `unlock` or the process ends. The kernel drops it when the holder dies, SIGKILL included,
so a killed run can be resumed at once while a second live process on the same folder (a
``--resume`` started beside the run) is refused instead of paying for the same calls again.

JSONL appends cut a torn last line (a writer killed mid-line) before their first write, so the
file stays readable by ``jq`` and pandas, and an append given a ``key`` is made once: a resumed
run that plays an interrupted step again does not write its records twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from agentopt.errors import UserError
from agentopt.files import check_writable_dir, describe_os_error
from agentopt.lm.secrets import scrub

LOCK_FILE = "run.lock"


class RunDir:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            _mkdir(self.path, exist_ok=True)
        elif not self.path.is_dir():
            raise UserError(f"run directory not found: {self.path}")
        self._lock = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._keys: dict[str, set[str]] = {}
        self._repaired: set[str] = set()  # files whose torn tail this process has cut

    @classmethod
    def new(cls, root: str | Path, name: str) -> RunDir:
        """A fresh folder ``ROOT/<time>-NAME[-k]``; made with an exclusive mkdir, so two
        processes starting in the same second never share one."""
        check_writable_dir(root, "runs folder")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        suffix = 1
        while True:
            path = Path(root) / (f"{stamp}-{name}" if suffix == 1 else f"{stamp}-{name}-{suffix}")
            if _mkdir(path, exist_ok=False):
                return cls(path)
            suffix += 1

    # --- one process at a time -------------------------------------------------------------
    def lock(self) -> RunDir:
        """Take the folder for this process, or raise a UserError naming the process that holds it."""
        if self._lock_file is not None:
            return self
        target = self.path / LOCK_FILE
        try:
            handle = target.open("a+b")
        except OSError as exc:
            raise UserError(f"cannot lock {self.path}: {describe_os_error(exc)}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().decode("ascii", "replace").strip() or "another process"
            handle.close()
            raise UserError(f"{self.path} is in use by process {holder}: wait for it to finish "
                            "(or stop it), then --resume") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()).encode())
        handle.flush()
        self._lock_file = handle
        return self

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    # --- writing -----------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> Path:
        target = self.path / name
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(scrub(_plain(data)), indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(target)  # atomic: a reader never sees half a file
        return target

    def append_jsonl(self, name: str, record: Any, *, key: str | None = None) -> bool:
        """Append one record as a line; with a ``key``, only if no line of the file has that
        key yet (it is stored in the record as ``"key"``). Returns whether it was written."""
        data = scrub(_plain(record))
        if key is not None:
            data = {"key": key, **data}
        line = (json.dumps(data, default=str) + "\n").encode("utf-8")
        with self._lock:
            if key is not None:
                keys = self._known_keys(name)
                if key in keys:
                    return False
                keys.add(key)
            if name not in self._repaired:
                _cut_torn_tail(self.path / name)  # the run dir is locked: this process is its writer
                self._repaired.add(name)
            with (self.path / name).open("ab") as fh:
                fh.write(line)
                fh.flush()
        return True

    def _known_keys(self, name: str) -> set[str]:
        """The keys already in ``name`` (read once; this process is the only writer)."""
        if name not in self._keys:
            self._keys[name] = set()
            path = self.path / name
            if path.is_file():
                with path.open("rb") as fh:
                    for raw in fh:
                        try:
                            key = json.loads(raw).get("key")
                        except (ValueError, AttributeError):
                            continue  # a torn line from a killed writer holds no record
                        if isinstance(key, str):
                            self._keys[name].add(key)
        return self._keys[name]


def _cut_torn_tail(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline: it holds no whole record,
    and a record glued to it would be lost with it on reading."""
    if not path.is_file():
        return
    with path.open("r+b") as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return
        fh.seek(-1, 2)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        fh.truncate(fh.read().rfind(b"\n") + 1)


def _mkdir(path: Path, *, exist_ok: bool) -> bool:
    """Make ``path`` (and its parents); False when it existed and ``exist_ok`` is False."""
    check_writable_dir(path, "run directory")
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        if exist_ok:  # something that is not a folder is in the way
            raise UserError(f"run directory {path} is a file") from None
        return False
    except OSError as exc:
        raise UserError(f"cannot create run directory {path}: {describe_os_error(exc)}") from None
    return True


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    return data
