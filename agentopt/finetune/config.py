"""Hyperparameters of the preference fine-tuner (nothing here touches data, files or devices)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["dpo", "ipo", "c3po"]


class LoraSettings(BaseModel):
    """LoRA on every ``nn.Linear`` except ``lm_head`` (C3PO's ``find_all_linear_names``).

    The paper used r=64, alpha=128 on Mistral-7B (hidden size 4096). SmolLM2-135M has hidden size
    576, so r=64 would be a rank-11% update that mostly adds optimiser state; r=16, alpha=32 keeps
    the paper's alpha/r = 2 scaling at a rank that suits the smaller model.
    """

    model_config = ConfigDict(frozen=True)

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)


class FinetuneConfig(BaseModel):
    """DPO / IPO / C3PO settings. Defaults follow the C3PO paper (App. B) where they transfer.

    ``beta`` is DPO's inverse temperature, and IPO's tau (TRL names both ``beta``).
    C3PO's loss is ``L_DPO(in) + out_weight * NLL(out-of-scope) + near_weight * NLL(near-scope)``,
    with the paper's 0.2 (out-of-scope, "soft") and 0.1 (near-scope, "hard").
    """

    model_config = ConfigDict(frozen=True)

    method: Method = "dpo"
    beta: float = Field(0.1, gt=0.0)
    out_weight: float = Field(0.2, ge=0.0, description="C3PO lambda1: NLL weight on out-of-scope originals")
    near_weight: float = Field(0.1, ge=0.0, description="C3PO lambda2: NLL weight on near-scope originals")
    lora: LoraSettings = Field(default_factory=LoraSettings)

    learning_rate: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = Field(1.0, gt=0.0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs when set")
    batch_size: int = Field(4, ge=1, description="preference pairs per micro-batch")
    grad_accum: int = Field(1, ge=1)
    max_length: int = Field(512, ge=8, description="prompt + completion tokens")
    max_prompt_length: int = Field(384, ge=1, description="longer prompts keep their last tokens")
    gradient_checkpointing: bool = False
    # Tokens scored through the LM head per chunk: bounds the (chunk, vocab) logits tensor that
    # would otherwise be (batch, seq, vocab) -- 400 MB at batch 8 x 256 tokens x 49k vocab.
    logit_chunk: int = Field(1024, ge=16)

    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    save_every: int = Field(50, ge=1, description="checkpoint every N optimizer steps")
    keep_checkpoints: int = Field(2, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _prompt_fits(self) -> FinetuneConfig:
        if self.max_prompt_length >= self.max_length:
            raise ValueError("max_prompt_length must be smaller than max_length (room for the response)")
        return self
