"""C3PO with a scripted model (tests/support/c3po_toy.py)."""

from __future__ import annotations

import json

import pytest

from agentopt.lm import LM, register_script
from agentopt.preferences.ledger import PreferenceLedger
from agentopt.verbal.c3po import (
    C3PO,
    C3PODataset,
    C3PORow,
    InContextLM,
    VerbalFeedback,
    evaluate_feedback_adherence,
    general_prompts,
    numbered_list,
    parse_rating,
    parse_revision,
    run_c3po,
    section,
)
from tests.support import c3po_toy
from tests.support.c3po_toy import EMOJI, FEEDBACK


@pytest.fixture(scope="module")
def lm():
    return LM(c3po_toy.register(), cache=False, journal=False)


def test_dataset_has_three_scopes_with_the_right_targets(lm, tmp_path):
    ledger = PreferenceLedger(tmp_path / "ledger.sqlite")
    result, dataset = run_c3po(FEEDBACK, lm, config=C3PO(n_categories=2, n_prompts=10).config,
                               out_dir=tmp_path / "out", ledger=ledger, seed=3)
    assert dataset.categories == ["Emails to my boss about schedules", "Emails to my boss about projects"]
    assert dataset.counts() == {s: {"train": 8, "test": 2} for s in ("in", "near", "out")}
    ins, near, out = (dataset.select(s) for s in ("in", "near", "out"))
    assert all("email to my boss" in r.prompt for r in ins)
    assert {r.category for r in ins} == set(dataset.categories)  # both categories represented
    assert all("text to my friend" in r.prompt for r in near)  # from REVISED_PROMPTS, not PROMPTS
    assert not any("junk" in r.prompt for r in near)
    assert set(r.prompt for r in out) <= set(general_prompts())
    assert all(EMOJI in r.baseline and EMOJI not in r.revised for r in ins)

    # the ledger: train rows only; in-scope pairs chosen=revised, rejected=baseline; keeps rejected=""
    rows = list(ledger.iter(source="c3po"))
    assert len(rows) == result.preferences == result.preferences_added == 24
    by_scope = {s: [p for p in rows if p.metadata["scope"] == s] for s in ("in", "near", "out")}
    assert {s: len(v) for s, v in by_scope.items()} == {"in": 8, "near": 8, "out": 8}
    baselines = {r.prompt: r for r in dataset.rows}
    for p in by_scope["in"]:
        assert p.chosen == baselines[p.context].revised and p.rejected == baselines[p.context].baseline
        assert EMOJI in p.rejected and EMOJI not in p.chosen
    for p in by_scope["near"] + by_scope["out"]:
        assert p.chosen == baselines[p.context].baseline and p.rejected == ""
    assert all(p.metadata["feedback"] == FEEDBACK and p.metadata["split"] == "train" for p in rows)

    # files: dataset.jsonl = the ledger's rows in TRL format; data.json reloads the whole set
    lines = [json.loads(x) for x in (tmp_path / "out" / "dataset.jsonl").read_text().splitlines()]
    assert len(lines) == 24 and {"prompt", "chosen", "rejected", "metadata"} <= set(lines[0])
    assert len((tmp_path / "out" / "test.jsonl").read_text().splitlines()) == 6
    assert C3PODataset.load(tmp_path / "out" / "data.json") == dataset

    # running again adds nothing new
    again, _ = run_c3po(FEEDBACK, lm, config=C3PO(n_categories=2, n_prompts=10).config, ledger=ledger,
                        seed=3, evaluate=False)
    assert again.preferences_added == 0 and again.metrics is None
    ledger.close()


def test_in_context_metrics_match_hand_computed_values(lm, tmp_path):
    result, _ = run_c3po(FEEDBACK, lm, config=C3PO(n_categories=2, n_prompts=10).config, seed=3,
                         out_dir=tmp_path / "out")
    m = result.metrics
    assert m.n == {"in": 2, "near": 2, "out": 2}
    # in-scope: judge 5 -> g = 1; near: 4 -> |g| = .5; out: unchanged -> 0 (no judge call)
    assert m.s_in == 1.0
    assert m.near_change == 0.5 and m.out_change == 0.0
    assert m.s_out == pytest.approx(0.25)
    assert m.s_overall == pytest.approx((1.0 + 0.75) / 2)
    assert m.model == f"in-context:{lm.model}" and m.unparsed == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["s_overall"] == pytest.approx(0.875)
    assert len((tmp_path / "out" / "judgments.jsonl").read_text().splitlines()) == 6


