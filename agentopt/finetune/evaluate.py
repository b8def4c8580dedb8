"""Before/after evaluation from log-likelihoods (no generation, no judge: cheap and deterministic).

- Pairs: *preference accuracy* is the share of pairs whose chosen response the model finds more
  likely than the rejected one (summed response log-prob), before (base = reference) and after
  (tuned). The *reward margin* is DPO's implicit reward gap ``beta * ((logp - logp_ref)(chosen) -
  (logp - logp_ref)(rejected))``; it is 0 before training by construction.
- C3PO: *in-scope adherence* is the preference accuracy on held-out in-scope pairs (does the model
  now prefer the feedback-revised answer?). *Out-of-scope change* is the mean absolute change of
  the per-token log-likelihood of the base model's own answer on held-out near- and out-of-scope
  prompts: 0 means the feedback did not leak there (C3PO's overgeneralisation, measured on the
  likelihood instead of with a GPT-4 judge).
"""

from __future__ import annotations

from typing import Any

import torch

from agentopt.finetune.data import Encoded
from agentopt.finetune.trainer import PairLogps, PreferenceTrainer


def pair_metrics(ref: PairLogps, policy: PairLogps, beta: float) -> dict[str, Any]:
    if len(ref.chosen) == 0:
        return {"n": 0}
    before = ref.chosen - ref.rejected
    after = policy.chosen - policy.rejected
    reward = beta * (after - before)
    return {
        "n": len(ref.chosen),
        "before": {
            "preference_accuracy": _share(before > 0),
            "logp_margin": before.mean().item(),
            "reward_margin": 0.0,
            "reward_accuracy": 0.0,
        },
        "after": {
            "preference_accuracy": _share(after > 0),
            "logp_margin": after.mean().item(),
            "reward_margin": reward.mean().item(),
            "reward_accuracy": _share(reward > 0),
        },
    }


def keep_metrics(trainer: PreferenceTrainer, keeps: list[Encoded]) -> dict[str, Any] | None:
    if not keeps:
        return None
    before = torch.tensor(trainer.keep_token_logps(keeps, reference=True))
    after = torch.tensor(trainer.keep_token_logps(keeps, reference=False))
    return {
        "n": len(keeps),
        "logp_change": (after - before).abs().mean().item(),
        "nll_before": -before.mean().item(),
        "nll_after": -after.mean().item(),
    }


def evaluate(
    trainer: PreferenceTrainer,
    pairs: list[Encoded],
    near: list[Encoded],
    out: list[Encoded],
    ref: PairLogps | None = None,
    c3po: bool = False,
) -> dict[str, Any]:
    """Metrics on one split. ``ref`` may be passed when the reference pass was already made."""
    ref = ref if ref is not None else trainer.reference_logps(pairs)
    policy = trainer.policy_logps(pairs)
    metrics: dict[str, Any] = {"pairs": pair_metrics(ref, policy, trainer.config.beta)}
    if c3po:
        pm = metrics["pairs"]
        metrics["c3po"] = {
            "in_scope_adherence": {
                "before": pm["before"]["preference_accuracy"],
                "after": pm["after"]["preference_accuracy"],
            }
            if pm["n"]
            else None,
            "near_scope": keep_metrics(trainer, near),
            "out_of_scope": keep_metrics(trainer, out),
        }
    return metrics


def _share(flags: torch.Tensor) -> float:
    return flags.float().mean().item() if flags.numel() else 0.0
