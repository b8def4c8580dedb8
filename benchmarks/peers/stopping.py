"""Stopping DSPy's optimisers at the call budget, as counted at the proxy.

MIPROv2 and GEPA size their searches in evaluations, and DSPy's cache answers a repeated request
without a server call, so a search sized in advance stops short of the budget (in the first
runs, 35-61 of 80 calls) while agentopt, whose budget is in calls, spends it. So both peers are
given far more room than the budget and stopped from outside, before any step that could take
them past it:

- GEPA through its own stop callbacks (``gepa_kwargs={"stop_callbacks": ...}``), checked before
  each iteration;
- MIPROv2 through an Optuna callback on its study, checked after each trial. MIPROv2 has no stop
  hook of its own; Optuna's ``callbacks`` are the public way to stop a study, and `optuna_budget`
  adds one to the study MIPROv2 creates.

Each check asks whether the calls spent so far plus what the next step costs at most (one call
per agent step and per reflection) would pass the budget, so a peer ends within one step of the
budget. An episode's length is the longest the search has played so far (before its first
episode, ``--steps-per-episode`` or the task's step limit): a bound fixed in advance at the
worst case stopped GEPA at 35 of 60 calls on gridworld1, whose episodes end after one or two
steps. A step can still cost more than its bound: a candidate may play longer episodes than
any before it, and DSPy's chat adapter asks again, in JSON, for a reply it cannot parse. So a
peer can end a few calls past the budget; the proxy's count, which the report shows, is what
it really spent. A peer whose search runs out of new things to try (every candidate already
scored, its repeats answered by the cache) ends below the budget; the cell records which of the
two happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class BudgetStop:
    """True once the next step could pass the budget; keeps (calls spent, best score) as it goes.

    ``spent`` reads the proxy's count for the run; ``step_cost`` gives the most calls one more
    step can make (a MIPROv2 trial: one validation pass; a GEPA iteration: two minibatches, a
    reflection and a validation pass), asked afresh at every check since it grows with the
    longest episode seen. ``next_step_cost`` is the bound the last check used."""

    def __init__(self, spent: Callable[[], int], budget: int,
                 step_cost: float | Callable[[], float]) -> None:
        self.spent = spent
        self.budget = budget
        self.step_cost = step_cost if callable(step_cost) else (lambda: float(step_cost))
        self.next_step_cost = self.step_cost()
        self.progress: list[tuple[int, float]] = []
        self.stopped = False
        self.distinct_configs: int | None = None

    def check(self, best_score: float | None) -> bool:
        calls = self.spent()
        if best_score is not None:
            self.progress.append((calls, float(best_score)))
        self.next_step_cost = self.step_cost()
        self.stopped = calls + self.next_step_cost > self.budget
        return self.stopped

    def gepa(self, state: Any) -> bool:
        """GEPA's stopper protocol: called with its state before every iteration."""
        scores = getattr(state, "program_full_scores_val_set", None) or []
        return self.check(max(scores) if scores else None)

    def optuna(self, study: Any, trial: Any) -> None:
        """An Optuna study callback: called after every trial. Also counts the distinct
        configurations tried, which tells a search that ran out of new ones."""
        self.distinct_configs = len({tuple(sorted(t.params.items())) for t in study.trials})
        try:
            best = study.best_value
        except ValueError:  # no finished trial yet
            best = None
        if self.check(best):
            study.stop()


@contextmanager
def optuna_budget(stop: BudgetStop) -> Iterator[None]:
    """Every Optuna study optimised inside the block stops as ``stop`` says: not started at all
    when what came before it (MIPROv2's bootstrapping, proposing, scoring the starting program)
    left no room for a trial, else checked after each trial."""
    import optuna

    original = optuna.study.Study.optimize

    def optimize(self: Any, *args: Any, **kwargs: Any) -> None:
        if stop.check(None):
            return None
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), stop.optuna]
        return original(self, *args, **kwargs)  # type: ignore[no-any-return]

    optuna.study.Study.optimize = optimize  # type: ignore[method-assign]
    try:
        yield
    finally:
        optuna.study.Study.optimize = original  # type: ignore[method-assign]
