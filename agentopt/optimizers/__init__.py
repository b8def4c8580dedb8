"""Prompt optimisers (one module each; PROMST, a package) and the registry that maps a method
name to its class. Reflexion, registered here as a method, lives in `agentopt.verbal`.

`registry` holds the built-ins, ``register_optimizer`` for optimisers defined elsewhere, and the
``agentopt.optimizers`` entry-point group for plugins; see docs/your-own-optimizer.md.
"""

from __future__ import annotations

from agentopt.optimizers.registry import (
    _METHODS,  # noqa: F401 - tests patch the built-ins here
    ENTRY_POINT_GROUP,
    METHOD_NAMES,
    MethodSource,
    Optimizer,
    UnknownMethod,
    build_optimizer,
    method_class,
    method_names,
    method_sources,
    register_optimizer,
    unregister_optimizer,
)

__all__ = ["ENTRY_POINT_GROUP", "METHOD_NAMES", "MethodSource", "Optimizer", "UnknownMethod",
           "build_optimizer", "method_class", "method_names", "method_sources", "register_optimizer",
           "unregister_optimizer"]
