"""The "your own ..." pages in docs/ are runnable: every ```python block of a page is executed,
in order and in one namespace, in a fresh folder, as a reader pasting them would run them.

A page's examples use scripted models (no server, no weights), so they run in the unit suite.
A block may end with ``assert`` lines: they are the page's promises, checked here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from agentopt.optimizers import registry as optimizer_registry
from agentopt.tasks import registry as task_registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(DOCS.glob("your-own-*.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def registered_methods() -> set[str]:
    return {source.name for source in optimizer_registry.method_sources() if source.origin == "code"}


def python_blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


def test_every_page_has_a_runnable_example():
    assert PAGES, "docs/your-own-*.md pages are missing"
    for page in PAGES:
        assert python_blocks(page), f"{page.name} has no python example"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_the_page_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    # A page may write its own package or task folder next to it and import it.
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    tasks_before, methods_before = set(task_registry.registered_names()), registered_methods()
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for number, block in enumerate(python_blocks(page), 1):
            code = compile(block, f"{page.name} (python block {number})", "exec")
            exec(code, namespace)  # noqa: S102 - the page is ours, run as a reader would
    finally:
        # What a page registers is its own: later tests see the registries as they were.
        for name in set(task_registry.registered_names()) - tasks_before:
            task_registry.unregister_task(name)
        for name in registered_methods() - methods_before:
            optimizer_registry.unregister_optimizer(name)
        # Modules a page wrote into its folder must not leak into the next page's run.
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if module is not None and str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
                del sys.modules[name]
