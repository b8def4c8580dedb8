"""Prompt optimisers, one module each; `method_class` maps a method name to its class."""

from __future__ import annotations

import importlib
from typing import Any

from agentopt.errors import UserError

# name -> "module:Class"; imported on demand, since some optimisers pull in torch.
_METHODS = {
    "human": "agentopt.optimizers.human:Human",
    "promst": "agentopt.optimizers.promst:Promst",
    "ape": "agentopt.optimizers.ape:Ape",
    "apo": "agentopt.optimizers.apo:Apo",
    "opro": "agentopt.optimizers.opro:Opro",
    "apohf": "agentopt.optimizers.apohf:Apohf",
    "reflexion": "agentopt.optimizers.reflexion:Reflexion",
}
METHOD_NAMES = tuple(_METHODS)


def method_class(name: str) -> Any:
    if name not in _METHODS:
        raise UserError(f"unknown method {name!r} (choose from {', '.join(METHOD_NAMES)})")
    module, cls = _METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
