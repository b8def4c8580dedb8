"""Running the CLI in-process, as a user would from the shell, for tests."""

from __future__ import annotations

from agentopt.cli import main


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``agentopt ARGS``: its exit code, stdout and stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str) -> str:
    """The one error line a refused command prints, checked: exit code 2, no traceback."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]
