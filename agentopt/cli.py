"""The ``agentopt`` command.

User errors (unknown model or task, missing key, unreachable endpoint, spent budget, bad file),
a model call that failed after every retry, and a file or folder the system refuses print one
line on stderr, with every secret redacted, and exit with code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agentopt.commands import print_json
from agentopt.commands.run_options import with_run_options
from agentopt.errors import LMError, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Make LLM agents better from feedback.",
)
console = Console()
err_console = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="litellm model string, or local/smollm2-135m")]
ApiBaseOpt = Annotated[
    str | None, typer.Option("--api-base", help="OpenAI-compatible endpoint URL (self-hosted servers)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0.001, help="seconds one model call may wait for its answer (default 60)"),
]
AttemptsOpt = Annotated[
    int | None, typer.Option("--attempts", min=1, help="tries per model call, the first included (default 6)")
]


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the models you can use without configuration, and how to name any other."""
    from agentopt.lm.catalog import model_catalog

    rows = model_catalog()
    if as_json:
        print_json(rows)
        return
    table = Table("model", "kind", "ready", "notes")
    for row in rows:
        table.add_row(row["model"], row["kind"], "yes" if row["ready"] else "no", row["notes"])
    console.print(table)
    console.print(
        "Any litellm model string also works, e.g. openai/gpt-4o-mini, anthropic/claude-3-5-haiku-20241022,"
        " ollama/llama3, or openai/NAME with --api-base for an OpenAI-compatible server;"
        " and local/PATH runs any GGUF file you have with llama.cpp."
    )


