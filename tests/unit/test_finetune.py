"""The local DPO / IPO / C3PO fine-tuner, on a tiny random-init llama (CPU, no downloads)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from agentopt.errors import UserError  # noqa: E402
from agentopt.finetune.config import FinetuneConfig, LoraSettings  # noqa: E402
from agentopt.finetune.data import PreferenceRow, collate, encode, read_jsonl, read_ledger, split_rows  # noqa: E402
from agentopt.finetune.logprobs import _ChunkedTargetLogProb, sequence_logps, token_logps  # noqa: E402
from agentopt.finetune.losses import pair_losses  # noqa: E402
from agentopt.finetune.model import add_lora, lora_targets, trainable_state  # noqa: E402
from agentopt.finetune.trainer import PreferenceTrainer  # noqa: E402
from benchmarks.finetune.tiny import tiny_model as _tiny_model  # noqa: E402
from benchmarks.finetune.tiny import tiny_tokenizer  # noqa: E402

CPU = torch.device("cpu")


# --- fixtures: the char-level tokenizer and random llama the benchmark uses, smaller -----------
def tiny_model(tokenizer, seed: int = 0):
    return _tiny_model(tokenizer, seed, hidden=32, layers=2, max_positions=256).eval()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def pair_rows(n: int = 12) -> list[dict]:
    return [
        {
            "prompt": f"Q{i}: reply politely? ",
            "chosen": "yes, gladly" + "." * (i % 3),
            "rejected": "no!!" + "!" * (i % 4),
        }
        for i in range(n)
    ]


def c3po_rows() -> list[dict]:
    rows = [{**r, "metadata": {"scope": "in"}} for r in pair_rows(8)]
    rows += [
        {"prompt": f"N{i}: a fact? ", "chosen": "water is wet", "rejected": "", "metadata": {"scope": "near"}}
        for i in range(6)
    ]
    rows += [
        {"prompt": f"O{i}: sum? ", "chosen": f"{i}+1={i + 1}", "metadata": {"scope": "out"}} for i in range(6)
    ]
    return rows


def encoded(rows, tokenizer, config: FinetuneConfig | None = None):
    config = config or FinetuneConfig(max_length=96, max_prompt_length=48)
    return [encode(PreferenceRow(**r), tokenizer, config.max_length, config.max_prompt_length) for r in rows]


def config(**kw) -> FinetuneConfig:
    base = dict(
        batch_size=4,
        learning_rate=5e-3,
        max_length=96,
        max_prompt_length=48,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        warmup_ratio=0.0,
    )
    return FinetuneConfig(**{**base, **kw})


def perturb_adapters(model, seed: int = 1) -> None:
    """LoRA's B starts at zero (policy == reference); give it weights so the two differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


# --- log-probs --------------------------------------------------------------------------------
def test_chunked_logprobs_equal_full_logits_on_response_tokens_only(tok):
    model = tiny_model(tok)
    batch = collate(encoded(pair_rows(3), tok), pad_id=tok.pad_token_id)
    got = token_logps(model, batch.input_ids, batch.attention_mask, batch.completion_mask, chunk=5)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    full = torch.log_softmax(logits, -1).gather(2, batch.input_ids[:, 1:, None]).squeeze(2)
    mask = batch.completion_mask[:, 1:].bool()
    assert torch.allclose(got[mask], full[mask], atol=1e-5)
    assert (got[~mask] == 0).all()  # prompt and padding positions never count


def test_chunked_logprob_gradients():
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (7,))
    assert torch.autograd.gradcheck(
        lambda h, w: _ChunkedTargetLogProb.apply(h, w, targets, 3), (hidden, weight)
    )


