"""Optimisers from outside agentopt: registered in code or through an installed plugin's entry
point, run by `agentopt.optimize`, `agentopt optimize` and `agentopt bench`, resumed after an
interrupt, and refused in one line when something about them is wrong.

The third-party optimiser here asks the optimizer model for a few rewrites of the human prompt,
scores each on train and lets `RunContext.finish` choose. It runs on the linewalk fixture task:
the scripted agent solves every instance when its prompt holds MAGIC and otherwise moves right
once per "Hint" line, so one rewrite is best, one is partial and one is an empty reply.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import agentopt
from agentopt.errors import UserError
from agentopt.lm import CallJournal, register_script
from agentopt.optimizers import (
    Optimizer,
    method_class,
    method_names,
    method_sources,
    register_optimizer,
    unregister_optimizer,
)
from agentopt.optimizers.base import OptimizationResult, RunContext, search_until_budget
from agentopt.optimizers.opro import Opro
from agentopt.types import Prompt
from tests.support import sample_index
from tests.support.cli import one_error_line, run_main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
MAGIC = "Always answer {right}."
REWRITES = ("Walk to the goal.\nHint: go right.", f"Reach the goal on the line. {MAGIC}", "")


class BestOfParaphrases:
    """Ask for ``n`` rewrites of the human prompt, score each on train, keep the best."""

    name = "paraphrase-best"

    def __init__(self, n: int = 3, **unknown: Any) -> None:
        if unknown:
            raise UserError(f"{self.name} takes only n (got {', '.join(unknown)})")
        if not isinstance(n, int) or n < 1:
            raise UserError(f"{self.name}: n must be a positive integer, got {n!r}")
        self.n = n

    def optimize(self, ctx: RunContext) -> OptimizationResult:
        human = Prompt(text=ctx.task.initial_prompt)
        ctx.add_candidate(human)
        ctx.score(human)
        ask = [{"role": "user", "content": f"Rewrite this prompt.\n<prompt>\n{human.text}\n</prompt>"}]
        left = iter(range(self.n))

        def one_rewrite() -> bool:
            k = next(left, None)
            if k is None:
                return False
            text = ctx.ask_optimizer(f"{self.name}/{k}", ask, sample=k, temperature=1.0).strip()
            if text:  # an empty reply is no candidate
                rewrite = Prompt(text=text, parents=(human.id,), operator="paraphrase")
                ctx.add_candidate(rewrite)
                ctx.score(rewrite)
            return True

        stopped_by = search_until_budget(one_rewrite)
        return ctx.finish(self.name, human, stopped_by, rounds=[])


class World:
    """The scripted model of a test: the linewalk agent for chats with a system message, the
    rewriter otherwise. It counts the calls it answered, and can be told to be interrupted
    (KeyboardInterrupt, as Ctrl-C) once, when it has answered a given number."""

    def __init__(self, name: str) -> None:
        self.answered = 0
        self.interrupt_at: int | None = None
        self.model = register_script(name, self)

    def __call__(self, messages, params) -> str:
        if self.interrupt_at is not None and self.answered >= self.interrupt_at:
            self.interrupt_at = None
            raise KeyboardInterrupt
        self.answered += 1
        if messages[0].role == "system":
            prompt, step = messages[0].content, messages[-1].content.count("Action ")
            return "{right}" if MAGIC in prompt or step < prompt.count("Hint") else "{left}"
        return REWRITES[sample_index(params) % len(REWRITES)]


def settings(world: World, **more: Any) -> dict[str, Any]:
    return {"model": world.model, "tasks_dirs": [str(FIXTURES)], "seed": 1, "concurrency": 1, **more}


def without_run_dir(result: OptimizationResult) -> dict[str, Any]:
    return result.model_dump(mode="json", exclude={"run_dir"})


@pytest.fixture
def registered():
    register_optimizer(BestOfParaphrases.name, BestOfParaphrases)
    yield BestOfParaphrases.name
    unregister_optimizer(BestOfParaphrases.name)


@pytest.fixture
def registering():
    """`register_optimizer` that is undone after the test."""
    names: list[str] = []

    def register(name: str, target: Any, **kwargs: Any) -> None:
        names.append(name)
        register_optimizer(name, target, **kwargs)

    yield register
    for name in names:
        unregister_optimizer(name)


# --- registered in code ---------------------------------------------------------------------------
def test_the_protocol_is_public_and_the_built_ins_meet_it(registered):
    assert agentopt.register_optimizer is register_optimizer and agentopt.Optimizer is Optimizer
    assert isinstance(BestOfParaphrases(), Optimizer) and isinstance(Opro(), Optimizer)
    assert method_class(registered) is BestOfParaphrases
    assert "opro" in method_names() and registered in method_names()
    [source] = [s for s in method_sources() if s.name == registered]
    assert source.origin == "code" and source.target.endswith(":BestOfParaphrases")


def test_a_registered_optimizer_runs_through_the_api_and_chooses_the_best_rewrite(registered, tmp_path):
    world = World("third-party-api")
    result = agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "run", **settings(world))
    assert result.method == registered and result.stopped_by == "converged"
    assert MAGIC in result.best_prompt.text and result.test.score.mean == 1.0
    assert result.human_test.score.mean < 1.0 and result.n_candidates == 3  # the empty reply is none
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == registered


def test_a_registered_optimizer_takes_its_hyperparameters_and_refuses_unknown_ones(registered, tmp_path):
    world = World("third-party-options")
    one = agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "one",
                            method_config={"n": 1}, **settings(world))
    assert one.n_candidates == 2 and MAGIC not in one.best_prompt.text
    with pytest.raises(UserError, match="takes only n"):
        agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "typo",
                          method_config={"nn": 1}, **settings(world))
    assert not (tmp_path / "typo").exists()  # refused before the run directory was made


def test_an_interrupted_run_resumes_to_the_same_result_without_paying_twice(registered, tmp_path):
    world = World("third-party-resume")
    full = agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "full", **settings(world))
    paid_in_full = world.answered

    world.answered, world.interrupt_at = 0, paid_in_full // 2  # in the middle of a rewrite's episodes
    with pytest.raises(KeyboardInterrupt):
        agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "cut", **settings(world))
    paid_before = world.answered
    assert not (tmp_path / "cut" / "result.json").exists()

    resumed = agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "cut", resume=True,
                                **settings(world))
    assert without_run_dir(resumed) == without_run_dir(full)
    assert 0 < paid_before < paid_in_full and world.answered == paid_in_full  # nothing paid twice
    journal = CallJournal(tmp_path / "cut" / "calls.jsonl").read()
    assert sum(1 for r in journal if not r.cached and r.error is None) == paid_in_full


def test_resuming_a_run_whose_method_is_no_longer_registered_says_to_register_it(registered, tmp_path,
                                                                                  capsys):
    world = World("third-party-gone")
    world.interrupt_at = 5
    with pytest.raises(KeyboardInterrupt):
        agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "run", **settings(world))
    unregister_optimizer(registered)
    with pytest.raises(UserError, match="registered in code\\? register it before resuming"):
        agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "run", resume=True,
                          **settings(world))
    code, _, err = run_main(capsys, "optimize", "linewalk", "--resume", "--run-dir", str(tmp_path / "run"))
    assert "register it before resuming" in one_error_line(code, err)
    register_optimizer(registered, BestOfParaphrases)  # and back: the run goes on
    result = agentopt.optimize("linewalk", method=registered, run_dir=tmp_path / "run", resume=True,
                               **settings(world))
    assert MAGIC in result.best_prompt.text


def test_bench_runs_a_registered_optimizer_and_resumes_it_after_an_interrupt(registered, tmp_path, capsys):
    world = World("third-party-bench")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"opro": {"steps": 1, "n_per_step": 1}, registered: {"n": 3}}))

    def bench(out: Path) -> tuple[int, str, str]:
        return run_main(capsys, "bench", "--tasks", "linewalk", "--tasks-dir", str(FIXTURES),
                        "--methods", f"opro,{registered}", "--seeds", "1", "-m", world.model,
                        "--concurrency", "1", "--budget-calls", "60", "--config", str(config),
                        "--out", str(out), "--json")

    code, out, err = bench(tmp_path / "full")
    assert code == 0, err
    full = {r["method"]: r for r in json.loads(out)}
    assert set(full) == {"human", "opro", registered} and MAGIC in full[registered]["best_prompt"]["text"]
    assert f"| {registered} |" in (tmp_path / "full" / "results.md").read_text()
    paid_in_full = world.answered

    world.answered, world.interrupt_at = 0, paid_in_full - 10  # inside the third-party run, the last
    code, _, err = bench(tmp_path / "cut")
    assert code == 130 and "interrupted" in err
    runs = tmp_path / "cut" / "runs"
    assert (runs / "opro-linewalk-seed1" / "result.json").exists()
    assert not (runs / f"{registered}-linewalk-seed1" / "result.json").exists()
    code, out, err = bench(tmp_path / "cut")
    assert code == 0, err
    again = {r["method"]: r for r in json.loads(out)}
    for method, result in full.items():
        assert {**result, "run_dir": None} == {**again[method], "run_dir": None}
    assert world.answered == paid_in_full


def test_a_method_filed_under_another_name_is_refused_before_the_run(registering, tmp_path):
    registering("paraphrase-alias", BestOfParaphrases)
    world = World("third-party-alias")
    with pytest.raises(UserError, match="whose name is 'paraphrase-best'"):
        agentopt.optimize("linewalk", method="paraphrase-alias", run_dir=tmp_path / "run", **settings(world))
    assert not (tmp_path / "run").exists()


# --- registration rules ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Best", "best of", "a/b", "-x", "", "a,b", "ünï"])
def test_a_name_that_could_not_be_asked_for_is_refused(name):
    with pytest.raises(UserError, match="is not allowed"):
        register_optimizer(name, BestOfParaphrases)


def test_a_clash_is_refused_unless_replace_and_the_same_target_again_is_nothing(registering):
    registering("paraphrase-best", BestOfParaphrases)
    registering("paraphrase-best", BestOfParaphrases)  # the same class
    registering("paraphrase-best", f"{__name__}:BestOfParaphrases")  # the same, by its path
    with pytest.raises(UserError, match="'opro' is already registered .*replace=True"):
        register_optimizer("opro", BestOfParaphrases)

    class Other(BestOfParaphrases):
        pass

    with pytest.raises(UserError, match="already registered"):
        register_optimizer("paraphrase-best", Other)
    registering("opro", Other, replace=True)
    assert method_class("opro") is Other
    assert [s.origin for s in method_sources() if s.name == "opro"] == ["code"]
    unregister_optimizer("opro")
    assert method_class("opro") is Opro  # the built-in is back


def test_a_target_that_is_no_optimiser_is_refused(registering):
    with pytest.raises(UserError, match="not an optimiser class"):
        register_optimizer("not-one", dict)
    with pytest.raises(UserError, match="not of the form 'module:Class'"):
        register_optimizer("not-one", "tests.unit.test_third_party_optimizers")
    registering("lazy-missing", "no_such_module_xyz:Thing")  # a path is imported when first asked for
    with pytest.raises(UserError, match="cannot be loaded: ModuleNotFoundError"):
        method_class("lazy-missing")
    registering("lazy-not-a-class", f"{__name__}:MAGIC")
    with pytest.raises(UserError, match="not an optimiser class"):
        method_class("lazy-not-a-class")


def test_an_unknown_method_lists_every_name(registered, capsys):
    with pytest.raises(UserError, match=f"unknown method 'nope' \\(choose from human, .*{registered}"):
        method_class("nope")
    code, _, err = run_main(capsys, "optimize", "linewalk", "--method", "nope", "--tasks-dir", str(FIXTURES))
    assert registered in one_error_line(code, err)


# --- through an installed plugin's entry point -----------------------------------------------------
PLUGIN = '''
"""An optimiser plugin, as another package would ship it."""

from tests.unit.test_third_party_optimizers import BestOfParaphrases


class PluginBestOf(BestOfParaphrases):
    name = "plugin-best-of"

NOT_A_CLASS = 3
'''


def install(root: Path, monkeypatch, dist: str, entry_points: dict[str, str],
            modules: dict[str, str]) -> None:
    """Put a distribution on sys.path the way pip leaves one: ``NAME-0.1.dist-info`` with its
    metadata and entry points, beside its modules; importlib.metadata then finds it."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"{name} = {value}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("[agentopt.optimizers]\n" + "\n".join(lines) + "\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, module, raising=False)  # and again when the test ends
    monkeypatch.syspath_prepend(str(root))


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> str:
    install(tmp_path / "site", monkeypatch, "fake_dist", {"plugin-best-of": "fake_plugin:PluginBestOf"},
            {"fake_plugin": PLUGIN})
    return "plugin-best-of"


def test_a_plugin_is_listed_without_being_imported(plugin, capsys):
    assert plugin in method_names() and "fake_plugin" not in sys.modules
    [source] = [s for s in method_sources() if s.name == plugin]
    assert (source.origin, source.target, source.distribution) == (
        "plugin", "fake_plugin:PluginBestOf", "distribution fake_dist 0.1")
    code, out, err = run_main(capsys, "methods", "--json")
    assert code == 0, err
    rows = {row["method"]: row for row in json.loads(out)}
    assert rows[plugin]["origin"] == "plugin" and rows["promst"]["origin"] == "built-in"
    assert "fake_plugin" not in sys.modules


def test_a_plugin_runs_through_the_cli_and_resumes(plugin, tmp_path, capsys):
    world = World("third-party-plugin")
    run = tmp_path / "run"
    args = ("optimize", "linewalk", "--method", plugin, "-m", world.model, "--tasks-dir", str(FIXTURES),
            "--concurrency", "1", "--run-dir", str(run), "--json")
    world.interrupt_at = 12
    code, _, err = run_main(capsys, *args)
    assert code == 130, err
    code, out, err = run_main(capsys, "optimize", "linewalk", "--resume", "--run-dir", str(run), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["method"] == plugin and MAGIC in result["best_prompt"]["text"]
    assert method_class(plugin).__name__ == "PluginBestOf"


def test_code_registration_wins_over_a_plugin_of_the_same_name(plugin, registering):
    class Mine(BestOfParaphrases):
        name = "plugin-best-of"

    registering(plugin, Mine)
    assert method_class(plugin) is Mine and method_names().count(plugin) == 1


@pytest.mark.parametrize(
    ("value", "modules", "message"),
    [
        ("missing_plugin_mod:Thing", {}, "ModuleNotFoundError: No module named 'missing_plugin_mod'"),
        ("crashing_plugin:Thing", {"crashing_plugin": "raise RuntimeError('no GPU\\nat all')\n"},
         "RuntimeError: no GPU at all"),
        ("fake_plugin:Missing", {"fake_plugin": PLUGIN}, "AttributeError"),
        ("fake_plugin:NOT_A_CLASS", {"fake_plugin": PLUGIN}, "is 3, not an optimiser class"),
    ],
)
def test_a_broken_plugin_is_one_line_naming_it_and_its_distribution(value, modules, message, tmp_path,
                                                                     monkeypatch, capsys):
    install(tmp_path / "site", monkeypatch, "broken_dist", {"broken": value}, modules)
    assert "broken" in method_names()  # listing it does not load it
    with pytest.raises(UserError) as caught:
        method_class("broken")
    text = str(caught.value)
    assert "'broken'" in text and "broken_dist 0.1" in text and message in text and "\n" not in text
    code, _, err = run_main(capsys, "optimize", "linewalk", "--method", "broken",
                            "--tasks-dir", str(FIXTURES))
    assert "broken_dist" in one_error_line(code, err)


def test_two_plugins_offering_one_name_are_refused(tmp_path, monkeypatch):
    install(tmp_path / "a", monkeypatch, "dist_a", {"twin": "mod_a:Twin"}, {})
    install(tmp_path / "b", monkeypatch, "dist_b", {"twin": "mod_b:Twin"}, {})
    with pytest.raises(UserError, match="more than one plugin .*dist_[ab].*dist_[ab]"):
        method_class("twin")


# --- an optimiser whose __init__ takes no **kwargs ------------------------------------------------
class Strict(BestOfParaphrases):
    """Takes only ``n``, and, unlike agentopt's own, lets Python refuse anything else."""

    name = "strict-best"

    def __init__(self, n: int = 3) -> None:
        self.n = n


class NeedsN(BestOfParaphrases):
    name = "needs-n"

    def __init__(self, n: int) -> None:
        self.n = n


def test_a_misspelt_option_of_a_class_without_kwargs_is_one_line(registering, tmp_path, capsys):
    from agentopt.optimizers import build_optimizer

    registering(Strict.name, Strict)
    registering(NeedsN.name, NeedsN)
    with pytest.raises(UserError, match=r"^method 'strict-best' has no option 'nn' \(its options: n\)$"):
        build_optimizer(Strict.name, {"nn": 2})
    with pytest.raises(UserError, match=r"^method 'needs-n' needs the option 'n'$"):
        build_optimizer(NeedsN.name, {})
    assert build_optimizer(Strict.name, {"n": 2}).n == 2
    world = World("third-party-strict")
    with pytest.raises(UserError, match="has no option 'nn'"):
        agentopt.optimize("linewalk", method=Strict.name, run_dir=tmp_path / "run",
                          method_config={"nn": 2}, **settings(world))
    assert not (tmp_path / "run" / "events.jsonl").exists()


def test_an_unknown_method_on_the_command_line_says_code_registrations_are_not_seen(capsys):
    code, _, err = run_main(capsys, "optimize", "linewalk", "--method", "my-own-optimizer",
                            "--tasks-dir", str(FIXTURES))
    line = one_error_line(code, err)
    assert "installed plugins (entry-point group agentopt.optimizers)" in line
    assert "agentopt.register_optimizer in another process" in line


# --- bench: what it is asked must be what it runs -----------------------------------------------
def test_bench_refuses_to_report_a_cell_run_with_other_settings(registered, tmp_path):
    world, other = World("third-party-cells"), World("third-party-cells-b")
    out = tmp_path / "bench"
    base = {"tasks_dirs": [str(FIXTURES)], "concurrency": 1, "method_config": {registered: {"n": 2}}}
    first = agentopt.bench(["linewalk"], [registered], out, model=world.model, **base)
    # Asked again alike (a transport setting aside), the finished runs are read back, not rerun.
    paid = world.answered
    again = agentopt.bench(["linewalk"], [registered], out, model=world.model, **base | {"concurrency": 2})
    assert world.answered == paid and [r.test.score.mean for r in again] == [r.test.score.mean for r in first]
    with pytest.raises(UserError, match=r"human-linewalk-seed0 was run with model='scripted/third-party-"
                                        r"cells', n_test=None; this bench asks model='scripted/third-party-"
                                        r"cells-b', n_test=2: use another output folder \(--out\)"):
        agentopt.bench(["linewalk"], [registered], out, model=other.model, n_test=2, **base)
    with pytest.raises(UserError, match=rf"{registered}-linewalk-seed0 was run with method_config="
                                        r"\{'n': 2\}; this bench asks method_config=\{'n': 3\}"):
        agentopt.bench(["linewalk"], [registered], out, model=world.model,
                       **base | {"method_config": {registered: {"n": 3}}})
    assert other.answered == 0


def test_bench_refuses_a_method_config_for_methods_it_does_not_run_and_a_string_for_a_list(
        registered, tmp_path):
    world = World("third-party-grid")
    out = tmp_path / "bench"
    common = {"tasks_dirs": [str(FIXTURES)], "model": world.model, "concurrency": 1}
    for stray, key in (({"paraphrase-bset": {"n": 2}}, "paraphrase-bset"), ({"n": 2}, "n")):
        with pytest.raises(UserError, match=rf"^method_config has '{key}', which is not one of this bench's "
                                            rf"methods \(human, {registered}\)"):
            agentopt.bench(["linewalk"], [registered], out, method_config=stray, **common)
    with pytest.raises(UserError, match=r"bench methods is a list: pass \['opro'\], not 'opro'"):
        agentopt.bench(["linewalk"], "opro", out, **common)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"bench tasks is a list: pass \['linewalk'\], not 'linewalk'"):
        agentopt.bench("linewalk", [registered], out, **common)  # type: ignore[arg-type]
    assert not out.exists()
    # A method or seed named twice is run and reported once.
    results = agentopt.bench(["linewalk"], [registered, registered], out, seeds=[0, 0],
                             method_config={registered: {"n": 1}}, **common)
    assert sorted(r.method for r in results) == ["human", registered]
    table = (out / "results.md").read_text()
    assert table.count(f"| {registered} |") == 1