@app.command()
def chat(
    text: Annotated[str, typer.Argument(help="the user message")],
    model: ModelOpt = "local/smollm2-135m",
    system: Annotated[str | None, typer.Option("--system", "-s", help="system prompt")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    api_base: ApiBaseOpt = None,
    timeout: TimeoutOpt = None,
    attempts: AttemptsOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="always call the model")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send one message to a model and print the reply."""
    from agentopt.lm import LM, retry_policy

    lm = LM(model, api_base=api_base, cache=not no_cache, retry=retry_policy(timeout, attempts))
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    completion = lm.chat(messages, temperature=temperature, max_tokens=max_tokens)
    if as_json:
        print_json(completion.model_dump(mode="json"))
    else:
        sys.stdout.write(completion.text + "\n")


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="bind address; loopback unless you mean otherwise")] = "127.0.0.1",
    n_ctx: Annotated[int | None, typer.Option(min=256, help="context window (default: the model's)")] = None,
    model: ModelOpt = "local/smollm2-135m",
) -> None:
    """Serve a local model as an OpenAI-compatible endpoint (llama_cpp.server)."""
    from agentopt.lm.local_models import is_local
    from agentopt.lm.serve import check_port_free, serve_local, served_name

    if not is_local(model):
        raise UserError(f"serve runs local models only (local/NAME or local/PATH), not {model!r}")
    check_port_free(host, port)  # before the banner: a busy port is one error line, nothing else
    name = served_name(model)

    def announce() -> None:
        err_console.print(
            f"serving {model} at http://{host}:{port}/v1 as model '{name}' (litellm: openai/{name})"
        )

    serve_local(model, host=host, port=port, n_ctx=n_ctx, on_ready=announce)


ConstrainOpt = Annotated[
    bool,
    typer.Option("--constrain-actions", help="decode only well-formed actions (the task's action grammar)"),
]
AgentMaxTokensOpt = Annotated[
    int, typer.Option("--agent-max-tokens", min=8, help="tokens the agent may write per step")
]


TasksDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--tasks-dir", help="extra folder of task folders (also: AGENTOPT_TASKS_PATH)"),
]


tasks_app = typer.Typer(help="List the tasks agentopt can find, or check one (`tasks check`).")
app.add_typer(tasks_app, name="tasks")


@tasks_app.callback(invoke_without_command=True)
def tasks_cmd(ctx: typer.Context, tasks_dir: TasksDirOpt = None, as_json: JsonOpt = False) -> None:
    """List the tasks agentopt can find: registered in code, in task folders, the built-in suite
    and installed packages (entry-point group agentopt.tasks), in the order a name is looked up.
    A task that fails to load is listed with its error (the others still are); a source that
    hides another of the same name says so."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.text import Text

    from agentopt.tasks.loader import SPLIT_NAMES, task_listing

    rows = []
    for entry in task_listing(tasks_dir or []):
        t = entry.task
        rows.append({
            "name": entry.name,
            "title": None if t is None else (
                getattr(t, "title", "") or getattr(getattr(t, "manifest", None), "title", "")),
            "description": None if t is None else getattr(t, "description", ""),
            "splits": None if t is None else {s: getattr(t.splits, s) for s in SPLIT_NAMES},
            "rules": None if t is None else [r.name for r in t.rules],
            "source": entry.source if t is None else str(getattr(t, "source", "") or entry.source),
            "found_in": entry.source,  # built-in, a folder, registered in code, or an entry point
            "kind": entry.kind,  # built-in, folder, code or plugin
            "hides": entry.hides,  # the later sources of the same name this one stands in for
            "error": entry.error,
        })
    if as_json:
        print_json(rows)
        return
    table = Table("task", "description", "train/val/test", "feedback rules", "from")
    notes = []
    for r in rows:
        if r["hides"]:
            notes.append(f"{r['name']} is taken from {r['found_in']}; it hides {'; '.join(r['hides'])}")
        if r["error"] is not None:
            table.add_row(r["name"], Text("broken", style="red"), "-", "-", r["kind"])
            notes.append(f"{r['name']} is broken: {r['error']}")
            continue
        s = r["splits"]
        table.add_row(r["name"], Text(r["description"]), f"{s['train']}/{s['validation']}/{s['test']}",
                      ", ".join(r["rules"]), r["kind"])
    console.print(table)
    for note in notes:  # whole lines, never cut by the table's width
        err_console.print(note, highlight=False, markup=False, soft_wrap=True)


@tasks_app.command("check")
def tasks_check(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="task folder, name, or module:attribute")],
    tasks_dir: TasksDirOpt = None,
    max_instances: Annotated[
        int | None, typer.Option("--max-instances", min=1, help="instances per split to play (default: all)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that a task keeps the promises optimisers rely on, and print what breaks.
    Exits 1 when a check fails."""
    from agentopt.tasks.check import check_task, failures
    from agentopt.tasks.loader import load_task

    task = load_task(task_name, tasks_dir or [])
    results = check_task(task, max_instances=max_instances)
    if as_json:
        print_json([r.model_dump() for r in results])
    else:
        for r in results:
            mark = {True: "[green]ok[/]  ", False: "[red]FAIL[/]", None: "[dim]skip[/]"}[r.ok]
            console.print(f"{mark} {r.check:<13} {r.detail}", highlight=False, markup=True)
        broken = failures(results)
        verdict = f"{len(broken)} check(s) failed" if broken else "every check passed"
        console.print(f"{task.name}: {verdict}", highlight=False)
    if failures(results):
        raise typer.Exit(1)


@app.command()
def run(
    task_name: Annotated[str, typer.Argument(metavar="TASK", help="task name or folder")],
    model: ModelOpt = "local/smollm2-135m",
    prompt_file: Annotated[
        Path | None,
        typer.Option("--prompt", help="file with the system prompt (default: the task's human prompt)"),
    ] = None,
    split: Annotated[str, typer.Option(help="train, validation or test")] = "test",
    n: Annotated[
        int | None, typer.Option("--n", min=1, help="number of instances (default: the whole split)")
    ] = None,
    api_base: ApiBaseOpt = None,
    timeout: TimeoutOpt = None,
    attempts: AttemptsOpt = None,
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    runs_root: Annotated[Path, typer.Option("--runs-root", help="where run directories are created")] = Path(
        "runs"
    ),
    tasks_dir: TasksDirOpt = None,
    constrain_actions: ConstrainOpt = False,
    agent_max_tokens: AgentMaxTokensOpt = 192,
    as_json: JsonOpt = False,
) -> None:
    """Run an agent (model + prompt) on a task's instances and print the mean score."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from agentopt.files import check_writable_dir, read_text
    from agentopt.lm import LM, retry_policy
    from agentopt.store.rundir import RunDir
    from agentopt.tasks.evaluate import evaluate
    from agentopt.tasks.loader import load_task
    from agentopt.tasks.rollout import LMAgent

    if split not in ("train", "validation", "test"):
        raise UserError(f"unknown split {split!r} (use train, validation or test)")
    check_writable_dir(runs_root, "runs folder")
    task = load_task(task_name, tasks_dir or [])
    prompt = read_text(prompt_file, "prompt file").strip() if prompt_file else task.initial_prompt
    instances = task.instances(split, n)  # type: ignore[arg-type]
    lm = LM(model, api_base=api_base, max_concurrency=concurrency, retry=retry_policy(timeout, attempts))
    agent = LMAgent(lm, task, max_tokens=agent_max_tokens, constrain_actions=constrain_actions)
    rundir = RunDir.new(runs_root, f"run-{task.name}")
    rundir.write_json(
        "config.json",
        {
            "command": "run",
            "task": task.name,
            "model": model,
            "split": split,
            "n": len(instances),
            "prompt": prompt,
            "constrain_actions": constrain_actions,
            "agent_max_tokens": agent_max_tokens,
        },
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=as_json,
    ) as progress:
        bar = progress.add_task(f"{task.name} [{split}]", total=len(instances))

        def done(trajectory: object) -> None:
            rundir.append_jsonl("trajectories.jsonl", trajectory)
            progress.advance(bar)

        evaluation, _ = evaluate(
            agent, task, prompt, instances, max_concurrency=concurrency, on_done=done
        )
    result = {
        **evaluation.model_dump(mode="json"),
        "model": model,
        "run_dir": str(rundir.path),
        "lm_usage": lm.usage(),
    }
    rundir.write_json("summary.json", result)
    if as_json:
        print_json(result)
        return
    ci = evaluation.score
    console.print(
        f"[bold]{task.name}[/bold] ({split}, n={ci.n}, {model}): mean score "
        f"[bold]{ci.mean:.3f}[/bold]  95% CI [{ci.low:.3f}, {ci.high:.3f}]  "
        f"success {evaluation.success_rate:.0%}  mean steps {evaluation.mean_steps:.1f}"
    )
    if evaluation.rules_fired:
        console.print("rules fired: " + ", ".join(f"{k} x{v}" for k, v in evaluation.rules_fired.items()))
    console.print(f"trajectories: {rundir.path / 'trajectories.jsonl'}")


def _progress_printer(quiet: bool):  # noqa: ANN202 - a small closure factory
    def on_event(kind: str, data: dict) -> None:
        if quiet:
            return
        if kind == "level":
            err = data.get("score_model_abs_error")
            err_text = f", score-model error {err:.3f}" if isinstance(err, float) else ""
            err_console.print(
                f"  level {data['level']}: wrote {data['written']}, ran {data['evaluated']}, "
                f"best {data['best']:.3f} (overall {data['best_overall']:.3f}), "
                f"{data['calls']} calls{err_text}",
                highlight=False,
            )
        elif kind == "round":
            err_console.print(
                f"  round {data.get('round')}: best {data.get('best_overall', data.get('best', 0)):.3f}, "
                f"{data.get('calls', '?')} calls",
                highlight=False,
            )
        elif kind == "phase":
            err_console.print(
                f"  {data['phase']}: scoring {data['prompts']} prompt(s) on {data['instances']} instances",
                highlight=False,
            )
        elif kind == "scored":
            err_console.print(
                f"  scored {data['prompt_id']}: {data['score']:.3f}", highlight=False, style="dim"
            )

    return on_event


_METHOD_HELP = ("promst, ape, apo, opro, apohf, demos, reflexion or human, or a method a plugin adds "
                "(`agentopt methods` lists them all)")


@app.command()
def methods(as_json: JsonOpt = False) -> None:
    """List the optimisation methods: the built-ins and those plugins add, with where each is from."""
    from agentopt.optimizers import method_sources

    rows = [
        {"method": s.name, "origin": s.origin, "target": s.target, "distribution": s.distribution}
        for s in method_sources()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("method", "from", "class")
    for row in rows:
        origin = {"plugin": f"plugin ({row['distribution']})", "code": "registered in code"}.get(
            row["origin"], row["origin"])
        table.add_row(row["method"], origin, row["target"])
    console.print(table)


@app.command()
@with_run_options
def optimize(
    ctx: typer.Context,
    task_name: Annotated[str, typer.Argument(metavar="TASK")],
    method: Annotated[str, typer.Option(help=_METHOD_HELP)] = "promst",
    seed: Annotated[int, typer.Option(help="the run's seed: its randomness and its sampled calls")] = 0,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="method hyperparameter, KEY=VALUE (JSON value)")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="run directory (default: runs/<new>)")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="continue the run in --run-dir; options that would change its "
                     "result are refused, --api-base, --timeout, --attempts and --concurrency may change"),
    ] = False,
    as_json: JsonOpt = False,
    run_settings: dict[str, Any] | None = None,
) -> None:
    """Optimise a task's prompt with PROMST or a baseline; report validation and test scores."""
    from agentopt.api import run_config
    from agentopt.runs.optimize import run_optimization
    from agentopt.runs.report import fmt_ci

    if resume and run_dir is None:
        raise UserError("--resume needs --run-dir")
    settings: dict[str, Any] = {
        "task": task_name, "method": method, "seed": seed, "method_config": _parse_sets(set_ or []),
        **(run_settings or {}),
    }
    if resume:
        # Only what the user typed is held against the run: defaults are not requests.
        typed = _typed_options(ctx)
        settings = {k: v for k, v in settings.items() if k == "task" or _OPTION_OF.get(k, k) in typed}
    config = run_config(**settings)
    result = run_optimization(config, run_dir, resume=resume, on_event=_progress_printer(as_json))
    if as_json:
        print_json(result.model_dump(mode="json", exclude={"history"}))
        return
    console.print(
        f"[bold]{result.method}[/bold] on [bold]{result.task}[/bold]: stopped by {result.stopped_by} "
        f"after {result.lm_calls} LM calls, {result.n_candidates} prompts scored"
    )
    console.print(
        f"  human prompt : validation {fmt_ci(result.human_validation.score)}  "
        f"test {fmt_ci(result.human_test.score)}"
    )
    console.print(
        f"  best prompt  : validation {fmt_ci(result.validation.score)}  test {fmt_ci(result.test.score)}"
    )
    console.print(f"  run directory: {result.run_dir}")
    console.rule("best prompt")
    console.print(result.best_prompt.text, markup=False, highlight=False)


