"""A person at the terminal as a preference source (the "human" of APOHF, Lin et al. 2024,
arXiv 2405.17346).

The two responses (or rendered trajectories) are shown side by side in rich panels under the
context they answer, in a random left/right order; one key answers:

    1 = left (A) is better    2 = right (B) is better    t = tie    s = skip    q = quit

Quitting raises `StopFeedback`, which the caller treats as "stop here and report". Sessions are
resumable through the preference ledger: every answered pair is written there, so a restarted
session (same seed, so the same pairs come up in the same order) finds each pair it already
asked about and answers it from the ledger without asking again. Ties and skips are not
preferences and are not stored, so those few are asked again.

Input is injectable (``read_key``) so tests, and other front-ends, can drive it.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentopt.preferences.sources import PreferenceSource, Shown, StopFeedback, Verdict

if TYPE_CHECKING:
    from agentopt.preferences.ledger import PreferenceLedger

KEYS: dict[str, Verdict | None] = {"1": "a", "a": "a", "2": "b", "b": "b", "t": "tie", "s": "skip", "q": None}
PROMPT = "[1] left better  [2] right better  [t] tie  [s] skip  [q] quit > "


def default_read_key(prompt: str) -> str:
    """One key press at an interactive terminal; a line of input otherwise (pipes, tests).

    End of input counts as quit, so a closed stdin never loops forever."""
    # The prompt goes to stderr, like the panels, so stdout stays clean for --json.
    sys.stderr.write(prompt)
    sys.stderr.flush()
    if sys.stdin.isatty():
        import click

        key = click.getchar()
        sys.stderr.write(key + "\n")
        return key
    line = sys.stdin.readline()
    return line if line else "q"


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} more characters)"


class HumanSource(PreferenceSource):
    """A person choosing between two responses at the terminal.

    Args:
        console: where the panels are drawn (stderr by default, so ``--json`` stdout stays clean).
        read_key: ``read_key(prompt) -> str``, the person's answer; only its first character counts.
        ledger: when given, pairs this source already answered in the same context are answered
            from it without asking (resumption).
        max_chars: longer texts are clipped in the panels.
        shuffle_sides: show each pair in a random left/right order (seeded by ``seed``). APOHF
            always proposes its current favourite first; without shuffling a person would soon
            learn that "left" is the favourite, which is position bias, not preference.
    """

    name = "human"

    def __init__(
        self,
        *,
        console: Console | None = None,
        read_key: Callable[[str], str] | None = None,
        ledger: PreferenceLedger | None = None,
        max_chars: int = 4000,
        shuffle_sides: bool = True,
        seed: int = 0,
        name: str = "human",
    ) -> None:
        self.console = console or Console(stderr=True)
        self.read_key = read_key or default_read_key
        self.ledger = ledger
        self.max_chars = max_chars
        self.shuffle_sides = shuffle_sides
        self._rng = random.Random(seed)
        self.name = name
        self.asked = 0
        self.resumed = 0

    def compare(self, context: str, a: Shown | str, b: Shown | str) -> Verdict:
        a, b = Shown.of(a), Shown.of(b)
        if self.ledger is not None:
            recorded = self.ledger.lookup(context, a.key, b.key, self.name)
            if recorded is not None:
                self.resumed += 1
                return recorded  # type: ignore[return-value]
        swapped = self.shuffle_sides and self._rng.random() < 0.5
        self.show(context, *((b, a) if swapped else (a, b)))
        self.asked += 1
        verdict = self.ask()
        return {"a": "b", "b": "a"}.get(verdict, verdict) if swapped else verdict  # type: ignore[return-value]

    def ask(self) -> Verdict:
        """Read keys until one means something: 1 = left, 2 = right, t, s; q raises `StopFeedback`."""
        while True:
            answer = self.read_key(PROMPT).strip().lower()[:1]
            if answer in KEYS:
                verdict = KEYS[answer]
                if verdict is None:
                    raise StopFeedback("quit at the terminal")
                return verdict
            self.console.print("press 1, 2, t, s or q", style="yellow")

    def show(self, context: str, a: Shown, b: Shown) -> None:
        """Context on top, the two sides in equal-width panels beside each other."""
        sides = Table.grid(expand=True, padding=(0, 1))
        sides.add_column(ratio=1)
        sides.add_column(ratio=1)
        sides.add_row(
            Panel(Text(clip(a.text, self.max_chars)), title=f"[1] {a.title or 'A'}", border_style="cyan"),
            Panel(Text(clip(b.text, self.max_chars)), title=f"[2] {b.title or 'B'}", border_style="magenta"),
        )
        parts = []
        if context.strip():
            parts.append(Panel(Text(clip(context, self.max_chars)), title="context", border_style="dim"))
        parts.append(sides)
        self.console.print(Group(*parts))


__all__ = ["KEYS", "HumanSource", "default_read_key"]
