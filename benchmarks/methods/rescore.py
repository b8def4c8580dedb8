"""A finished row's chosen prompts, scored again on test instances the row never played.

``confirm.sh`` replays whole searches, which on a multi-step task costs an hour a method and
need not choose again what the row chose. This script takes the prompts the row's runs chose
(``result.json``, one per seed), plays each distinct one and the human prompt on test instances
``--first`` .. ``--last`` - 1 with the agent settings the runs recorded, and tests the method
(an instance's score: its mean over the seeds' chosen prompts) against the human prompt on the
instances from ``--fresh`` on, paired, two-sided. The instances below ``--fresh`` are the
row's own test instances: scoring them again checks that this replay plays as the row did.

The plan (row, method, instances, the rule) is written to ``OUT/plan.json`` before the first
episode, and a rerun must keep it. Each episode's score is appended as it ends, so an
interrupted run resumes where it stopped and pays no episode twice.

    python benchmarks/methods/rescore.py benchmarks/methods/recorded/number-line promst \\
        --first 0 --fresh 30 --last 130 --out bench-out/rescore
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from agentopt.errors import UserError
from agentopt.files import check_writable_dir
from agentopt.optimizers.base import OptimizationResult
from agentopt.runs.optimize import load_result
from agentopt.stats import mean_ci, paired_difference
from agentopt.tasks.loader import Task, load_task
from agentopt.types import Trajectory
from benchmarks.methods.plan_file import instance_index, keep_plan

ALPHA = 0.05


class Plan(BaseModel):
    row: str
    task: str
    method: str
    seeds: list[int]
    first: int
    fresh: int
    last: int
    rule: str
    alpha: float = ALPHA  # a plan written before --alpha existed tested at 0.05


def row_runs(row: Path, method: str) -> tuple[OptimizationResult, list[OptimizationResult]]:
    """The row's human-prompt run and the method's runs (sorted by seed)."""
    runs = [load_result(d) for d in sorted((row / "runs").glob("*")) if (d / "result.json").is_file()]
    human = [r for r in runs if r.method == "human"]
    mine = sorted((r for r in runs if r.method == method), key=lambda r: r.seed)
    if len(human) != 1 or not mine:
        raise UserError(f"{row} needs one human run and at least one {method} run; "
                        f"found {len(human)} and {len(mine)}")
    return human[0], mine


def scores_path(out: Path, prompt_id: str) -> Path:
    return out / f"scores-{prompt_id}.jsonl"


def read_scores(out: Path, prompt_id: str) -> dict[str, float]:
    path = scores_path(out, prompt_id)
    if not path.exists():
        return {}
    scores = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            scores[row["instance"]] = float(row["score"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # empty, or cut short by a kill: that episode is played again
    return scores


def drop_torn_line(path: Path) -> None:
    """Cut a last line a kill left without its newline, so the next record starts a line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def play(out: Path, config: dict, task: Task, prompts: dict[str, str], first: int, last: int) -> None:
    """Play every prompt on test instances first .. last - 1 that it has not played yet."""
    from agentopt.lm import LM
    from agentopt.tasks.evaluate import evaluate
    from agentopt.tasks.rollout import LMAgent

    # The replay's own cache and call log, as the bench keeps them under its --out: answers
    # from other runs sharing the user's cache would make the replay depend on them.
    lm = LM(config["model"], max_concurrency=config.get("concurrency") or 4,
            cache=out / "cache.sqlite", journal=out / "calls.jsonl")
    agent = LMAgent(lm, task, max_tokens=config["agent_max_tokens"], history_tokens=config["history_tokens"],
                    constrain_actions=config["constrain_actions"])
    lock = threading.Lock()  # episodes may end on several threads; their lines must not mix
    for prompt_id, text in prompts.items():
        done = read_scores(out, prompt_id)
        todo = [i for i in task.instances("test", last)[first:] if i.id not in done]
        if not todo:
            continue
        started = time.monotonic()
        print(f"{prompt_id}: {len(todo)} episodes to play", file=sys.stderr, flush=True)
        drop_torn_line(scores_path(out, prompt_id))
        with scores_path(out, prompt_id).open("a", encoding="utf-8") as sink:

            def keep(trajectory: Trajectory, sink=sink) -> None:  # noqa: ANN001 - a text file
                record = {"instance": trajectory.instance.id, "score": trajectory.score,
                          "steps": trajectory.n_steps, "terminated_by": trajectory.terminated_by,
                          "actions": [s.action for s in trajectory.steps]}
                with lock:
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()

            evaluate(agent, task, text, todo, on_done=keep)
        print(f"{prompt_id}: done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


def report(out: Path, plan: Plan, human: OptimizationResult, mine: list[OptimizationResult]) -> str:
    human_scores = read_scores(out, human.best_prompt.id)
    per_seed = {r.seed: read_scores(out, r.best_prompt.id) for r in mine}
    wanted = {f"{plan.task}/test/{i}" for i in range(plan.first, plan.last)}
    missing = [pid for pid, s in [("human", human_scores), *per_seed.items()] if not wanted <= set(s)]
    if missing:
        return f"not finished: {missing} lack episodes"
    method_scores = {k: sum(s[k] for s in per_seed.values()) / len(per_seed) for k in wanted}
    fresh = {k for k in wanted if instance_index(k) >= plan.fresh}
    own = wanted - fresh

    # the replay check: the row's own test instances, scored again, against what the row recorded
    # the human prompt's own run decides what the row recorded for it, if a seed kept it too
    recorded = {r.best_prompt.id: r.test.scores for r in [*mine, human]}
    replayed = {human.best_prompt.id: human_scores, **{r.best_prompt.id: per_seed[r.seed] for r in mine}}
    pairs = [(replayed[pid][k], recorded[pid][k])
             for pid in replayed for k in sorted(own) if k in recorded[pid]]
    same, total = sum(abs(a - b) < 1e-9 for a, b in pairs), len(pairs)

    diff = paired_difference({k: method_scores[k] for k in fresh}, {k: human_scores[k] for k in fresh})
    verdict = "**yes**" if diff.mean > 0 and diff.p_value < plan.alpha else "no"
    human_id = human.best_prompt.id
    kept = ", ".join(f"seed {r.seed}: " + ("human" if r.best_prompt.id == human_id else r.best_prompt.id)
                     for r in mine)
    lines = [
        f"Rule: {plan.rule}",
        "",
        f"Prompts chosen: {kept}.",
        (f"Replay check, test instances {plan.first}-{plan.fresh - 1}: {same} of {total} episode scores "
         "equal to the row's." if own else "No replay check (--first is --fresh)."),
        "",
        f"| task | method | fresh {len(fresh)}: human | fresh {len(fresh)}: method "
        "| minus human (paired) | lift |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {plan.task} | {plan.method} | {mean_ci([human_scores[k] for k in fresh]).mean:.3f} "
        f"| {mean_ci([method_scores[k] for k in fresh]).mean:.3f} | {diff} | {verdict} |",
    ]
    for r in mine:
        if r.best_prompt.id == human.best_prompt.id:
            continue
        seed_diff = paired_difference({k: per_seed[r.seed][k] for k in fresh},
                                      {k: human_scores[k] for k in fresh})
        lines.append(f"\nSeed {r.seed} alone (not the test of the rule): {seed_diff}")
    return "\n".join(lines)


def run_config(row: Path, human: OptimizationResult) -> dict:
    """The agent settings the row's runs recorded (the human prompt's run stands for all)."""
    path = row / "runs" / Path(human.run_dir).name / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in ("task", "model", "agent_max_tokens", "history_tokens", "constrain_actions")
                   if k not in config]
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the row's settings {path} ({type(exc).__name__})") from None
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}: not a bench run's config.json")
    return config


