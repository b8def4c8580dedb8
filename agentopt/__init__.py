"""agentopt: make LLM agents better from feedback."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Imported on first use, so `import agentopt` stays fast (litellm and torch are heavy).
_EXPORTS = {
    "LM": "agentopt.lm.client",
    "Budget": "agentopt.lm.budget",
    "optimize": "agentopt.api",
    "register_optimizer": "agentopt.optimizers.registry",
    "Optimizer": "agentopt.optimizers.registry",
    "bench": "agentopt.api",
    "load_task": "agentopt.tasks.loader",
    "list_tasks": "agentopt.tasks.loader",
    "register_task": "agentopt.tasks.registry",
    "dataset_task": "agentopt.tasks.define",
    "env_task": "agentopt.tasks.define",
    "check_task": "agentopt.tasks.check",
    "TaskProtocol": "agentopt.tasks.protocol",
    "TextEnv": "agentopt.tasks.env",
    "Outcome": "agentopt.tasks.env",
    "Rule": "agentopt.feedback.rules",
    "LMAgent": "agentopt.tasks.rollout",
    "run_episode": "agentopt.tasks.rollout",
    "arun_episode": "agentopt.tasks.rollout",
    "call_agent": "agentopt.tasks.rollout",
    "rollout": "agentopt.tasks.rollout",
    "evaluate": "agentopt.tasks.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agentopt' has no attribute {name!r}")
