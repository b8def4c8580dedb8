"""The training loop: reference log-probs once, then LoRA updates with DPO / IPO / C3PO.

The batch order is a pure function of (seed, micro-batch index), and a checkpoint stores the
adapter, optimiser, scheduler, step and RNG state, so a resumed run replays exactly the steps the
uninterrupted run would have taken and ends on the same adapter.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentopt.errors import UserError
from agentopt.finetune.config import FinetuneConfig
from agentopt.finetune.data import Batch, Encoded, collate
from agentopt.finetune.logprobs import token_logps
from agentopt.finetune.losses import c3po_loss, pair_losses, token_mean_nll
from agentopt.finetune.model import load_trainable_state, trainable_state
from agentopt.types import content_hash


@dataclass
class StepLog:
    step: int
    loss: float
    dpo_loss: float
    nll_near: float | None
    nll_out: float | None
    reward_margin: float
    reward_accuracy: float
    lr: float
    tokens: int
    elapsed_s: float


@dataclass
class PairLogps:
    """Summed log-probs and lengths of each pair's chosen and rejected responses, under one model:
    the reference (`PreferenceTrainer.reference_logps`) or the policy (`policy_logps`)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_len: torch.Tensor
    rejected_len: torch.Tensor


@dataclass
class TrainResult:
    steps: int
    history: list[StepLog] = field(default_factory=list)
    train_tokens: int = 0
    train_s: float = 0.0
    ref_s: float = 0.0
    resumed_from: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / self.train_s if self.train_s > 0 else 0.0