def check_range(task: Task, human: OptimizationResult, first: int, fresh: int, last: int) -> None:
    """Refuse a range the task cannot play, or "fresh" episodes the row has already played."""
    if not 0 <= first <= fresh < last:
        raise UserError("need 0 <= --first <= --fresh < --last")
    size = task.manifest.splits.test
    if last > size:
        raise UserError(f"{task.name}'s test split holds {size} episodes; --last {last} asks for more")
    played = max((instance_index(k) for k in human.test.scores), default=-1)
    if fresh <= played:
        raise UserError(f"the row played test episodes up to {played}: --fresh must be above it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", type=Path, help="a finished row's folder (the bench's --out)")
    parser.add_argument("method")
    parser.add_argument("--first", type=int, default=0, help="first test instance to play")
    parser.add_argument("--fresh", type=int, required=True, help="first test instance the row never played")
    parser.add_argument("--last", type=int, required=True, help="one past the last test instance to play")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help="the level the test must pass (lower it for a second test of one claim)")
    parser.add_argument("--report-only", action="store_true",
                        help="play nothing; print the table of a replay already planned in --out")
    args = parser.parse_args(argv)
    try:
        human, mine = row_runs(args.row, args.method)
        config = run_config(args.row, human)
        task = load_task(config["task"], [Path(p) for p in config.get("tasks_dirs") or []])
        check_range(task, human, args.first, args.fresh, args.last)
        check_writable_dir(args.out, "--out")
        if not 0 < args.alpha < 1:
            raise UserError(f"--alpha must lie between 0 and 1, got {args.alpha}")
        correction = ("one test, no correction" if args.alpha == ALPHA
                      else "one test, at the level its plan set")
        plan = Plan(
            row=str(args.row), task=human.task, method=args.method, seeds=[r.seed for r in mine],
            first=args.first, fresh=args.fresh, last=args.last,
            rule=(f"{args.method}'s chosen prompts (an instance's score: the mean over seeds) beat the human "
                  f"prompt on test instances {args.fresh}-{args.last - 1}: paired, two-sided (Wilcoxon "
                  f"signed-rank; the sign test when every difference has one size, as in the bench's "
                  f"tables), p < {args.alpha} and a mean difference above 0; {correction}"),
            alpha=args.alpha,
        )
        if args.report_only and not (args.out / "plan.json").exists():
            raise UserError(f"{args.out} holds no replay (no plan.json) to report on")
        keep_plan(args.out, plan, "rescoring")
        prompts = {human.best_prompt.id: human.best_prompt.text}
        prompts.update({r.best_prompt.id: r.best_prompt.text for r in mine})
        if not args.report_only:
            play(args.out, config, task, prompts, args.first, args.last)
        text = report(args.out, plan, human, mine)
    except UserError as exc:
        print(f"rescore.py: {exc}", file=sys.stderr)
        return 2
    (args.out / "rescore.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if text.startswith("not finished") else 0


if __name__ == "__main__":
    sys.exit(main())
