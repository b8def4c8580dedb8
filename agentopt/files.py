"""A user's files and folders, checked before anything is read or created.

Every path a person types (a prompt, a config, a data file, a runs root, an output folder,
``AGENTOPT_HOME``) goes through here, so a wrong one is one `UserError` line naming it rather
than a traceback from deep inside a run, and a check that fails has created nothing yet.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from agentopt.errors import UserError

# A text file with a NUL byte in its first block is binary (a model file, an image, a zip).
_SNIFF_BYTES = 8192


def read_text(path: str | Path, what: str, *, allow_empty: bool = False) -> str:
    """The UTF-8 text of a user's file; a UserError naming ``what`` for a missing file, a
    folder, an unreadable, binary or non-UTF-8 file, and (unless ``allow_empty``) an empty one."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise UserError(f"{what} {path} is a binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{what} {path} is not UTF-8 text (line {line})") from None
    if not allow_empty and not text.strip():
        raise UserError(f"{what} {path} is empty")
    return text


def check_writable_dir(path: str | Path, what: str) -> Path:
    """Check that ``path`` is a folder we can write in, or can be made one; create nothing.

    The nearest part of the path that exists decides: it must be a folder (not a file a
    folder would have to go under) and writable."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise UserError(f"{what} {path}: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"would be under {existing}, which is a file"
        raise UserError(f"{what} {path} {where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} is not writable)"
        raise UserError(f"{what} {path} is not writable{where}")
    return path


def make_dir(path: str | Path, what: str) -> Path:
    """``mkdir -p`` with a one-line UserError when the folder cannot be made."""
    path = check_writable_dir(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {path}: {describe_os_error(exc)}") from None
    return path


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OS error, e.g. 'permission denied' or 'no space left on device'."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied" if exc.errno != errno.EROFS else "read-only file system"
    return (exc.strerror or str(exc)).lower()
