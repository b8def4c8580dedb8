"""DPO (sigmoid), IPO and C3PO losses on sequence log-probabilities.

Definitions match TRL's DPOTrainer (checked by a test against TRL itself):
- sigmoid (Rafailov et al. 2023): ``-log sigmoid(beta * (dc - dr))`` with ``dc = logp(chosen) -
  logp_ref(chosen)`` summed over response tokens, ``dr`` the same for rejected.
- IPO (Azar et al. 2023): ``((dc / |chosen| - dr / |rejected|) - 1 / (2 beta))^2``, i.e. the
  log-ratios are averaged per response token before the squared loss (TRL's normalisation, which
  the IPO authors confirmed; ``beta`` plays the paper's tau).
- C3PO (Stephan et al. 2024, Eq. 5): ``L_DPO(in-scope) + out_weight * NLL(out-of-scope originals)
  + near_weight * NLL(near-scope originals)``; NLL is the per-token mean over the group's response
  tokens (the HF ``.loss`` the C3PO code used).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PairLosses:
    loss: torch.Tensor  # per pair
    chosen_rewards: torch.Tensor  # beta * (logp - logp_ref), detached
    rejected_rewards: torch.Tensor


def pair_losses(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    kind: str = "sigmoid",
    chosen_len: torch.Tensor | None = None,
    rejected_len: torch.Tensor | None = None,
) -> PairLosses:
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if kind == "sigmoid":
        loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    elif kind == "ipo":
        if chosen_len is None or rejected_len is None:
            raise ValueError("IPO needs the response lengths")
        delta = chosen_ratio / chosen_len.clamp(min=1) - rejected_ratio / rejected_len.clamp(min=1)
        loss = (delta - 1.0 / (2.0 * beta)) ** 2
    else:
        raise ValueError(f"unknown preference loss {kind!r}")
    return PairLosses(loss, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach())


def token_mean_nll(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the masked tokens of a group of sequences."""
    return -(token_logps * mask).sum() / mask.sum().clamp(min=1)


def c3po_loss(
    dpo: torch.Tensor,
    nll_out: torch.Tensor | None,
    nll_near: torch.Tensor | None,
    out_weight: float,
    near_weight: float,
) -> torch.Tensor:
    """C3PO's combined objective; a missing keep group simply contributes nothing."""
    loss = dpo
    if nll_out is not None:
        loss = loss + out_weight * nll_out
    if nll_near is not None:
        loss = loss + near_weight * nll_near
    return loss