def test_metrics_on_a_hand_built_dataset():
    rows = [
        C3PORow(scope="in", prompt="i1", baseline="A", split="test"),
        C3PORow(scope="in", prompt="i2", baseline="A", split="test"),
        C3PORow(scope="near", prompt="n1", baseline="A", split="test"),
        C3PORow(scope="out", prompt="o1", baseline="A", split="test"),
        C3PORow(scope="out", prompt="o2", baseline="same", split="test"),
        C3PORow(scope="out", prompt="o3", baseline="A", split="train"),  # not evaluated
    ]
    dataset = C3PODataset(feedback=VerbalFeedback(content="be brief"), model="base", rows=rows)
    ratings = {"i1": "RATING: 5", "i2": "**Rating:** 2", "n1": "rating 1", "o1": "I cannot tell."}
    replies = {"o2": "same"}
    under_test = LM(register_script("c3po-under-test", lambda m, p: replies.get(m[-1].content, "B")),
                    cache=False, journal=False)

    def judge(messages, params):
        prompt = messages[-1].content.split("REQUEST:\n", 1)[1].split("\n", 1)[0]
        return ratings[prompt]

    judge_lm = LM(register_script("c3po-judge", judge), cache=False, journal=False)
    m = evaluate_feedback_adherence(under_test, judge_lm, dataset, "be brief")
    # in: g = 1 and -0.5 -> 0.25; near: |-1| = 1; out: unparsed (left out) and identical (0)
    assert m.s_in == pytest.approx(0.25)
    assert m.s_out == pytest.approx((1 + 0) / 2)
    assert m.s_overall == pytest.approx((0.25 + 0.5) / 2)
    assert m.unparsed == 1 and m.n == {"in": 2, "near": 1, "out": 2}


def test_short_lists_are_resampled_and_the_seed_picks_out_of_scope_prompts(tmp_path):
    def stingy(messages, params):
        text = messages[-1].content
        if "ALWAYS be within" in text:
            # first round: one request per category; later rounds: more
            n = 1 if params["sample"] == 0 else 4
            return "\n".join(f"{i}. Write an email to my boss, take {params['sample']}-{i}" for i in range(n))
        return c3po_toy.model(messages, params)

    lm = LM(register_script("c3po-stingy", stingy), cache=False, journal=False)
    method = C3PO(n_categories=2, n_prompts=6)
    a = method.build_dataset(FEEDBACK, lm, seed=1)
    assert len(a.select("in")) == 6
    b = method.build_dataset(FEEDBACK, lm, seed=2)
    assert [r.prompt for r in a.select("out")] != [r.prompt for r in b.select("out")]
    again = method.build_dataset(FEEDBACK, lm, seed=1)
    assert [r.prompt for r in a.select("out")] == [r.prompt for r in again.select("out")]


def test_in_context_model_appends_the_feedback():
    seen = []
    base = LM(register_script("c3po-seen", lambda m, p: seen.append(m[-1].content) or "ok"),
              cache=False, journal=False)
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Hi"}]
    InContextLM(base, "Be brief").chat(messages)
    assert seen == ["Hi\n\n(Where it applies, follow this feedback: Be brief)"]


def test_parsers_are_forgiving():
    text = ("THOUGHTS: x\nCATEGORIES:\n1. a\n**REVISED_CATEGORIES:**\n"
            "1) First one\n   continued\n- \"Second\"\n")
    assert numbered_list(section(text, "REVISED_CATEGORIES")) == ["First one continued", "Second"]
    assert section(text, "CATEGORIES").strip() == "1. a"  # not fooled by REVISED_CATEGORIES
    assert section("no headers", "CATEGORIES") is None
    assert numbered_list("Here are some:\nWrite a poem\nWrite a song") == ["Write a poem", "Write a song"]
    assert numbered_list("Sorry, I can't.", plain_lines=False) == []
    assert parse_revision("EXPLANATION: x\nIMPROVED_RESPONSE: Hello\nNOTE: kept") == "Hello\nNOTE: kept"
    assert parse_revision("Just the new answer") == "Just the new answer"
    assert parse_revision("EXPLANATION: only an explanation") is None
    assert parse_rating("reason\nRATING: 4") == 4
    assert parse_rating("I'd give it a 2 out of 5... final: 2") == 2
    assert parse_rating("no idea") is None


def test_a_weak_generator_still_yields_a_dataset():
    def weak(messages, params):
        return "I like turtles."

    lm = LM(register_script("c3po-weak", weak), cache=False, journal=False)
    dataset = C3PO(n_categories=3, n_prompts=4).build_dataset(VerbalFeedback(content=FEEDBACK), lm)
    assert dataset.categories == [FEEDBACK]  # the feedback itself stands in as the one category
    assert len(dataset.select("out")) == 4
    assert dataset.preferences("train")  # keep rows at least


def test_cli_writes_dataset_ledger_and_metrics(tmp_path):
    import typer
    from typer.testing import CliRunner

    from agentopt.commands.verbal import register

    app = typer.Typer()
    register(app)
    model = c3po_toy.register("c3po-cli")
    args = ["c3po", FEEDBACK, "-m", model, "--n-prompts", "5", "--n-categories", "2",
            "--out", str(tmp_path / "out"), "--ledger", str(tmp_path / "ledger.sqlite")]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"] == {s: {"train": 4, "test": 1} for s in ("in", "near", "out")}
    assert data["preferences_added"] == 12
    assert data["metrics"]["s_in"] == 1.0 and data["metrics"]["s_overall"] == pytest.approx(0.875)
    assert (tmp_path / "out" / "dataset.jsonl").is_file() and (tmp_path / "out" / "data.json").is_file()
    with PreferenceLedger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.count(source="c3po") == 12
    text = CliRunner().invoke(app, [*args, "--no-eval"])
    assert text.exit_code == 0, text.output
    assert "DPO pair" in text.stdout and "(0 new)" in text.stdout