# RunConfig fields whose option has another name in `optimize`'s signature.
_OPTION_OF = {"method_config": "set_"}


def _typed_options(ctx: typer.Context) -> set[str]:
    """The parameters the user gave on the command line (or through the environment)."""
    typed = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            typed.add(name)
    return typed


def _parse_sets(pairs: list[str]) -> dict:
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
@with_run_options
def bench(
    tasks: Annotated[
        str, typer.Option("--tasks", help="comma-separated task names, folders or module:attribute")
    ] = "gridworld1,blocksworld",
    methods: Annotated[
        str, typer.Option("--methods", help="comma-separated; " + _METHOD_HELP)
    ] = "promst,apo",
    out: Annotated[Path, typer.Option("--out", help="output directory")] = Path("bench-out"),
    seeds: Annotated[str, typer.Option("--seeds", help="comma-separated seeds, one run per seed")] = "0",
    reference: Annotated[
        str | None, typer.Option("--reference", help="also compare every method with this one (paired)")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="JSON with per-method hyperparameters {method: {key: value}}"),
    ] = None,
    as_json: JsonOpt = False,
    run_settings: dict[str, Any] | None = None,
) -> None:
    """Run methods x tasks and write a Markdown table, a CSV and score-vs-calls plots."""
    from agentopt.api import run_config
    from agentopt.files import check_writable_dir
    from agentopt.lm.client import check_models
    from agentopt.optimizers import build_optimizer
    from agentopt.optimizers.registry import read_method_config
    from agentopt.runs.bench import run_bench
    from agentopt.tasks.loader import load_task

    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if not task_list or not method_list:
        raise UserError("--tasks and --methods need at least one name each")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds expects comma-separated integers, got {seeds!r}") from None
    if not seed_list:
        raise UserError("--seeds needs at least one seed")
    if reference is not None and reference not in (*method_list, "human"):
        raise UserError(f"--reference {reference!r} is not among --methods")
    settings = run_settings or {}
    for t in task_list:
        load_task(t, settings["tasks_dirs"])
    method_config = read_method_config(config_file) if config_file is not None else {}
    for m in method_list:  # a bad hyperparameter fails now, not after the methods before it ran
        build_optimizer(m, method_config.get(m, {}))
    check_models([settings["model"], settings["optimizer_model"] or None], api_base=settings["api_base"])
    check_writable_dir(out, "--out folder")
    base = run_config(task=task_list[0], seed=seed_list[0], method_config=method_config, **settings)

    def on_start(method: str, task: str, seed: int) -> None:
        if not as_json:
            err_console.print(f"[bold]{method}[/bold] on [bold]{task}[/bold], seed {seed}")

    results = run_bench(
        base, task_list, method_list, out, seeds=seed_list, reference=reference,
        on_start=on_start, on_event=_progress_printer(as_json),
    )
    if as_json:
        print_json([r.model_dump(mode="json", exclude={"history"}) for r in results])
        return
    console.print((out / "results.md").read_text(), markup=False, highlight=False)
    console.print(
        f"table: {out / 'results.md'}  csv: {out / 'results.csv'}  plots: {out}/score_vs_calls_*.png"
    )


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory from `agentopt optimize`")],
    as_json: JsonOpt = False,
) -> None:
    """Summarise a finished run: scores, rounds, best prompt; writes report.md and a plot."""
    from agentopt.runs.optimize import load_result
    from agentopt.runs.report import plot_score_vs_calls, run_report

    result = load_result(run_dir)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    text = run_report(result)
    (run_dir / "report.md").write_text(text + "\n", encoding="utf-8")
    plot_score_vs_calls([result], run_dir / "score_vs_calls.png", title=f"{result.method} on {result.task}")
    console.print(text, markup=False, highlight=False)
    console.print(f"written: {run_dir / 'report.md'}, {run_dir / 'score_vs_calls.png'}")


