"""The ``agentopt`` command.

User errors (unknown model or task, missing key, unreachable endpoint, spent budget, bad file)
print one line on stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agentopt.errors import UserError

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


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


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
    console.print("Any litellm model string also works, e.g. openai/gpt-4o-mini, anthropic/claude-3-5-haiku-20241022,"
                  " ollama/llama3, or openai/NAME with --api-base for an OpenAI-compatible server.")


@app.command()
def chat(
    text: Annotated[str, typer.Argument(help="the user message")],
    model: ModelOpt = "local/smollm2-135m",
    system: Annotated[str | None, typer.Option("--system", "-s", help="system prompt")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    api_base: ApiBaseOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="always call the model")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send one message to a model and print the reply."""
    from agentopt.lm import LM

    lm = LM(model, api_base=api_base, cache=not no_cache)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    completion = lm.chat(messages, temperature=temperature, max_tokens=max_tokens)
    if as_json:
        print_json(completion.model_dump(mode="json"))
    else:
        sys.stdout.write(completion.text + "\n")


@app.command()
def serve(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    host: Annotated[str, typer.Option(help="bind address; loopback unless you mean otherwise")] = "127.0.0.1",
    n_ctx: Annotated[int, typer.Option(min=256)] = 2048,
) -> None:
    """Serve the embedded model as an OpenAI-compatible endpoint (llama_cpp.server)."""
    from agentopt.lm.serve import serve_embedded

    err_console.print(f"serving local/smollm2-135m at http://{host}:{port}/v1 as model 'smollm2-135m'")
    serve_embedded(host=host, port=port, n_ctx=n_ctx)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        raise SystemExit(130) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(2) from None
        if isinstance(exc, click.exceptions.Abort):
            raise SystemExit(1) from None
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