def test_response_masks_and_truncation(tok):
    row = PreferenceRow(prompt="x" * 40 + "END ", chosen="c" * 30, rejected="r" * 5)
    enc = encode(row, tok, max_length=32, max_prompt_length=10)
    assert tok.decode(enc.prompt_ids).endswith("END ")  # long prompts keep their end
    assert len(enc.prompt_ids) == 10 and len(enc.chosen_ids) == 22  # response cut to fit max_length
    assert enc.rejected_ids[-1] == tok.eos_token_id  # EOS appended as TRL does
    batch = collate([enc], pad_id=tok.pad_token_id)
    assert batch.completion_mask[0].sum() == 22 and batch.completion_mask[1].sum() == 6
    assert batch.completion_mask[:, :10].sum() == 0


# --- losses against TRL ------------------------------------------------------------------------
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_loss_equals_trl_dpo_trainer_on_same_batch(tok, loss_type, tmp_path):
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    rows = [
        {"prompt": f"Q{i}: be nice? ", "chosen": "sure" + "." * i, "rejected": "no" + "!" * (i % 3)}
        for i in range(6)
    ]
    policy, reference = tiny_model(tok, 0), tiny_model(tok, 1)
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        loss_type=loss_type,
        beta=0.1,
        max_length=None,
        bf16=False,
        use_cpu=True,
        report_to=[],
        per_device_train_batch_size=len(rows),
    )
    trainer = trl.DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        processing_class=tok,
        train_dataset=datasets.Dataset.from_list(rows),
    )
    features = [trainer.train_dataset[i] for i in range(len(rows))]
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, trainer.data_collator(features)).item()

    batch = collate(encoded(rows, tok), pad_id=tok.pad_token_id)
    assert [f["chosen_ids"] for f in features] == [e for e in (x.chosen_ids for x in encoded(rows, tok))]
    with torch.no_grad():
        pol, lens = sequence_logps(policy, batch.input_ids, batch.attention_mask, batch.completion_mask)
        ref, _ = sequence_logps(reference, batch.input_ids, batch.attention_mask, batch.completion_mask)
    n = len(rows)
    ours = (
        pair_losses(pol[:n], pol[n:], ref[:n], ref[n:], 0.1, loss_type, lens[:n], lens[n:]).loss.mean().item()
    )
    assert ours == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)


def test_ipo_and_sigmoid_by_hand():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.5))
    sig = pair_losses(pc, pr, rc, rr, beta=0.5).loss.item()
    assert sig == pytest.approx(math.log1p(math.exp(-0.5 * ((-3 + 4) - (-5 + 4.5)))))
    ipo = pair_losses(pc, pr, rc, rr, 0.5, "ipo", torch.tensor([2]), torch.tensor([4])).loss.item()
    assert ipo == pytest.approx(((1.0 / 2 - (-0.5) / 4) - 1.0) ** 2)


