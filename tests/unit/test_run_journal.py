"""The run journal: memoised steps replay after a crash and are paid for exactly once."""

from __future__ import annotations

from agentopt.lm.budget import Budget, BudgetMeter
from agentopt.store.journal import RunJournal


def _spend(meter: BudgetMeter, calls: int, tokens: int):
    def compute() -> str:
        for _ in range(calls):
            meter.reserve_call()
        meter.charge(tokens, 0.0)
        return f"{calls} calls"

    return compute


def test_a_step_asked_for_twice_in_one_run_is_charged_once(tmp_path):
    meter = BudgetMeter(Budget())
    journal = RunJournal(tmp_path / "events.jsonl", meter)
    assert journal.memo("step", _spend(meter, 3, 30)) == "3 calls"
    assert journal.memo("step", _spend(meter, 3, 30)) == "3 calls"
    assert meter.snapshot() == (3, 30, 0.0)


def test_a_replayed_step_costs_what_it_cost_the_first_time(tmp_path):
    first_meter = BudgetMeter(Budget())
    first = RunJournal(tmp_path / "events.jsonl", first_meter)
    first.memo("a", _spend(first_meter, 2, 20))
    first.memo("b", _spend(first_meter, 1, 5))

    meter = BudgetMeter(Budget())
    resumed = RunJournal(tmp_path / "events.jsonl", meter)
    never = _spend(meter, 100, 1000)  # must not run: the journal has the answers
    assert resumed.memo("a", never) == "2 calls"
    assert resumed.memo("b", never) == "1 calls"
    assert resumed.memo("a", never) == "2 calls"
    assert meter.snapshot() == first_meter.snapshot() == (3, 25, 0.0)


def test_a_torn_last_line_is_dropped_and_the_journal_goes_on(tmp_path):
    path = tmp_path / "events.jsonl"
    journal = RunJournal(path)
    journal.memo("kept", lambda: 1)
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"type": "memo", "key": "torn", "val')  # a writer killed mid-line

    reopened = RunJournal(path)
    assert reopened.has("kept") and not reopened.has("torn")
    assert reopened.memo("torn", lambda: 2) == 2
    assert RunJournal(path).memo("torn", lambda: 3) == 2
