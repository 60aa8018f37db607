"""Adjusting a command's ``--help`` option, which click makes anew on demand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def on_help_option(command: Any, adjust: Callable[[Any], None], *, tag: str) -> None:
    """Call ``adjust`` on ``command``'s ``--help`` option each time click makes it.

    ``tag`` names the adjustment, so wrapping twice with the same one is a no-op
    and different adjustments (help names, light coercion) stack."""
    original = getattr(command, "get_help_option", None)
    if original is None or getattr(original, tag, False):
        return

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            adjust(option)
        return option

    setattr(get_help_option, tag, True)
    for earlier in dir(original):
        if earlier.startswith("_bb_"):
            setattr(get_help_option, earlier, True)
    command.get_help_option = get_help_option
