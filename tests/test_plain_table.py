"""cli/plain_table.py writes what rich writes for a table, or leaves the table to rich.

Hundreds of generated tables (the shapes bidsbatch prints: a title, left and
right columns, Text cells with styles, empty cells, wide characters) are
printed both ways on consoles without colour; the text must be the same
character for character. Tables it must not handle (wider than the console,
markup in a cell, colour) are checked to go to rich.
"""

from __future__ import annotations

import io
import random

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bidsbatch.cli.plain_table import plain_text, print_table

WORDS = ["sub-01", "sub-0001_ses-1", "succeeded", "failed", "1m02s", "0.1s", "", "3", "pid 42",
         "exit 1 after 3 attempts", "… 800 more (--json for all)", "日本語", "café", "a·b",
         "$0.0123", "CPU time", "-", "x" * 37]


def _table(rng: random.Random) -> Table:
    title = rng.choice([None, "run demo-1a2b · ds · demo", "t",
                        "a long title " * rng.randint(1, 12)])
    table = Table(title=title, title_justify="left")
    for i in range(rng.randint(1, 8)):
        table.add_column(rng.choice(["scan", "state", "attempts", "duration", "job", "é", f"c{i}"]),
                         overflow="fold", justify=rng.choice(["left", "right"]))
    for _ in range(rng.randint(0, 15)):
        row: list[object] = []
        for _c in table.columns:
            word = rng.choice(WORDS)
            row.append(Text(word, style=rng.choice(["", "green", "bold red"]))
                       if rng.random() < 0.3 else word)
        table.add_row(*row)
    return table


def test_plain_text_is_what_rich_prints() -> None:
    rng = random.Random(15)
    handled = 0
    for _ in range(150):
        width = rng.choice([40, 80, 120, 140, 200])
        table = _table(rng)
        console = Console(file=io.StringIO(), width=width)
        ours = plain_text(console, table)
        console.print(table)
        if ours is not None:
            handled += 1
            assert ours == console.file.getvalue(), (width, table.title)
    assert handled > 40  # many of them are plain enough for the fast path


def test_what_plain_text_leaves_to_rich() -> None:
    wide = Table("a", "b")
    wide.add_row("x" * 100, "y")
    assert plain_text(Console(file=io.StringIO(), width=80), wide) is None
    markup = Table("a")
    markup.add_row("[bold]x[/]")
    assert plain_text(Console(file=io.StringIO(), width=80), markup) is None
    emoji = Table("a")
    emoji.add_row("done :thumbs_up:")
    assert plain_text(Console(file=io.StringIO(), width=80), emoji) is None
    small = Table("a")
    small.add_row("x")
    quiet = Console(file=io.StringIO(), width=80, quiet=True)
    assert plain_text(quiet, small) is None
    print_table(quiet, small)
    assert quiet.file.getvalue() == ""  # rich's quiet: nothing at all
    colour = Console(file=io.StringIO(), width=80, force_terminal=True, color_system="standard")
    plain = Table("a")
    plain.add_row("x")
    assert plain_text(colour, plain) is None
    print_table(colour, plain)  # rich prints it, with colour codes
    assert "\x1b[" in colour.file.getvalue()
