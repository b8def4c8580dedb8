"""Every writer labels its preferences with the kind of thing it compared: APOHF's prompt duels
are prompt-level, its response variant and C3PO are response-level, Reflexion's before/after
trials are trajectory-level. The ledger and the fine-tuner rely on these labels."""

from __future__ import annotations

from pathlib import Path

from agentopt.optimizers.apohf import Apohf, ApohfConfig
from agentopt.optimizers.embeddings import HashingEmbedder
from agentopt.preferences import PreferenceLedger
from agentopt.preferences.sources import SimulatedUser
from agentopt.tasks.loader import load_task
from agentopt.types import Instance, Step, Trajectory
from agentopt.verbal.c3po import C3PODataset, C3PORow, VerbalFeedback
from agentopt.verbal.reflexion import improvement_preferences

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"


def small() -> ApohfConfig:
    return ApohfConfig(train_iters=50, rounds=5, pool_size=4, n_init=2)


def utility(text: str) -> float:
    return float(text.count("good"))


def test_apohf_prompt_duels_are_prompt_level_and_name_their_instance(tmp_path):
    task = load_task("linewalk", [FIXTURES])
    pool = [f"Walk to the goal.{' good' * k}" for k in range(4)]
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        Apohf(small(), embedder=HashingEmbedder()).optimize_prompts(
            task, agent=None, source=SimulatedUser(utility, seed=0), pool=pool, ledger=ledger
        )
        stored = ledger.query()
        assert stored and {p.kind for p in stored} == {"prompt"}
        assert all(p.chosen in pool and p.task == "linewalk" for p in stored)
        assert ledger.stats().by_kind == {"prompt": len(stored)}
        # the kind an old row of this shape would be given agrees with the label
        assert all(p.infer_kind(p.source, p.metadata) == "prompt" for p in stored)


def test_apohf_response_variant_is_response_level(tmp_path):
    responses = [[f"reply{' good' * k}" for k in range(4)]]
    with PreferenceLedger(tmp_path / "l.sqlite") as ledger:
        Apohf(small(), embedder=HashingEmbedder()).optimize_responses(
            ["Say something."], SimulatedUser(utility, seed=0), responses=responses, ledger=ledger
        )
        stored = ledger.query()
    assert stored and {p.kind for p in stored} == {"response"}


def test_reflexion_improvements_are_trajectory_level():
    instance = Instance(task="linewalk", split="train", index=0, seed=0)

    def trial(moves: list[str], score: float) -> Trajectory:
        steps = [Step(observation="o", raw_output=m, action=m, valid=True) for m in moves]
        return Trajectory(instance=instance, steps=steps, score=score)

    prefs = improvement_preferences(
        [trial(["left", "left"], 0.0), trial(["right", "right"], 1.0)], "Walk.", "position 0", instance
    )
    assert len(prefs) == 1
    (pref,) = prefs
    assert pref.kind == "trajectory" and pref.source == "reflexion" and pref.task == "linewalk"
    assert "Step 2" in pref.chosen  # a whole multi-step transcript


def test_c3po_pairs_and_keeps_are_response_level_and_carry_their_scope():
    dataset = C3PODataset(
        feedback=VerbalFeedback(content="Be concise"),
        model="m",
        rows=[
            C3PORow(scope="in", prompt="Explain lists.", baseline="A long answer.", revised="Short."),
            C3PORow(scope="near", prompt="Explain tuples.", baseline="Tuples are..."),
            C3PORow(scope="out", prompt="2+2?", baseline="4"),
        ],
    )
    prefs = dataset.preferences()
    assert [p.kind for p in prefs] == ["response"] * 3
    assert [p.metadata["scope"] for p in prefs] == ["in", "near", "out"]