def test_c3po_loss_is_dpo_plus_weighted_keep_nll(tok):
    cfg = config(method="c3po")
    rows = c3po_rows()
    enc = encoded(rows, tok, cfg)
    pairs = [e for e in enc if e.scope == "in"][:3]
    near = [e for e in enc if e.scope == "near"][:2]
    out = [e for e in enc if e.scope == "out"][:2]
    model = add_lora(tiny_model(tok), cfg.lora, 0)
    perturb_adapters(model)
    trainer = PreferenceTrainer(cfg, model, tok.pad_token_id, CPU)
    ref = trainer.reference_logps(pairs)
    batch = collate(pairs, near, out, tok.pad_token_id)
    with torch.no_grad():
        loss, info = trainer.batch_loss(batch, ref)

    # By hand, from full logits: DPO on the pairs, per-token mean NLL on each keep group.
    def per_token(m):
        logits = m(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        return torch.log_softmax(logits, -1).gather(2, batch.input_ids[:, 1:, None]).squeeze(2)

    mask = batch.completion_mask[:, 1:].float()
    with torch.no_grad():
        lp = per_token(model) * mask
        with model.disable_adapter():
            ref_lp = per_token(model) * mask
    seq, ref_seq = lp.sum(1), ref_lp.sum(1)
    dpo = -torch.nn.functional.logsigmoid(0.1 * ((seq[:3] - ref_seq[:3]) - (seq[3:6] - ref_seq[3:6]))).mean()
    nll_near = -lp[6:8].sum() / mask[6:8].sum()
    nll_out = -lp[8:10].sum() / mask[8:10].sum()
    expected = dpo + 0.2 * nll_out + 0.1 * nll_near
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert info["nll_near"] == pytest.approx(nll_near.item(), rel=1e-5)
    assert info["nll_out"] == pytest.approx(nll_out.item(), rel=1e-5)


# --- training ------------------------------------------------------------------------------------
def test_dpo_training_raises_margin_on_training_pairs(tok):
    cfg = config(max_steps=8)
    pairs = encoded(pair_rows(12), tok, cfg)
    model = add_lora(tiny_model(tok), cfg.lora, cfg.seed)
    trainer = PreferenceTrainer(cfg, model, tok.pad_token_id, CPU)
    ref = trainer.reference_logps(pairs)
    result = trainer.fit(pairs, ref=ref)
    after = trainer.policy_logps(pairs)
    before_margin = (ref.chosen - ref.rejected).mean()
    after_margin = (after.chosen - after.rejected).mean()
    assert after_margin > before_margin + 0.5
    assert result.history[-1].loss < result.history[0].loss
    assert result.history[0].loss == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 0


def test_lora_targets_every_linear_but_the_head(tok):
    assert lora_targets(tiny_model(tok)) == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


def test_resume_ends_on_the_same_adapter_as_an_uninterrupted_run(tok, tmp_path):
    cfg = config(method="c3po", max_steps=5, save_every=2, lora=LoraSettings(r=4, alpha=8, dropout=0.1))
    rows = c3po_rows()
    enc = encoded(rows, tok, cfg)
    groups = (
        [e for e in enc if e.scope == "in"],
        [e for e in enc if e.scope == "near"],
        [e for e in enc if e.scope == "out"],
    )

    def fresh(out: Path, on_step=None) -> PreferenceTrainer:
        model = add_lora(tiny_model(tok), cfg.lora, cfg.seed)
        return PreferenceTrainer(cfg, model, tok.pad_token_id, CPU, out_dir=out, on_step=on_step)

    torch.manual_seed(0)
    full = fresh(tmp_path / "a")
    full_result = full.fit(*groups)

    class Killed(Exception):
        pass

    def kill_at_3(log, total):
        if log.step == 3:
            raise Killed

    torch.manual_seed(0)
    with pytest.raises(Killed):
        fresh(tmp_path / "b", kill_at_3).fit(*groups)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("step-*")) == ["step-0000002"]
    torch.manual_seed(123)  # the resumed process starts from a different RNG state
    resumed = fresh(tmp_path / "b")
    resumed_result = resumed.fit(*groups, resume=True)

    assert resumed_result.resumed_from == 2
    a, b = trainable_state(full.model), trainable_state(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h.loss for h in resumed_result.history] == [h.loss for h in full_result.history]


def test_resume_refuses_a_checkpoint_from_other_data(tok, tmp_path):
    cfg = config(max_steps=2, save_every=1)
    pairs = encoded(pair_rows(8), tok, cfg)
    PreferenceTrainer(cfg, add_lora(tiny_model(tok), cfg.lora, 0), tok.pad_token_id, CPU, tmp_path).fit(pairs)
    other = PreferenceTrainer(cfg, add_lora(tiny_model(tok), cfg.lora, 0), tok.pad_token_id, CPU, tmp_path)
    with pytest.raises(UserError, match="other data or settings"):
        other.fit(pairs[:6], resume=True)


# --- data ----------------------------------------------------------------------------------------
def test_split_is_seeded_and_keeps_every_scope():
    rows = [PreferenceRow(**r) for r in c3po_rows()] * 2
    train, held = split_rows(rows, 0.25, seed=3)
    assert split_rows(rows, 0.25, seed=3) == (train, held)
    assert {r.scope for r in held} == {"in", "near", "out"}
    assert len(train) + len(held) == len(rows)


