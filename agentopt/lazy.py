"""Package attributes imported on first use: ``import agentopt`` must not pay for litellm,
torch or transformers before a name that needs them is asked for."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) when ``name`` is
    first asked for, and the matching ``__all__``. In the package::

        __getattr__, __all__ = lazy_exports(__name__, {"LM": "agentopt.lm.client", ...})
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
