"""Which items to process: ``--item``, ``--exclude-item``, a file of ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SelectionError, UsageError
from ..safety import read_utf8
from .base import Item


@dataclass(frozen=True)
class ItemSelection:
    """Ids to keep or drop; empty keeps every item."""

    ids: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def build(cls, *, ids: list[str] | tuple[str, ...] = (),
              exclude: list[str] | tuple[str, ...] = (), file: Path | None = None,
              ) -> ItemSelection:
        def split(values: list[str] | tuple[str, ...], option: str) -> list[str]:
            out = [x.strip() for v in values for x in v.split(",") if x.strip()]
            if values and not out:
                raise UsageError(f"{option} names no item",
                                 hint="give an item id, or leave the option out")
            return out

        wanted = split(ids, "--item")
        if file is not None:
            try:
                text = read_utf8(Path(file), what="item ids file")
            except OSError as exc:
                raise UsageError(f"cannot read {file}: {exc.strerror}") from None
            from_file = [ln.split()[0] for ln in text.splitlines()
                         if ln.strip() and not ln.lstrip().startswith("#")]
            if not from_file:
                raise UsageError(f"{file} names no item",
                                 hint="one item id a line; an empty file would select every "
                                      "item")
            wanted += from_file
        return cls(ids=tuple(sorted(set(wanted))),
                   exclude=tuple(sorted(set(split(exclude, "--exclude-item")))))

    def to_dict(self) -> dict[str, list[str]]:
        return {"items": list(self.ids), "exclude_items": list(self.exclude)}

    def apply(self, items: list[Item]) -> list[Item]:
        have = {i.id for i in items}
        for wanted in (self.ids, self.exclude):
            unknown = [w for w in wanted if w not in have]
            if unknown:
                few = ", ".join(sorted(have)[:6]) + (f", … ({len(have)} in all)"
                                                     if len(have) > 6 else "")
                raise SelectionError(f"unknown item {unknown[0]}"
                                     + (f" (and {len(unknown) - 1} more)" if unknown[1:] else ""),
                                     hint=f"available: {few}")
        out = [i for i in items if (not self.ids or i.id in self.ids)
               and i.id not in self.exclude]
        if not out:
            raise SelectionError("the selection leaves no item to process")
        return out
