"""The peer benchmark's report: RESULTS.md and one plot per task, from the cells of one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.peers.cells import AGENTOPT_SIDE, BASELINE, INVOCATIONS_FILE, PEERS, SETTINGS_FILE, Cell


def per_instance(cells: Sequence[Cell]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for cell in cells:
        for key, score in cell.test_scores.items():
            sums.setdefault(key, []).append(score)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def added_methods(cells: Sequence[Cell]) -> list[str]:
    """The cell names of agentopt methods run beside the primary one, in a fixed order."""
    return sorted({c.method for c in cells} - {BASELINE, AGENTOPT_SIDE, *PEERS})


def cell_label(cell: Cell) -> str:
    """How a row is named in the report: the method, with agentopt's added methods marked."""
    if cell.method == AGENTOPT_SIDE:
        return f"agentopt {cell.extra.get('method', '')}".strip()
    if cell.method.startswith(AGENTOPT_SIDE + "-"):
        return f"agentopt {cell.extra.get('method', '')} (added)"
    return cell.method


def paired(ours: Sequence[Cell], theirs: Sequence[Cell]) -> str:
    """The paired difference of two rows over their shared test instances, each instance's score
    averaged over the seeds *both* rows ran (the unoptimised program has no seed: all of the
    other row's seeds pair with it), so a seed one row lacks never weighs on the other."""
    from agentopt.stats import paired_difference

    seedless = {BASELINE}
    if ours and theirs and ours[0].method not in seedless and theirs[0].method not in seedless:
        shared = {c.seed for c in ours} & {c.seed for c in theirs}
        if not shared:
            return "- (no seed in common)"
        if shared != {c.seed for c in ours} or shared != {c.seed for c in theirs}:
            text = str(paired_difference(per_instance([c for c in ours if c.seed in shared]),
                                         per_instance([c for c in theirs if c.seed in shared])))
            return f"{text} (seeds {','.join(map(str, sorted(shared)))})"
    return str(paired_difference(per_instance(ours), per_instance(theirs)))


def summary_table(cells: Sequence[Cell]) -> list[str]:
    """One row per task: every row's test mean, and each agentopt row paired with each peer."""
    ours = [AGENTOPT_SIDE, *added_methods(cells)]
    rows = [*ours, *PEERS, BASELINE]
    present = [m for m in rows if any(c.method == m for c in cells)]
    label = {m: cell_label(next(c for c in cells if c.method == m)) for m in present}
    pairs = [(a, b) for a in ours if a in present for b in PEERS if b in present]
    lines = [
        "| task | seeds | " + " | ".join(label[m] for m in present) + " | "
        + " | ".join(f"{label[a]} minus {b}" for a, b in pairs) + " |",
        "|" + " --- |" * (2 + len(present) + len(pairs)),
    ]
    for task in dict.fromkeys(c.task for c in cells):
        mine = [c for c in cells if c.task == task]
        by = {m: [c for c in mine if c.method == m] for m in present}
        means = [f"{sum(s := per_instance(by[m]).values()) / len(s):.3f}" if by[m] else "-" for m in present]
        diffs = [paired(by[a], by[b]) if by[a] and by[b] else "-" for a, b in pairs]
        seeds = ",".join(map(str, sorted({c.seed for c in mine if c.method != BASELINE})))
        lines.append(f"| {task} | {seeds} | " + " | ".join(means + diffs) + " |")
    return lines


