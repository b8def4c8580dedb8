"""``hf/<path>``: a transformers model folder (e.g. a fine-tune's ``merged/``) as an LM backend.

So a tuned model is an LM like any other: ``LM("hf/runs/.../merged").chat(...)``. Generation is
in-process with transformers: greedy at temperature 0, sampled otherwise, seeded from the request
hash so repeated calls agree (and the response cache stays meaningful).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentopt.errors import UserError
from agentopt.lm.backends.base import Backend, Reply
from agentopt.lm.request import ChatRequest

PREFIX = "hf/"


@lru_cache(maxsize=2)
def _load(path: str, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, tokenizer


class HFBackend(Backend):
    """One model per path, shared by the process; calls are serialised (one forward at a time
    is what a small CPU or a single GPU does best anyway)."""

    greedy_by_default = True

    _lock = threading.Lock()

    def __init__(self, model: str, device: str | None = None) -> None:
        self.path = model[len(PREFIX) :] if model.startswith(PREFIX) else model
        self.device = device

    def check(self, transport: dict[str, Any]) -> None:
        folder = Path(self.path).expanduser()
        if not (folder / "config.json").is_file():
            raise UserError(f"hf/{self.path}: no transformers model folder there (config.json missing)")
        import importlib.util

        if importlib.util.find_spec("transformers") is None:
            raise UserError("hf/ models need transformers (pip install 'agentopt[finetune]')")

    def weights_version(self) -> str:
        # Size and modification time of every file: re-training into the same folder changes
        # them, and reading a few hundred MB to hash the contents at every start would not pay.
        folder = Path(self.path).expanduser()
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return ";".join(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)

    def _device(self) -> str:
        import torch

        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def complete(self, request: ChatRequest, transport: dict[str, Any]) -> Reply:
        import torch

        params = dict(request.params)
        temperature = float(params.get("temperature", 0.0))
        max_tokens = int(params.get("max_tokens", 256))
        stops = params.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        with self._lock:
            model, tokenizer = _load(str(Path(self.path).expanduser()), self._device())
            messages = [m.wire() for m in request.messages]
            if getattr(tokenizer, "chat_template", None):
                ids = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                )["input_ids"]
            else:
                text = "\n".join(m["content"] for m in messages) + "\n"
                ids = tokenizer(text, return_tensors="pt")["input_ids"]
            ids = ids.to(model.device)
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_tokens,
                "pad_token_id": tokenizer.pad_token_id
                if tokenizer.pad_token_id is not None
                else tokenizer.eos_token_id,
            }
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=float(params.get("top_p", 1.0)))
            else:
                kwargs.update(do_sample=False)
            # generate() draws from torch's global generator; seed a private fork of it so the
            # user's own random state is left exactly as it was.
            gpus = [model.device.index or 0] if model.device.type == "cuda" else []
            with torch.no_grad(), torch.random.fork_rng(devices=gpus):
                torch.manual_seed(request.seed())
                output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        new = output[0, ids.shape[1] :].tolist()
        finished = bool(new) and new[-1] == tokenizer.eos_token_id
        text = tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if finished else "length"
        for stop in stops:
            cut = text.find(stop)
            if stop and cut >= 0:
                text, finish = text[:cut], "stop"
        return Reply(
            text=text, finish_reason=finish, prompt_tokens=int(ids.shape[1]), completion_tokens=len(new)
        )