from agentopt.commands import finetune as _finetune_commands  # noqa: E402
from agentopt.commands import prefer as _prefer_commands  # noqa: E402
from agentopt.commands import verbal as _verbal_commands  # noqa: E402

_prefer_commands.register(app)
_verbal_commands.register(app)
_finetune_commands.register(app)


def main(argv: list[str] | None = None) -> None:
    # The CLI draws its own progress (rich) on stderr; the tqdm bars and deprecation notices of
    # transformers, peft and sentence-transformers would only cut into it. Set TQDM_DISABLE=0 to
    # see the bars anyway. tqdm reads the variable when it is first imported, i.e. later.
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        # Outside standalone mode typer does not raise a command's typer.Exit, nor Ctrl-C (which
        # it turns into Exit(130)): it returns the exit code, which must not be dropped.
        code = app(args=argv, prog_name="agentopt", standalone_mode=False)
    except (UserError, LMError) as exc:
        # LMError: a model call failed after every retry; the message says which and why.
        _print_error(str(exc))
        raise SystemExit(2) from None
    except OSError as exc:
        # A file or folder the system refused (permission, disk full, read-only) that no check
        # caught first: still the user's to fix, so still one line.
        if exc.filename is None and exc.strerror is None:
            raise
        from agentopt.files import describe_os_error

        where = f"{exc.filename}: " if exc.filename else ""
        _print_error(f"{where}{describe_os_error(exc)}")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        # Usage errors arrive here in non-standalone mode. typer vendors its own copy of click,
        # so match click's exception protocol (format_message + exit_code), not its classes.
        usage = callable(getattr(exc, "format_message", None))
        if usage and isinstance(getattr(exc, "exit_code", None), int):
            # One line like every other bad input, not click's usage block: the message, and
            # where the flags are listed.
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _print_error(f"{exc.format_message()}{where}")
            raise SystemExit(2) from None
        if type(exc).__name__ == "Abort":
            raise SystemExit(1) from None
        raise
    if code == 130:
        err_console.print("interrupted", markup=False)
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _print_error(message: str) -> None:
    """One line on stderr, whatever the message holds: its newlines are folded, and secrets
    (keys in the environment, key-shaped strings, credentials an endpoint echoed) redacted."""
    from agentopt.lm.secrets import redact

    line = re.sub(r"\s*\n\s*", " ", redact(message)).strip()
    err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main(sys.argv[1:])