def test_read_jsonl_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": 3}\n')
    with pytest.raises(UserError, match="bad.jsonl:2"):
        read_jsonl(bad)


def test_rows_from_framework_preferences_and_context_alias(tmp_path):
    from agentopt.finetune.data import from_preferences
    from agentopt.types import Preference

    pref = Preference(
        context="ctx", chosen="good", rejected="bad", source="judge", weight=2.0, metadata={"scope": "near"}
    )
    (row,) = from_preferences([pref])
    assert (row.prompt, row.weight, row.scope, row.is_pair) == ("ctx", 2.0, "near", False)
    dumped = tmp_path / "prefs.jsonl"
    dumped.write_text(pref.model_dump_json() + "\n")
    assert read_jsonl(dumped)[0].prompt == "ctx"


def test_rows_from_the_preference_ledger(tmp_path):
    ledger_module = pytest.importorskip("agentopt.preferences.ledger")
    from agentopt.types import Preference

    path = tmp_path / "ledger.sqlite"
    with ledger_module.PreferenceLedger(path) as ledger:
        ledger.add(Preference(context="p1", chosen="a", rejected="b", source="human"))
        ledger.add(
            Preference(context="p2", chosen="keep", rejected="", source="c3po", metadata={"scope": "out"})
        )
    rows = read_ledger(path)
    assert [(r.prompt, r.is_pair, r.scope) for r in rows] == [("p1", True, "in"), ("p2", False, "out")]
    with pytest.raises(UserError, match="ledger not found"):
        read_ledger(tmp_path / "missing.sqlite")


def test_ledger_import_is_lazy_and_missing_module_is_a_user_error(tmp_path, monkeypatch):
    db = tmp_path / "prefs.sqlite"
    db.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "agentopt.preferences.ledger", None)  # import now raises ImportError
    with pytest.raises(UserError, match="preference ledger"):
        read_ledger(db)


# --- CLI and outputs -----------------------------------------------------------------------------
def cli():
    import typer

    from agentopt.commands.finetune import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


def invoke(*args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(cli(), ["finetune", *args])


def test_cli_user_errors(tmp_path):
    result = invoke("--data", str(tmp_path / "nope.jsonl"))
    assert isinstance(result.exception, UserError) and "data file not found" in str(result.exception)
    assert isinstance(invoke().exception, UserError)  # neither --data nor --ledger
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(pair_rows(1)[0]) + "\n")
    assert "unknown method" in str(invoke("--data", str(data), "--method", "ppo").exception)
    assert "--resume" in str(invoke("--data", str(data), "--resume").exception)


