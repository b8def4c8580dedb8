"""PROMST (Chen et al., EMNLP 2024, arXiv 2402.08702): prompt optimisation for multi-step tasks.

- `loop`: `Promst`, the search, one level at a time, top to bottom;
- `score_model`: `PromptScoreModel`, the learned heuristic that predicts a prompt's score
  before it is run.

The feedback rules that end failed episodes are the task's (`agentopt.tasks.rules`).
"""

from agentopt.optimizers.promst.loop import Promst, PromstConfig

__all__ = ["Promst", "PromstConfig"]
