"""Every per-method config the repo's benchmarks pass to `agentopt bench --config` builds its
optimisers: a misspelt option or an out-of-range value would otherwise surface only minutes
into `make demo` or hours into the CPU benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentopt.errors import UserError
from agentopt.optimizers.registry import build_optimizer, read_method_config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# A recorded run keeps a config.json of its own, beside its journal or summary: the run's
# settings, not a --config file.
CONFIGS = sorted(p for p in BENCHMARKS.rglob("config*.json")
                 if not any((p.parent / name).exists() for name in ("events.jsonl", "summary.json")))


def test_the_demo_configs_are_found() -> None:
    names = {p.relative_to(BENCHMARKS).as_posix() for p in CONFIGS}
    assert {"demo/config-single-turn.json", "demo/config-multi-step.json", "methods/config.json"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(BENCHMARKS).as_posix())
def test_every_method_config_builds(path: Path) -> None:
    """Read as `agentopt bench --config` reads it, then built as the bench builds each method."""
    for method, settings in read_method_config(path).items():
        build_optimizer(method, settings)


def test_a_misspelt_option_is_refused() -> None:
    with pytest.raises(UserError, match="n_childrn"):
        build_optimizer("promst", {"n_childrn": 2})
