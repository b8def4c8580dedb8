"""Helpers on prompt text that several optimisers use: reading a prompt out of an optimizer
model's reply, and telling new candidates from ones already proposed."""

from __future__ import annotations

import re

from agentopt.types import Prompt

# A shorter reply from an optimizer model is a fragment, a refusal or a bare answer, not a prompt.
MIN_PROMPT_CHARS = 20

_PREAMBLE = re.compile(
    r"^\s*(here is|here's|sure|new prompt|optimized prompt|improved prompt|the new prompt)[^\n]*:\s*\n",
    re.IGNORECASE,
)


def clean_prompt(text: str) -> str:
    """Strip what chat models wrap around a prompt: preambles, code fences, quotes.

    Until nothing changes, because small models nest them: a fence around a preamble that opens
    a second fence, or a fence left open where the reply was cut off at its token limit."""
    text = text.strip()
    while (unwrapped := _unwrap_once(text)) != text:
        text = unwrapped
    return text


def _unwrap_once(text: str) -> str:
    text = _PREAMBLE.sub("", text, count=1).strip()
    fence = re.fullmatch(r"```[a-zA-Z]*\n(.*?)\n?```", text, flags=re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    elif opened := re.fullmatch(r"```[a-zA-Z]*\n(.*)", text, flags=re.DOTALL):
        text = opened.group(1).strip()  # never closed: the reply ran out of tokens
    # Small models echo the tags the meta-prompt put around the prompt (<prompt>, APOHF's
    # <instruction>) around their answer, closed or not.
    wrapped = re.fullmatch(r"<(prompt|instruction)>\s*(.*?)\s*(?:</\1>)?", text, flags=re.DOTALL)
    if wrapped:
        text = wrapped.group(2).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def tagged(text: str, tag: str) -> list[str]:
    """The stripped contents of every ``<tag>...</tag>`` in ``text`` (an unclosed last one too)."""
    found = re.findall(rf"<{tag}>(.*?)(?:</{tag}>|$)", text, flags=re.DOTALL | re.IGNORECASE)
    return [f.strip() for f in found if f.strip()]


def dedupe_key(text: str) -> str:
    """Prompts that differ only in whitespace or case count as the same candidate."""
    return " ".join(text.split()).casefold()


def unique_new(prompts: list[Prompt], seen: set[str]) -> list[Prompt]:
    """The prompts not seen before (by `dedupe_key`), in order; adds them to ``seen``."""
    new = []
    for prompt in prompts:
        key = dedupe_key(prompt.text)
        if key not in seen:
            seen.add(key)
            new.append(prompt)
    return new
