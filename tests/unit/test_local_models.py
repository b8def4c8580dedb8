"""Local GGUF models: joining chunks with a verified sha256, any user file, discovery, listing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from agentopt.errors import UserError
from agentopt.lm import local_models
from agentopt.lm.local_models import discover_gguf_files, join_chunks, resolve, verified


def _chunks(tmp_path: Path, parts: list[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(parts, 1):
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_chunks_are_joined_in_order_and_verified(tmp_path):
    parts = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
    whole = b"".join(parts)
    digest = hashlib.sha256(whole).hexdigest()
    dest = tmp_path / "models" / "m.gguf"
    join_chunks(_chunks(tmp_path, parts), dest, sha256=digest, size=len(whole))
    assert dest.read_bytes() == whole
    assert verified(dest, digest, len(whole))
    assert not list(dest.parent.glob(".*partial"))


def test_a_chunk_set_that_does_not_match_the_pinned_hash_is_refused(tmp_path):
    parts = [b"GGUF" + b"a" * 100, b"b" * 100]
    whole = b"".join(parts)
    dest = tmp_path / "models" / "m.gguf"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(UserError, match="refusing to use them"):
        join_chunks(_chunks(tmp_path, parts), dest, sha256=wrong, size=len(whole))
    assert not dest.exists() and not list(dest.parent.glob(".*partial"))  # nothing half-written


def test_a_joined_file_changed_afterwards_is_refused_before_loading(tmp_path):
    parts = [b"GGUF" + b"x" * 64]
    digest = hashlib.sha256(parts[0]).hexdigest()
    dest = tmp_path / "m.gguf"
    join_chunks(_chunks(tmp_path, parts), dest, sha256=digest, size=len(parts[0]))
    dest.write_bytes(b"GGUF" + b"y" * 64)  # same size, other bytes, newer mtime
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 10_000))
    with pytest.raises(UserError, match="refusing to load"):
        verified(dest, digest, len(parts[0]))


def test_the_demo_model_is_joined_from_its_installed_chunks(monkeypatch, tmp_path):
    """With the packages missing, the error says how to install them."""
    monkeypatch.setattr(local_models, "_package_dir", lambda name: None)
    with pytest.raises(UserError, match="require-hashes"):
        resolve("local/qwen2.5-coder-0.5b")


def test_any_gguf_file_is_a_model(tmp_path):
    gguf = tmp_path / "my model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 16)
    path, n_ctx = resolve(f"local/{gguf}")
    assert path == gguf and n_ctx > 0
    blob = tmp_path / "sha256-abc"  # an Ollama blob has no .gguf suffix
    blob.write_bytes(b"GGUF" + b"\0" * 16)
    assert resolve(f"local/{blob}")[0] == blob
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(UserError, match="not a GGUF file"):
        resolve(f"local/{text}")
    with pytest.raises(UserError, match="no GGUF file at"):
        resolve(f"local/{tmp_path}/missing.gguf")
    with pytest.raises(UserError, match="unknown local model 'local/gpt5'"):
        resolve("local/gpt5")


def test_gguf_files_are_found_where_other_tools_keep_them(tmp_path):
    (tmp_path / ".lmstudio" / "models" / "org" / "repo").mkdir(parents=True)
    lm_studio = tmp_path / ".lmstudio" / "models" / "org" / "repo" / "m-Q4.gguf"
    lm_studio.write_bytes(b"GGUF")
    ollama = tmp_path / ".ollama" / "models"
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "qwen").mkdir(parents=True)
    (ollama / "blobs").mkdir()
    (ollama / "blobs" / "sha256-123").write_bytes(b"GGUF")
    manifest = {"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:123"},
                           {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:9"}]}
    manifests = ollama / "manifests" / "registry.ollama.ai" / "library" / "qwen"
    (manifests / "latest").write_text(json.dumps(manifest))
    found = dict((str(p), where) for where, p in discover_gguf_files(tmp_path))
    assert found == {str(lm_studio): "LM Studio", str(ollama / "blobs" / "sha256-123"): "Ollama qwen:latest"}


def test_the_in_process_backend_refuses_tools_instead_of_ignoring_them(tmp_path):
    from agentopt.lm.backends.embedded import EmbeddedBackend
    from agentopt.lm.request import ChatRequest

    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    request = ChatRequest.build("local/x.gguf", [{"role": "user", "content": "2+2?"}], tools=[tool])
    # Refused before any weights are looked for: the file need not exist.
    with pytest.raises(UserError, match="cannot call tools"):
        EmbeddedBackend(str(tmp_path / "x.gguf")).complete(request, {})
