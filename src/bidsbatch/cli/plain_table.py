"""A rich ``Table`` printed without rich's layout engine, when the output has no colour.

rich measures, wraps, pads and crops every cell through several layers of
renderables: 0.15 s for ``status``'s 200 rows of 8 columns, more than the rest
of its work. Without colour (a pipe, a file, ``NO_COLOR``, a dumb terminal) a
table that fits the console's width is only text: widths are the widest cell
plus padding, and the box is HEAVY_HEAD's. :func:`print_table` writes that
text, the same characters rich would write (tests/test_plain_table.py compares
the two over many tables), and hands anything else to ``console.print``:
colour, a table wider than the console (rich folds it), markup or emoji codes
in a cell, cells over several lines, options of ``Table`` other than those
bidsbatch uses.
"""

from __future__ import annotations

import re
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: What rich's markup or emoji replacement would change in a plain string.
_NOT_PLAIN = re.compile(r"\[|:\S*?:")

_BOX = box.HEAVY_HEAD


def print_table(console: Console, table: Table) -> None:
    """``console.print(table)``, the same characters, faster when :func:`plain_text` can."""
    text = plain_text(console, table)
    if text is None:
        console.print(table)
        return
    console.file.write(text)
    console.file.flush()


def plain_text(console: Console, table: Table) -> str | None:
    """What ``console.print(table)`` writes, or None when that takes rich to say."""
    if not _plain_console(console) or not _plain_table(table):
        return None
    columns = table.columns
    if not columns:
        return None
    grid: list[list[str]] = []
    for column in columns:
        cells = [_plain(column.header), *(_plain(c) for c in column.cells)]
        if any(c is None for c in cells):
            return None
        grid.append(cells)  # type: ignore[arg-type]
    widths = [max(cell_len(c) for c in cells) + 2 for cells in grid]  # padding (0, 1)
    table_width = sum(widths) + 2 + len(columns) - 1
    if table_width > console.width:
        return None
    out: list[str] = []
    if table.title:
        title = _plain(table.title)
        if title is None or cell_len(title) > table_width:
            return None
        out.append(title + " " * (table_width - cell_len(title)))
    out.append(_BOX.get_top(widths))
    justify = [c.justify for c in columns]
    rows = list(zip(*grid, strict=True))
    out.append(_row(rows[0], widths, justify, _BOX.head_left, _BOX.head_vertical,
                    _BOX.head_right))
    out.append(_BOX.get_row(widths, "head"))
    for row in rows[1:]:
        out.append(_row(row, widths, justify, _BOX.foot_left if row is rows[-1] else
                        _BOX.mid_left, _BOX.mid_vertical, _BOX.mid_right))
    out.append(_BOX.get_bottom(widths))
    return "\n".join(out) + "\n"


def _row(cells: tuple[str, ...], widths: list[int], justify: list[str], left: str,
         divider: str, right: str) -> str:
    parts = []
    for text, width, how in zip(cells, widths, justify, strict=True):
        space = " " * (width - 2 - cell_len(text))
        parts.append(f" {space}{text} " if how == "right" else f" {text}{space} ")
    return left + divider.join(parts) + right


def _plain_console(console: Console) -> bool:
    options = console.options
    return (console.color_system is None and not console.record and not console.quiet
            and getattr(console, "_buffer_index", 1) == 0
            and not options.ascii_only and not options.legacy_windows)


def _plain_table(table: Table) -> bool:
    if not (table.box is _BOX and table.show_header and table.show_edge
            and not table.show_footer and not table.show_lines and not table.leading
            and tuple(table.padding) == (0, 1, 0, 1) and table.pad_edge
            and not table.collapse_padding and not table.expand and table.width is None
            and table.min_width is None and table.caption is None
            and table.title_justify == "left" and not table.row_styles
            and not any(row.end_section for row in table.rows)):
        return False
    return all(c.width is None and c.min_width is None and c.max_width is None
               and c.ratio is None and c.justify in ("left", "right")
               for c in table.columns)


def _plain(cell: Any) -> str | None:
    """A cell's text as rich shows it, if it is one plain line (no markup, no emoji codes)."""
    if isinstance(cell, Text):
        if cell.justify is not None or cell.overflow is not None or cell.no_wrap:
            return None
        text = cell.plain
    elif isinstance(cell, str):
        if _NOT_PLAIN.search(cell):
            return None
        text = cell
    else:
        return None
    if not text.isprintable() or text != text.strip() or "  " in text:
        return None
    return text
