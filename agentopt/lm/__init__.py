"""Talking to models: one interface over litellm endpoints, the embedded model and scripts.

Attributes are imported on first use, so a module that needs one constant of a backend (the
embedded model's name, for `RunConfig`'s default) does not load the client and litellm.
"""

from __future__ import annotations

from agentopt.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "DEFAULT_MODEL": "agentopt.lm.client",
    "EMBEDDED_MODEL": "agentopt.lm.backends.embedded",
    "LM": "agentopt.lm.client",
    "Budget": "agentopt.lm.budget",
    "BudgetMeter": "agentopt.lm.budget",
    "CallJournal": "agentopt.lm.journal",
    "ResponseCache": "agentopt.lm.cache",
    "RetryPolicy": "agentopt.lm.retry",
    "register_script": "agentopt.lm.backends.scripted",
    "retry_policy": "agentopt.lm.retry",
})
