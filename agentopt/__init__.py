"""agentopt: make LLM agents better from feedback."""

from __future__ import annotations

from agentopt.lazy import lazy_exports

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
    "Rule": "agentopt.tasks.rules",
    "LMAgent": "agentopt.tasks.rollout",
    "run_episode": "agentopt.tasks.rollout",
    "arun_episode": "agentopt.tasks.rollout",
    "call_agent": "agentopt.tasks.rollout",
    "rollout": "agentopt.tasks.rollout",
    "evaluate": "agentopt.tasks.evaluate",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
