"""Local DPO / IPO / C3PO fine-tuning of a causal LM with LoRA (transformers + peft).

    from agentopt.finetune import FinetuneConfig, finetune, read_jsonl
    metrics = finetune(read_jsonl("pairs.jsonl"), "runs/ft", FinetuneConfig(method="dpo"))
    LM("hf/runs/ft/merged")  # the tuned model, as an LM like any other

Attributes are imported on first use so that ``import agentopt.finetune`` stays cheap.
"""

from __future__ import annotations

from agentopt.lazy import lazy_exports

_EXPORTS = {
    "FinetuneConfig": "agentopt.finetune.config",
    "LoraSettings": "agentopt.finetune.config",
    "PreferenceRow": "agentopt.finetune.data",
    "read_jsonl": "agentopt.finetune.data",
    "read_ledger": "agentopt.finetune.data",
    "from_preferences": "agentopt.finetune.data",
    "finetune": "agentopt.finetune.run",
    "PreferenceTrainer": "agentopt.finetune.trainer",
    "HFBackend": "agentopt.finetune.hf_backend",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
