"""Talking to models: one interface over litellm endpoints, the embedded model and scripts."""

from agentopt.lm.backends.embedded import EMBEDDED_MODEL
from agentopt.lm.backends.scripted import register as register_script
from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.lm.cache import ResponseCache
from agentopt.lm.client import DEFAULT_MODEL, LM
from agentopt.lm.journal import CallJournal
from agentopt.lm.retry import RetryPolicy, retry_policy

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODEL",
    "LM",
    "Budget",
    "BudgetMeter",
    "CallJournal",
    "ResponseCache",
    "RetryPolicy",
    "register_script",
    "retry_policy",
]