@pytest.fixture(scope="module")
def cli_run(tok, tmp_path_factory):
    """One C3PO run through the CLI on the tiny model, shared by the tests that read its output."""
    tmp_path = tmp_path_factory.mktemp("cli_run")
    base = tmp_path / "base"
    tiny_model(tok).save_pretrained(base)
    tok.save_pretrained(base)
    data = tmp_path / "c3po.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in c3po_rows() * 2))
    out = tmp_path / "out"
    result = invoke(
        "--data",
        str(data),
        "--method",
        "c3po",
        "--base",
        str(base),
        "--out",
        str(out),
        "--steps",
        "4",
        "--lr",
        "0.005",
        "--eval-fraction",
        "0.25",
        "--json",
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_cli_trains_and_writes_adapter_merged_metrics_and_plots(cli_run):
    metrics, out = cli_run
    for name in (
        "adapter/adapter_model.safetensors",
        "merged/model.safetensors",
        "merged/tokenizer.json",
        "metrics.json",
        "loss.csv",
        "loss.png",
    ):
        assert (out / name).is_file(), name
    assert len((out / "loss.csv").read_text().splitlines()) == 5  # header + one row per step
    held = metrics["heldout"]
    assert held["pairs"]["n"] == 4 and held["pairs"]["after"]["reward_margin"] > 0
    assert held["c3po"]["near_scope"]["n"] == 3 and held["c3po"]["out_of_scope"]["logp_change"] >= 0
    assert (
        metrics["train"]["pairs"]["after"]["logp_margin"] > metrics["train"]["pairs"]["before"]["logp_margin"]
    )


def test_merged_model_generates_through_the_hf_backend_and_lm(cli_run):
    _, out = cli_run
    from agentopt.finetune.hf_backend import HFBackend
    from agentopt.lm.request import ChatRequest

    backend = HFBackend(f"hf/{out / 'merged'}")
    backend.check({})
    reply = backend.complete(
        ChatRequest.build("hf/x", [{"role": "user", "content": "Q1: reply politely?"}], max_tokens=5), {}
    )
    assert reply.completion_tokens <= 5 and reply.prompt_tokens > 0

    # Through the framework's LM interface, like any other model.
    from agentopt.lm import client

    assert isinstance(client.make_backend(f"hf/{out / 'merged'}"), HFBackend)
    lm = client.LM(f"hf/{out / 'merged'}", cache=False, journal=False)
    assert lm.chat("Q2: reply politely?", max_tokens=4).usage.completion_tokens <= 4


def test_new_weights_in_the_same_folder_are_not_answered_from_the_cache(cli_run, tmp_path):
    import os

    from agentopt.lm import client

    _, out = cli_run
    model, cache = f"hf/{out / 'merged'}", tmp_path / "cache.sqlite"
    first = client.LM(model, cache=cache, journal=False)
    first.chat("Q3: reply politely?", max_tokens=3)
    same = client.LM(model, cache=cache, journal=False)
    same.chat("Q3: reply politely?", max_tokens=3)
    assert same.cache_hits == 1

    weights = next(p for p in (out / "merged").iterdir() if p.suffix == ".safetensors")
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # as a re-training would
    retrained = client.LM(model, cache=cache, journal=False)
    retrained.chat("Q3: reply politely?", max_tokens=3)
    assert retrained.cache_hits == 0 and retrained.calls_made == 1


def test_hf_backend_check_rejects_a_folder_without_a_model(tmp_path):
    from agentopt.finetune.hf_backend import HFBackend

    with pytest.raises(UserError, match="config.json"):
        HFBackend(f"hf/{tmp_path}").check({})


# --- the real embedded model ---------------------------------------------------------------------
@pytest.mark.integration
def test_smollm2_gguf_trains_two_steps_on_cpu(tmp_path):
    pytest.importorskip("gguf")
    from agentopt.finetune.run import finetune

    rows = [
        PreferenceRow(
            prompt=f"Greet {n} briefly.", chosen=f"Hello {n}, nice to meet you.", rejected=f"yo {n}!!! 🎉🎉"
        )
        for n in ("Ann", "Bob", "Cid", "Dee")
    ]
    cfg = FinetuneConfig(
        max_steps=2, batch_size=2, eval_fraction=0.0, max_length=64, max_prompt_length=48, save_every=100
    )
    metrics = finetune(rows, tmp_path, cfg, device="cpu")
    assert metrics["training"]["steps"] == 2 and metrics["dtype"] == "torch.float32"
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert metrics["train"]["pairs"]["after"]["reward_margin"] > 0


# --- choosing rows by source, task and kind; no silent mixing; C3PO needs scopes -----------------
def kinds_ledger(path):
    """A ledger as the writers leave it: prompt duels, trajectories, C3PO rows and an unlabelled
    import, across two tasks."""
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.types import Preference

    rows = [
        Preference(
            context=f"task ctx {i}",
            chosen=f"prompt good {i}",
            rejected=f"prompt bad {i}",
            source="judge:m",
            task="t1",
            kind="prompt",
            metadata={"method": "apohf"},
        )
        for i in range(3)
    ]
    rows += [
        Preference(
            context=f"agent ctx {i}",
            chosen=f"Step 1: up\nStep 2: go {i}",
            rejected="Step 1: down",
            source="reflexion",
            task="t1" if i < 2 else "t2",
            kind="trajectory",
        )
        for i in range(4)
    ]
    rows += [
        Preference(
            context=f"q {i}",
            chosen="short",
            rejected=f"long answer {i}",
            source="c3po",
            kind="response",
            metadata={"scope": "in"},
        )
        for i in range(2)
    ]
    rows.append(
        Preference(
            context="q near",
            chosen="keep",
            rejected="",
            source="c3po",
            kind="response",
            metadata={"scope": "near"},
        )
    )
    rows.append(Preference(context="imported", chosen="a", rejected="b", source="import"))
    with PreferenceLedger(path) as ledger:
        ledger.add_many(rows)
    return path


@pytest.fixture
def captured(monkeypatch):
    """Run the finetune command up to training: the rows it would train on, and how."""
    import agentopt.commands.finetune as command

    seen: dict = {}

    def fake(rows, out, config, base, device, resume, quiet, mix_kinds=False):
        seen.update(rows=rows, method=config.method, mix_kinds=mix_kinds)
        return {}

    monkeypatch.setattr(command, "_run_with_progress", fake)
    monkeypatch.setattr(command, "_print_summary", lambda metrics, out: None)
    return seen


def test_read_ledger_filters_by_source_task_and_kind(tmp_path):
    pytest.importorskip("agentopt.preferences.ledger")
    path = kinds_ledger(tmp_path / "l.sqlite")
    rows = read_ledger(path)
    assert [r.kind_name for r in rows] == ["prompt"] * 3 + ["trajectory"] * 4 + ["response"] * 3 + ["unknown"]
    assert {r.task for r in read_ledger(path, kind="trajectory", task="t2")} == {"t2"}
    assert (
        len(read_ledger(path, source="judge:")) == 3 and len(read_ledger(path, source="reflexion,c3po")) == 7
    )
    assert len(read_ledger(path, kind=["prompt", "unknown"])) == 4
    with pytest.raises(UserError, match="no preferences in .* match --source c3po --kind trajectory"):
        read_ledger(path, source="c3po", kind="trajectory")
    with pytest.raises(UserError, match="unknown preference kind 'episode'"):
        read_ledger(path, kind="episode")


def test_kind_survives_the_jsonl_export_and_old_exports_get_the_implied_kind(tmp_path):
    from agentopt.finetune.data import select_rows
    from agentopt.preferences.ledger import PreferenceLedger

    path = kinds_ledger(tmp_path / "l.sqlite")
    out = tmp_path / "all.jsonl"
    with PreferenceLedger(path) as ledger:
        ledger.export_jsonl(out)
    rows = read_jsonl(out)
    assert [(r.kind, r.task, r.source) for r in rows] == [
        (r.kind, r.task, r.source) for r in read_ledger(path)
    ]
    assert len(select_rows(rows, kind="response", source="c3po")) == 3
    old = tmp_path / "old.jsonl"  # written before kinds: no column; the source still tells
    old.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "source": "reflexion"}) + "\n")
    assert read_jsonl(old)[0].kind == "trajectory"


