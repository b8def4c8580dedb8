"""Per-token log-probabilities of the response tokens, without the (batch, seq, vocab) logits.

A causal LM's forward materialises logits for every position: at 49k vocabulary that tensor and
its log-softmax dominate memory. DPO only needs log p(target) at response positions, so we run the
backbone, keep the hidden states of those positions, and push them through the LM head in chunks.
The autograd function saves only the hidden states and one log-sum-exp per token; its backward
recomputes each chunk's logits. Prompt positions never reach the LM head at all.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _ChunkedTargetLogProb(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 softmax even under bf16
        out = torch.empty(hidden.shape[0], dtype=acc, device=hidden.device)
        lse = torch.empty_like(out)
        for s in range(0, hidden.shape[0], chunk):
            logits = (hidden[s : s + chunk] @ weight.T).to(acc)
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            out[s : s + chunk] = (
                logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
            )
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, targets, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=lse.dtype) if need_w else None
        rows = torch.arange(min(ctx.chunk, hidden.shape[0]), device=hidden.device)
        for s in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[s : s + ctx.chunk]
            g = grad_out[s : s + ctx.chunk]
            # d log p_t / d logits = onehot(t) - softmax(logits)
            dlogits = torch.exp((h @ weight.T).to(lse.dtype) - lse[s : s + ctx.chunk, None]).mul_(-g[:, None])
            dlogits[rows[: h.shape[0]], targets[s : s + ctx.chunk]] += g
            dlogits = dlogits.to(hidden.dtype)
            if grad_h is not None:
                grad_h[s : s + ctx.chunk] = dlogits @ weight
            if grad_w is not None:
                grad_w += (dlogits.T @ h).to(grad_w.dtype)
        return grad_h, (grad_w.to(weight.dtype) if grad_w is not None else None), None, None


def causal_lm_of(model: nn.Module) -> nn.Module:
    """The transformers CausalLM inside a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _supports_fused_head(lm: nn.Module) -> bool:
    # Models that scale or soft-cap their logits (Gemma, Granite...) take the plain logits path.
    cfg = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    scaled = any(
        getattr(cfg, k, None) not in (None, 1.0)
        for k in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")
    )
    head = lm.get_output_embeddings()
    return (
        not scaled and isinstance(head, nn.Linear) and head.bias is None and hasattr(lm, lm.base_model_prefix)
    )


def token_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    chunk: int = 1024,
) -> torch.Tensor:
    """(batch, seq-1) log p(token_{t+1} | prefix) at response positions, 0 elsewhere."""
    lm = causal_lm_of(model)
    target_mask = completion_mask[:, 1:].bool()
    targets = input_ids[:, 1:][target_mask]
    if _supports_fused_head(lm):
        backbone = getattr(lm, lm.base_model_prefix)
        hidden = backbone(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        picked = hidden[:, :-1][target_mask]
        weight = lm.get_output_embeddings().weight
        kind = hidden.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else picked.dtype
        with torch.autocast(kind, enabled=False):  # dtypes are set explicitly; softmax runs in fp32
            values = _ChunkedTargetLogProb.apply(picked.to(dtype), weight.to(dtype), targets, chunk)
    else:
        logits = lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
        values = torch.log_softmax(logits[target_mask].float(), dim=-1).gather(1, targets[:, None]).squeeze(1)
    out = torch.zeros(target_mask.shape, dtype=values.dtype, device=input_ids.device)
    # masked_scatter keeps the graph connected even if no position is a response token.
    return out.masked_scatter(target_mask, values)


def sequence_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-prob and response length of every sequence."""
    per_token = token_logps(model, input_ids, attention_mask, completion_mask, chunk)
    return per_token.sum(dim=1), completion_mask[:, 1:].sum(dim=1)