def write_report(cells: Sequence[Cell], out: Path, header: Sequence[str] = ()) -> Path:
    from agentopt.runs.report import fmt_ci
    from agentopt.stats import mean_ci

    lines = ["# agentopt vs DSPy MIPROv2 and GEPA", "", *header, ""]
    lines += [
        "Test mean [95% CI] over the test instances (an instance's score is its mean over seeds). Search "
        "calls (mean, and range over seeds), tokens and wall time of the search as counted by the proxy in "
        "front of the server, the choice on validation included; the unoptimised DSPy program has no "
        "search. Test calls: the calls that scored the result on test (agentopt's also score the human "
        "prompt there, for its own report). The last column is the paired difference of agentopt's "
        "primary method (the comparison fixed in advance) with each other row on the same test "
        "instances and seeds, with its bootstrap 95% CI and p-value (Wilcoxon signed-rank, or the exact "
        "sign test for 0/1 scores). Rows marked (added) are agentopt methods run beside the primary one "
        "with the same budget; they were not the comparison fixed in advance, and the line under the "
        "table pairs each of them with each peer.",
        "",
        "## All tasks",
        "",
        "Test means (an instance's score is its mean over seeds), and each agentopt method paired with "
        "each peer on the same test instances and seeds.",
        "",
        *summary_table(cells),
        "",
    ]
    for task in dict.fromkeys(c.task for c in cells):
        mine = [c for c in cells if c.task == task]
        ours = [c for c in mine if c.method == AGENTOPT_SIDE]
        lines += [
            f"## {task}",
            "",
            "| method | seeds | test | search calls | search tokens | test calls | "
            f"search wall s | {cell_label(ours[0]) if ours else 'agentopt'} minus this |",
            "|" + " --- |" * 8,
        ]
        more = added_methods(mine)
        for method in (BASELINE, AGENTOPT_SIDE, *more, *PEERS):
            group = [c for c in mine if c.method == method]
            if not group:
                continue
            scores = per_instance(group)
            diff = paired(ours, group) if ours and method != AGENTOPT_SIDE else "-"
            n = len(group)

            def mean(field: str, of: Sequence[Cell] = group) -> float:
                return sum(getattr(c, field) for c in of) / len(of)

            calls = [c.search_calls for c in group]
            if method == BASELINE:
                search = f"- | - | {mean('test_calls'):.0f} | -"
            else:
                spread = f" ({min(calls)}-{max(calls)})" if n > 1 else ""
                past = sum(1 for c in group if c.budget_calls and c.search_calls > c.budget_calls)
                spread += f", {past} past the budget" if past else ""
                search = (f"{mean('search_calls'):.0f}{spread} | {mean('search_tokens'):.0f} | "
                          f"{mean('test_calls'):.0f} | {mean('wall_s'):.0f}")
            seeds = ",".join(str(c.seed) for c in sorted(group, key=lambda c: c.seed))
            lines.append(f"| {cell_label(group[0])} | {'-' if method == BASELINE else seeds} | "
                         f"{fmt_ci(mean_ci(list(scores.values())))} | {search} | {diff} |")
        lines.append("")
        for cell in mine:
            for failed in cell.extra.get("failed_attempts", []):
                lines += [f"{cell.method}, seed {cell.seed}: an attempt stopped after {failed['calls']} "
                          f"calls on an error DSPy does not catch and was played again from the start; its "
                          f"calls are not in the table ({failed['error']})", ""]
        # A method added beside the primary one is paired with each peer too, on its own line.
        for method in more:
            theirs = [c for c in mine if c.method == method]
            pairs = [f"minus {peer}: {paired(theirs, group)}"
                     for peer in PEERS if (group := [c for c in mine if c.method == peer])]
            if pairs:
                lines += [f"{cell_label(theirs[0])} " + "; ".join(pairs), ""]
    (out / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    plot(cells, out)
    return out / "RESULTS.md"


def plot(cells: Sequence[Cell], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for task in dict.fromkeys(c.task for c in cells):
        fig, ax = plt.subplots(figsize=(6, 4))
        more = added_methods([c for c in cells if c.task == task])
        markers = [(AGENTOPT_SIDE, "o"), *((m, "D") for m in more), ("mipro", "s"), ("gepa", "^"),
                   (BASELINE, "x")]
        for method, marker in markers:
            group = [c for c in cells if c.task == task and c.method == method]
            if group:
                ax.scatter([c.search_calls for c in group], [c.test_mean for c in group], marker=marker,
                           label=cell_label(group[0]))
        ax.set_xlabel("LM calls in the search (counted at the proxy)")
        ax.set_ylabel("test score (one attempt per instance)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"score_vs_calls_{task}.png", dpi=120)
        plt.close(fig)


def report_header(out: Path, cells: Sequence[Cell]) -> list[str]:
    """Where the cells came from: the settings recorded with them and every invocation that ran."""
    path = out / SETTINGS_FILE
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    lines = []
    log = out / INVOCATIONS_FILE
    for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
        run = json.loads(line)
        lines.append(f"- ran `{run['command']}` on {run['machine']}, {run['start']} to {run['end']} UTC "
                     f"({run['wall_s']:.0f} s, {run['cells']} cells)")
    if recorded:
        lines.append(f"- model: {recorded['served_model']} behind one counting proxy; budget "
                     f"{recorded['budget_calls']} LM calls per search; n train/validation/test "
                     f"{recorded['n_train']}/{recorded['n_validation']}/{recorded['n_test']}; peers "
                     f"stopped {recorded.get('peer_stopping', 'when their sizing ran out')}")
    searched = sum(c.wall_s for c in cells if c.method != BASELINE)
    lines.append(f"- the searches in the tables took {searched:.0f} s in all "
                 f"(report written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    return lines