def adapters_off(model: nn.Module) -> AbstractContextManager[Any]:
    """The reference policy: the base weights, i.e. the PEFT model with its adapters disabled."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) else nullcontext()


def lr_lambda(total: int, warmup: int, schedule: str) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else max(0.0, 1 - progress)

    return factor


def _cycled(n: int, start: int, count: int, seed: int) -> list[int]:
    """Items start..start+count of an endless stream of seeded permutations of range(n)."""
    out: list[int] = []
    perms: dict[int, torch.Tensor] = {}
    for k in range(start, start + count):
        cycle, pos = divmod(k, n)
        if cycle not in perms:
            perms[cycle] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + cycle))
        out.append(int(perms[cycle][pos]))
    return out


class PreferenceTrainer:
    """Trains the LoRA adapters of ``model`` (a PEFT model) on encoded rows.

    Args:
        config: hyperparameters.
        model: a PEFT-wrapped causal LM on ``device``; adapters off = the reference model.
        pad_id: padding token id.
        out_dir: where checkpoints go (``out_dir/checkpoints``); None disables them.
        on_step: called after each optimiser step (progress bars, logs).
        model_tag: names the base model, so cached reference log-probs and checkpoints are never
            reused for another one.
    """

    def __init__(
        self,
        config: FinetuneConfig,
        model: nn.Module,
        pad_id: int,
        device: torch.device,
        out_dir: Path | None = None,
        on_step: Callable[[StepLog, int], None] | None = None,
        model_tag: str = "",
    ) -> None:
        self.config = config
        self.model_tag = model_tag
        self.model = model
        self.pad_id = pad_id
        self.device = device
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_step = on_step
        self.autocast_dtype = next(model.parameters()).dtype if device.type == "cuda" else None
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # --- forward pieces ----------------------------------------------------------------
    def _autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(self.device.type, dtype=self.autocast_dtype)
        return nullcontext()

    def token_logps(self, batch: Batch) -> torch.Tensor:
        with self._autocast():
            return token_logps(
                self.model,
                batch.input_ids,
                batch.attention_mask,
                batch.completion_mask,
                self.config.logit_chunk,
            )

    def reference_logps(self, pairs: list[Encoded], batch_size: int | None = None) -> PairLogps:
        """Summed response log-probs of every pair under the reference model (adapters off)."""
        return self._pair_logps(pairs, adapters=False, batch_size=batch_size)

    def policy_logps(self, pairs: list[Encoded], batch_size: int | None = None) -> PairLogps:
        """Summed response log-probs of every pair under the policy being trained (adapters on)."""
        return self._pair_logps(pairs, adapters=True, batch_size=batch_size)

    @torch.no_grad()
    def _pair_logps(self, pairs: list[Encoded], *, adapters: bool, batch_size: int | None) -> PairLogps:
        was_training = self.model.training
        self.model.eval()
        size = batch_size or max(1, self.config.batch_size)
        parts: list[tuple[torch.Tensor, ...]] = []
        with nullcontext() if adapters else adapters_off(self.model):
            for s in range(0, len(pairs), size):
                batch = collate(pairs[s : s + size], pad_id=self.pad_id).to(self.device)
                per_token = self.token_logps(batch)
                seq, lens = per_token.sum(1).float().cpu(), batch.completion_mask[:, 1:].sum(1).cpu()
                n = batch.n_pairs
                parts.append((seq[:n], seq[n : 2 * n], lens[:n], lens[n : 2 * n]))
        self.model.train(was_training)
        if not parts:
            empty = torch.zeros(0)
            return PairLogps(empty, empty, empty, empty)
        return PairLogps(*(torch.cat([p[i] for p in parts]) for i in range(4)))

    def keep_token_logps(self, keeps: list[Encoded], reference: bool) -> list[float]:
        """Per-token mean log-likelihood of each keep example's response (for drift metrics)."""
        was_training = self.model.training
        self.model.eval()
        out: list[float] = []
        with torch.no_grad(), adapters_off(self.model) if reference else nullcontext():
            for s in range(0, len(keeps), self.config.batch_size):
                group = keeps[s : s + self.config.batch_size]
                batch = collate([], near=group, pad_id=self.pad_id).to(self.device)
                per_token = self.token_logps(batch).float()
                mask = batch.completion_mask[:, 1:]
                out += (per_token.sum(1) / mask.sum(1).clamp(min=1)).cpu().tolist()
        self.model.train(was_training)
        return out

    # --- schedule ------------------------------------------------------------------------
    def plan(self, n_pairs: int) -> tuple[int, int]:
        """(micro-batches per epoch, total optimiser steps)."""
        micro_per_epoch = math.ceil(n_pairs / self.config.batch_size)
        steps_per_epoch = max(1, math.ceil(micro_per_epoch / self.config.grad_accum))
        total = self.config.max_steps or self.config.epochs * steps_per_epoch
        return micro_per_epoch, total

    def _micro_batch(self, k: int, micro_per_epoch: int, n_pairs: int) -> list[int]:
        epoch, pos = divmod(k, micro_per_epoch)
        order = torch.randperm(
            n_pairs, generator=torch.Generator().manual_seed(self.config.seed * 1009 + epoch)
        )
        return order[pos * self.config.batch_size : (pos + 1) * self.config.batch_size].tolist()

    # --- training ------------------------------------------------------------------------
    def fit(
        self,
        pairs: list[Encoded],
        near: list[Encoded] = (),
        out: list[Encoded] = (),  # type: ignore[assignment]
        ref: PairLogps | None = None,
        resume: bool = False,
    ) -> TrainResult:
        cfg = self.config
        if not pairs:
            raise UserError("no preference pairs to train on")
        if cfg.method != "c3po":
            near, out = [], []
        fingerprint = self._fingerprint(pairs, near, out)
        t0 = time.perf_counter()
        if ref is None:
            ref = self._cached_reference(pairs, fingerprint)
        ref_s = time.perf_counter() - t0

        params = [p for p in self.model.parameters() if p.requires_grad]
        # Fused AdamW: one kernel for all adapter tensors instead of a loop over hundreds of them.
        fused = self.device.type in ("cpu", "cuda") and all(p.dtype.is_floating_point for p in params)
        optimizer = torch.optim.AdamW(
            params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused
        )
        micro_per_epoch, total = self.plan(len(pairs))
        warmup = int(round(cfg.warmup_ratio * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, warmup, cfg.schedule))
        result = TrainResult(steps=total, ref_s=ref_s)
        step = 0
        if resume:
            state = self._load_checkpoint(fingerprint, optimizer, scheduler)
            if state is not None:
                step, result.history = state["step"], [StepLog(**h) for h in state["history"]]
                result.train_tokens, result.resumed_from = state["tokens"], step

        self.model.train()
        started = time.perf_counter() - (result.history[-1].elapsed_s if result.history else 0.0)
        while step < total:
            stats: list[dict[str, float]] = []
            for micro in range(cfg.grad_accum):
                k = step * cfg.grad_accum + micro
                idx = self._micro_batch(k, micro_per_epoch, len(pairs))
                keep_near = (
                    [near[i] for i in _cycled(len(near), k * cfg.batch_size, cfg.batch_size, cfg.seed + 1)]
                    if near
                    else []
                )
                keep_out = (
                    [out[i] for i in _cycled(len(out), k * cfg.batch_size, cfg.batch_size, cfg.seed + 2)]
                    if out
                    else []
                )
                batch = collate([pairs[i] for i in idx], keep_near, keep_out, self.pad_id, idx).to(
                    self.device
                )
                loss, info = self.batch_loss(batch, ref)
                (loss / cfg.grad_accum).backward()
                stats.append(info)
                result.train_tokens += batch.n_tokens
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            log = self._log(step, stats, lr, result.train_tokens, time.perf_counter() - started)
            result.history.append(log)
            if self.on_step is not None:
                self.on_step(log, total)
            if self.out_dir is not None and (step % cfg.save_every == 0 or step == total):
                self._save_checkpoint(step, fingerprint, optimizer, scheduler, result)
        result.train_s = (result.history[-1].elapsed_s if result.history else 0.0) + ref_s
        self.model.eval()
        return result

    def batch_loss(self, batch: Batch, ref: PairLogps) -> tuple[torch.Tensor, dict[str, float]]:
        """The configured loss on one collated batch (pairs first, then near and out keeps)."""
        cfg = self.config
        per_token = self.token_logps(batch)
        mask = batch.completion_mask[:, 1:]
        seq, lens = per_token.sum(1), mask.sum(1)
        n = batch.n_pairs
        idx = batch.index
        losses = pair_losses(
            seq[:n],
            seq[n : 2 * n],
            ref.chosen[idx].to(seq.device),
            ref.rejected[idx].to(seq.device),
            cfg.beta,
            "ipo" if cfg.method == "ipo" else "sigmoid",
            lens[:n],
            lens[n : 2 * n],
        )
        # Ledger weights scale each pair's loss; all-ones reproduces TRL's plain mean.
        dpo = (losses.loss * batch.weights).mean()
        nll_near = nll_out = None
        if batch.n_near:
            sl = slice(2 * n, 2 * n + batch.n_near)
            nll_near = token_mean_nll(per_token[sl], mask[sl])
        if batch.n_out:
            sl = slice(2 * n + batch.n_near, 2 * n + batch.n_near + batch.n_out)
            nll_out = token_mean_nll(per_token[sl], mask[sl])
        loss = (
            c3po_loss(dpo, nll_out, nll_near, cfg.out_weight, cfg.near_weight)
            if cfg.method == "c3po"
            else dpo
        )
        margin = losses.chosen_rewards - losses.rejected_rewards
        info = {
            "loss": loss.item(),
            "dpo": dpo.item(),
            "margin": margin.mean().item(),
            "accuracy": (margin > 0).float().mean().item(),
            "nll_near": nll_near.item() if nll_near is not None else math.nan,
            "nll_out": nll_out.item() if nll_out is not None else math.nan,
        }
        return loss, info

    @staticmethod
    def _log(step: int, stats: list[dict[str, float]], lr: float, tokens: int, elapsed: float) -> StepLog:
        def mean(key: str) -> float | None:
            values = [s[key] for s in stats if not math.isnan(s[key])]
            return sum(values) / len(values) if values else None

        return StepLog(
            step=step,
            loss=mean("loss") or 0.0,
            dpo_loss=mean("dpo") or 0.0,
            nll_near=mean("nll_near"),
            nll_out=mean("nll_out"),
            reward_margin=mean("margin") or 0.0,
            reward_accuracy=mean("accuracy") or 0.0,
            lr=lr,
            tokens=tokens,
            elapsed_s=elapsed,
        )

    # --- reference cache and checkpoints ---------------------------------------------------
    def _fingerprint(self, pairs: list[Encoded], near: list[Encoded], out: list[Encoded]) -> str:
        data = [[asdict(e) for e in group] for group in (pairs, near, out)]
        settings = self.config.model_dump(mode="json", exclude={"save_every", "keep_checkpoints"})
        return content_hash(data, settings, self.model_tag)

    def _cached_reference(self, pairs: list[Encoded], fingerprint: str) -> PairLogps:
        path = self.out_dir / "checkpoints" / "reference_logps.pt" if self.out_dir else None
        if path is not None and path.is_file():
            saved = torch.load(path, weights_only=True)
            if saved.get("fingerprint") == fingerprint:
                return PairLogps(**saved["ref"])
        ref = self.reference_logps(pairs)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"fingerprint": fingerprint, "ref": asdict(ref)}, path)
        return ref

    def _checkpoints(self) -> list[Path]:
        root = self.out_dir / "checkpoints" if self.out_dir else None
        if root is None or not root.is_dir():
            return []
        return sorted(p for p in root.glob("step-*") if (p / "state.pt").is_file())

    def _save_checkpoint(
        self,
        step: int,
        fingerprint: str,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        result: TrainResult,
    ) -> None:
        assert self.out_dir is not None
        root = self.out_dir / "checkpoints"
        final, tmp = root / f"step-{step:07d}", root / f".step-{step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(trainable_state(self.model), tmp / "adapter.pt")
        torch.save(
            {
                "step": step,
                "fingerprint": fingerprint,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "history": [asdict(h) for h in result.history],
                "tokens": result.train_tokens,
            },
            tmp / "state.pt",
        )
        (tmp / "config.json").write_text(self.config.model_dump_json(indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)  # a half-written checkpoint is never mistaken for a complete one
        for old in self._checkpoints()[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(
        self, fingerprint: str, optimizer: torch.optim.Optimizer, scheduler: Any
    ) -> dict[str, Any] | None:
        found = self._checkpoints()
        if not found:
            return None
        latest = found[-1]
        state = torch.load(latest / "state.pt", weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise UserError(
                f"{latest} was written for other data or settings; use a fresh --out to start over"
            )
        load_trainable_state(self.model, torch.load(latest / "adapter.pt", weights_only=True))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        return state
