"""Nothing outside the named places: overlap checks between a dataset, an output and a
run directory, and text files read with the file and byte offset named when they are
not UTF-8.

Paths are compared *resolved* (symlinks followed, ``..`` collapsed), so a link to
the dataset is the dataset; S3 locations are compared by bucket and normalised
prefix (empty segments dropped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import UsageError

#: The space of every path on this machine (S3 places are ``s3:<bucket>``).
_PATHS = "path"


@dataclass(frozen=True)
class Place:
    """Where a location really is: ``("path", (parts…))`` or ``("s3:bucket", (parts…))``."""

    space: str
    parts: tuple[str, ...]

    def contains(self, other: Place) -> bool:
        """Whether ``other`` is this place or below it."""
        return self.space == other.space and other.parts[: len(self.parts)] == self.parts


def place_of(uri: str | Path) -> Place:
    """The resolved place of a path, ``file://`` or ``s3://`` URI."""
    text = str(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        parts = tuple(p for p in parsed.path.split("/") if p)
        if any(p in (".", "..") for p in parts):
            raise UsageError(f"{text}: '.' and '..' are not allowed in an S3 prefix",
                             hint="write the prefix out in full")
        return Place(f"s3:{parsed.netloc}", parts)
    if text.startswith("file://"):
        text = urlparse(text).path
    resolved = Path(os.path.realpath(Path(text).expanduser()))
    return Place(_PATHS, resolved.parts)


def check_output_apart(dataset: str, output: str) -> None:
    """Refuse an output that is the dataset, inside it, or holds it (exit 2).

    The one exception is the BIDS place for derivatives: a folder below the
    dataset's own ``derivatives/`` (which the crawl never reads).
    """
    ds, out = place_of(dataset), place_of(output)
    if ds.contains(out):
        derivatives = Place(ds.space, (*ds.parts, "derivatives"))
        if derivatives.contains(out) and out != derivatives:
            return
        what = "is the dataset" if out == ds else "is inside the dataset"
        raise UsageError(
            f"output {output} {what} {dataset}" + _via_links(output, out),
            hint="write outputs elsewhere, or under the dataset's derivatives/ folder",
        )
    if out.contains(ds):
        raise UsageError(
            f"output {output} holds the dataset {dataset}" + _via_links(dataset, ds),
            hint="write outputs to a folder beside the dataset, not above it",
        )


def check_s3_options(*, requester_pays: bool, no_sign_request: bool) -> None:
    """Options that cannot go together: Requester Pays bills a signed requester."""
    if requester_pays and no_sign_request:
        raise UsageError(
            "--requester-pays and --no-sign-request cannot go together: a Requester Pays "
            "bucket bills the (signed) requester, an unsigned request has none",
            hint="drop --no-sign-request to read a Requester Pays bucket with your credentials",
        )


def check_run_dir_apart(run_dir: Path, dataset: str) -> None:
    """A run directory is never the dataset or inside it (exit 2)."""
    if place_of(dataset).contains(place_of(run_dir)):
        raise UsageError(
            f"run directory {run_dir} is inside the dataset {dataset}",
            hint="give --run-dir a folder outside the dataset, or leave it out",
        )


def _via_links(given: str, place: Place) -> str:
    if place.space != _PATHS:
        return ""
    real = str(Path(*place.parts))
    return "" if os.path.abspath(given) == real else f" (through symlinks: {real})"


def read_utf8(path: Path, *, what: str) -> str:
    """The text of ``path``; a file that is not UTF-8 is a UsageError naming the byte."""
    data = Path(path).read_bytes()
    return decode_utf8(data, where=f"{what} {path}")


def decode_utf8(data: bytes, *, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{where} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}",
            hint="save the file as UTF-8",
        ) from None
