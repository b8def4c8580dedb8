"""Subcommands of ``agentopt`` that live outside ``cli.py``.

Each module exposes ``register(app: typer.Typer) -> None``, which adds its commands to the main
app; ``cli.py`` calls it once per module. Heavy imports (torch, transformers) happen inside the
command functions, so ``agentopt --help`` stays fast.
"""
