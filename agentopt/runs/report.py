"""Reports: a run's Markdown summary, and plots of score against LM calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agentopt.optimizers.base import OptimizationResult
from agentopt.stats import MeanCI


def fmt_ci(ci: MeanCI) -> str:
    return f"{ci.mean:.3f} [{ci.low:.2f}, {ci.high:.2f}]"


def run_report(result: OptimizationResult) -> str:
    """Markdown summary of one optimisation run."""
    lines = [
        f"# {result.method} on {result.task}",
        "",
        f"- seed {result.seed}; {result.n_candidates} prompts scored; "
        f"{result.lm_calls} LM calls in the search, {result.total_calls or result.lm_calls} in all "
        f"(validation and test scoring included); stopped by: {result.stopped_by}",
        "",
        "| prompt | validation | test (held out) |",
        "| --- | --- | --- |",
        f"| human | {fmt_ci(result.human_validation.score)} | {fmt_ci(result.human_test.score)} |",
        f"| {result.method} best (`{result.best_prompt.id}`) | {fmt_ci(result.validation.score)} "
        f"| {fmt_ci(result.test.score)} |",
        "",
    ]
    if result.vs_human is not None:
        d = result.vs_human
        lines += [
            f"Best minus human on the same {d.n} test instances: {d.mean:+.3f} "
            f"(95% CI [{d.low:+.3f}, {d.high:+.3f}], Wilcoxon signed-rank p = {d.p_value:.3g}; "
            f"better on {d.wins}, worse on {d.losses}).",
            "",
        ]
    if result.gate is not None:
        g = result.gate
        final = "; the final choice was refused in favour of the human prompt" if g["final_refused"] else ""
        lines += [
            f"Significance gate (alpha {g['alpha']}): {g['checked']} children checked against their "
            f"parent on validation during the search, {g['refused']} refused{final}.",
            "",
        ]
    if result.pass_at_k is not None:
        lines += [
            f"Best of {result.attempts} trials per test instance, retried until the environment "
            f"said it succeeded (pass@{result.attempts}, not one attempt): "
            f"{fmt_ci(result.pass_at_k.score)}, success rate {result.pass_at_k.success_rate:.2f}.",
            "",
        ]
    if result.rounds:
        keys = list(result.rounds[0].keys())
        lines += ["## Rounds", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
        for r in result.rounds:
            lines.append("| " + " | ".join(_cell(r.get(k)) for k in keys) + " |")
        lines.append("")
    lines += ["## Best prompt", "", "```text", result.best_prompt.text, "```", ""]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def plot_score_vs_calls(results: Sequence[OptimizationResult], out: Path, title: str) -> Path:
    """Best train score so far against LM calls, one line per result; a method's seeds share
    a colour and one legend entry, which gives its mean test score over them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    methods = list(dict.fromkeys(r.method for r in results))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    labelled: set[str] = set()
    for result in results:
        if not result.history:
            continue
        xs = [h.calls for h in result.history]
        ys = [h.best_so_far for h in result.history]
        label = None
        if result.method not in labelled:
            labelled.add(result.method)
            runs = [r for r in results if r.method == result.method]
            test = sum(r.test.score.mean for r in runs) / len(runs)
            seeds = f"{len(runs)} seeds, " if len(runs) > 1 else ""
            label = f"{result.method} ({seeds}test {test:.2f})"
        ax.step(xs, ys, where="post", color=colours[result.method], alpha=0.8, label=label)
    if results:
        ax.axhline(
            results[0].human_validation.score.mean, color="grey", linestyle=":", label="human (validation)"
        )
    ax.set_xlabel("LM calls")
    ax.set_ylabel("best train score so far")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