def test_mixed_kinds_are_refused_before_anything_is_loaded_unless_asked(tmp_path, monkeypatch):
    import agentopt.finetune.run as run_module
    from agentopt.finetune.data import check_kinds

    rows = read_ledger(kinds_ledger(tmp_path / "l.sqlite"), source="judge:,reflexion")
    with pytest.raises(UserError, match=r"mix kinds \(3 prompt, 4 trajectory\).*--kind.*--mix-kinds") as info:
        run_module.finetune(rows, tmp_path / "out", config())
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()
    assert check_kinds(rows, mix_kinds=True) == {"prompt": 3, "trajectory": 4}

    class Loaded(Exception):
        pass

    def load_base(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(run_module, "load_base", load_base)
    with pytest.raises(Loaded):  # asked to mix: it goes on to load the model
        run_module.finetune(rows, tmp_path / "out", config(), device="cpu", mix_kinds=True)
    with pytest.raises(Loaded):  # one kind, even all unknown (a plain TRL file), needs no flag
        run_module.finetune(
            [PreferenceRow(**r) for r in pair_rows(4)], tmp_path / "out2", config(), device="cpu"
        )


def test_c3po_refuses_rows_that_do_not_say_their_scope(tmp_path):
    from agentopt.finetune.data import check_scopes
    from agentopt.finetune.run import finetune

    rows = [PreferenceRow(**r) for r in c3po_rows()]
    check_scopes(rows, "c3po")  # every row says its scope
    unscoped = rows + [PreferenceRow(prompt="p", chosen="a", rejected="b", source="judge:m")]
    assert unscoped[-1].scope == "in" and not unscoped[-1].has_scope  # DPO still reads it as a pair
    check_scopes(unscoped, "dpo")
    with pytest.raises(UserError, match=r"--method c3po needs metadata.scope .* 1 of 21 selected rows"):
        finetune(unscoped, tmp_path / "out", config(method="c3po"))
    assert not (tmp_path / "out").exists()


def test_cli_filters_and_refuses_to_mix_kinds(tmp_path, captured):
    path = str(kinds_ledger(tmp_path / "l.sqlite"))
    out = tmp_path / "out"
    result = invoke("--ledger", path, "--out", str(out))
    assert isinstance(result.exception, UserError)
    assert "mix kinds (3 prompt, 3 response, 4 trajectory, 1 unknown)" in str(result.exception)
    assert not captured and not out.exists()

    assert invoke("--ledger", path, "--out", str(out), "--kind", "trajectory").exit_code == 0
    assert {r.kind for r in captured["rows"]} == {"trajectory"} and len(captured["rows"]) == 4
    assert invoke("--ledger", path, "--out", str(out), "--kind", "trajectory", "--task", "t2").exit_code == 0
    assert [r.task for r in captured["rows"]] == ["t2", "t2"]
    assert invoke("--ledger", path, "--out", str(out), "--source", "judge:").exit_code == 0
    assert {r.kind for r in captured["rows"]} == {"prompt"}

    both = ("--ledger", path, "--out", str(out), "--kind", "prompt", "--kind", "trajectory")
    assert "mix kinds (3 prompt, 4 trajectory)" in str(invoke(*both).exception)
    result = invoke(*both, "--mix-kinds")
    assert result.exit_code == 0 and len(captured["rows"]) == 7 and captured["mix_kinds"] is True
    assert (
        invoke("--ledger", path, "--out", str(out), "--kind", "prompt,trajectory", "--mix-kinds").exit_code
        == 0
    )
    assert len(captured["rows"]) == 7

    assert "unknown preference kind 'steps'" in str(invoke("--ledger", path, "--kind", "steps").exception)
    result = invoke("--ledger", path, "--source", "human")
    assert "no preferences in" in str(result.exception) and "--source human" in str(result.exception)


def test_cli_c3po_needs_scoped_rows(tmp_path, captured):
    from agentopt.preferences.ledger import PreferenceLedger
    from agentopt.types import Preference

    path = kinds_ledger(tmp_path / "l.sqlite")
    with PreferenceLedger(path) as ledger:  # a response-level pair from a judge: no scope
        ledger.add(Preference(context="q", chosen="good", rejected="bad", source="judge:m", kind="response"))
    args = ("--ledger", str(path), "--out", str(tmp_path / "out"), "--method", "c3po")
    result = invoke(*args, "--kind", "response")
    assert isinstance(result.exception, UserError)
    assert "needs metadata.scope" in str(result.exception) and "1 of 4 selected rows" in str(result.exception)
    assert not captured
    assert invoke(*args, "--source", "c3po").exit_code == 0
    assert captured["method"] == "c3po" and {r.scope for r in captured["rows"]} == {"in", "near"}


def test_cli_refusal_is_one_line_and_exit_code_2(tmp_path, capsys):
    from agentopt.cli import main

    path = str(kinds_ledger(tmp_path / "l.sqlite"))
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--ledger", path, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the selected preferences mix kinds") and "\n" not in err
