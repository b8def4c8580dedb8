"""Keeps API keys out of anything we write.

Keys are only ever read from the environment (the variables litellm reads). Before an error
message or a config reaches a journal, log or report it passes through `redact`, which replaces
the value of every key-like environment variable with ``***``.
"""

from __future__ import annotations

import os
import re
from typing import Any

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
# Shapes of common provider keys, caught even when the variable name gave no hint.
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{12,}|sk-ant-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,})")
# An endpoint that echoes the request's headers back in its error shows the key after these.
_CREDENTIALS = (
    # user:password@ in a URL (an --api-base with basic auth): kept out of config.json and logs,
    # so a resumed run must be given the endpoint again with --api-base.
    re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s:@]+:)[^/\s@]+(?=@)"),
    # "Basic" only in a header: as a word on its own it starts prose ("basic arithmetic"), and
    # this runs over prompts and replies too.
    re.compile(r"(?i)\b(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer|basic|token)?)(\s*)[^\s'\",}]{8,}"),
    re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)\b((?:x-)?api[-_]?key|access[-_]?token)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{8,}"),
)
# A provider's prefix ("sk-", "sk-proj-", "hf_"): an endpoint may echo the key without it.
_KEY_PREFIX = re.compile(r"^(?:[A-Za-z]{1,8}[-_]){1,2}")
# Shorter values of secret-named variables are flags and names (TOKENIZERS_PARALLELISM=false),
# not keys: replacing them would blank common words everywhere.
MIN_SECRET_CHARS = 8


def secret_values() -> list[str]:
    """The values of key-like environment variables, and each one without its provider
    prefix, longest first."""
    values = set()
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= MIN_SECRET_CHARS:
            values.add(value)
            body = _KEY_PREFIX.sub("", value)
            if len(body) >= MIN_SECRET_CHARS:
                values.add(body)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, "***")
    for pattern in _CREDENTIALS:
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _KEY_SHAPES.sub("***", text)


def scrub(obj: Any) -> Any:
    """Drop secret-named fields and redact strings in a JSON-like structure."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if not (isinstance(k, str) and _is_secret_field(k))}
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return redact(obj)
    return obj


def _is_secret_field(name: str) -> bool:
    return name.lower() in {"api_key", "apikey", "authorization", "password", "token", "secret"}
