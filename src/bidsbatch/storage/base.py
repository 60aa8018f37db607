"""Where data lives: the ``Location`` interface, the keys it takes, and the values it returns.

A location is a local folder or ``s3://bucket/prefix``. Keys are always
relative to the location's root and ``/``-separated; every key that comes in
from outside (a listing, a spec) passes :func:`safe_key` before it touches a
local path, so nothing is ever written outside the folder the user named.
Bulk operations (listing many prefixes, a round of downloads or uploads)
have a default here that works on any location and are overridden where a
store has a faster way (``s3.py``): callers never ask which kind they hold.
This package knows nothing of runs, scans or markers.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BidsbatchError, HostileKeyError, StorageError

#: Suffix of a file being downloaded (renamed to its real name once verified).
PART_SUFFIX = ".bbpart"


@dataclass(frozen=True, order=True, slots=True)  # 200,000 of them in a 100,000-scan crawl
class ObjectInfo:
    """One stored object: its key relative to the location, size, and checksum if known."""

    key: str
    size: int
    etag: str | None = None


@dataclass
class Listing:
    """One level of a listing: objects directly under a prefix and the sub-prefixes."""

    objects: list[ObjectInfo] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: the options a user may set on the command line."""

    requester_pays: bool = False
    no_sign_request: bool = False


def safe_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise :class:`HostileKeyError`.

    Refused: empty keys, absolute paths, ``..`` or ``.`` segments, empty segments,
    backslashes, drive letters and control characters. Such keys would escape the
    folder they are downloaded into, or mean different files on different systems.
    """
    reason = hostile_reason(key)
    if reason:
        raise HostileKeyError(
            f"refusing unsafe key {key!r}: {reason}",
            hint="a key must be a plain relative path; remove or rename that object",
        )
    return key


# Unicode general category Cc ("control"), which the Unicode stability policy
# freezes: exactly U+0000-U+001F and U+007F-U+009F. One regex search instead of
# a unicodedata.category() call per character (the crawl checks every key).
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


# A local file name that is not UTF-8 reaches Python with its bad bytes as lone
# surrogates (PEP 383); such a name cannot be stored as an S3 key or in a spec.
_NOT_UTF8 = re.compile("[\ud800-\udfff]")


def hostile_reason(key: str) -> str | None:
    """Why ``key`` is unsafe to use as a relative local path, or None when it is safe."""
    if not key:
        return "empty key"
    if _CONTROL_CHARS.search(key):
        return "control character"
    if _NOT_UTF8.search(key):
        return "not UTF-8"
    if "\\" in key:
        return "backslash"
    if key.startswith("/"):
        return "absolute path"
    if len(key) > 1 and key[1] == ":":
        return "drive letter"
    parts = key.split("/")
    if any(p in ("..", ".") for p in parts):
        return "'.' or '..' segment"
    if any(p == "" for p in parts[:-1]) or parts[-1] == "":
        return "empty path segment"
    return None


#: Called with byte counts as a transfer moves them (from several threads).
Progress = Callable[[int], None]


@dataclass(frozen=True)
class OutputFile:
    """One file a scan stored: its key under the output, size and ``sha256:`` checksum."""

    key: str
    size: int
    checksum: str | None = None  # "sha256:<hex>" as computed by the worker


@dataclass(frozen=True)
class DownloadJob:
    """One file to fetch: written to :attr:`part`, renamed to ``dest`` once verified."""

    key: str
    size: int
    etag: str | None
    dest: Path

    @property
    def part(self) -> Path:
        return self.dest.with_name(f".{self.dest.name}{PART_SUFFIX}")


@dataclass(frozen=True)
class LocalFile:
    """A local file to upload to ``key``."""

    key: str
    path: Path
    size: int


class Location(ABC):
    """A place data lives. Implementations: :class:`LocalLocation`, :class:`S3Location`."""

    @property
    @abstractmethod
    def uri(self) -> str:
        """The canonical URI of this location (``/abs/path`` or ``s3://bucket/prefix``)."""

    @property
    def is_remote(self) -> bool:
        return False

    @abstractmethod
    def child(self, relpath: str) -> Location:
        """The location ``relpath`` below this one."""

    @abstractmethod
    def list(self, prefix: str = "", *, delimiter: str | None = "/") -> Listing:
        """List under ``prefix`` (relative, ``""`` or ending in ``/``), every page.

        With ``delimiter="/"`` only the objects directly under the prefix are
        returned, plus the sub-prefixes; with ``delimiter=None`` everything below.
        """

    def walk(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object below ``prefix``, sorted by key."""
        return sorted(self.list(prefix, delimiter=None).objects)

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size and checksum of ``key``, or None when it does not exist."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def size(self, key: str) -> int:
        info = self.stat(key)
        if info is None:
            raise StorageError(f"{self.describe(key)} does not exist")
        return info.size

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``; StorageError when it is missing."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of ``key`` from byte ``start``: fewer, or none, past its end."""
        return self.read_bytes(key)[start:start + length]

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` to ``key`` atomically (readers see the old or the new content)."""

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; no error when it is already gone."""

    @abstractmethod
    def download(
        self, key: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        """Copy ``key`` to the local file ``dest`` through a temporary name; verify its size."""

    @abstractmethod
    def upload(
        self, src: Path, key: str, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        """Copy the local file ``src`` to ``key``; return what was stored."""

    # -- bulk operations: a default here, a faster way where the store has one (S3)

    def list_prefixes(self, prefixes: list[str], *, max_workers: int = 16,
                      progress: Callable[[int, int], None] | None = None,
                      ) -> dict[str, list[ObjectInfo]]:
        """Everything below each of ``prefixes`` (each ``""`` or ending in ``/``), by prefix.

        The default lists each prefix on its own, ``max_workers`` at a time;
        ``progress(done, total)`` counts prefixes.
        """
        from concurrent.futures import ThreadPoolExecutor

        out: dict[str, list[ObjectInfo]] = {}
        total = len(prefixes)
        if progress:
            progress(0, total)
        workers = max(1, min(max_workers, total))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="list") as pool:
            for prefix, listing in zip(prefixes, pool.map(
                    lambda p: self.list(p, delimiter=None).objects, prefixes), strict=True):
                out[prefix] = listing
                if progress:
                    progress(len(out), total)
        return out

    def download_round(self, jobs: list[DownloadJob], *, verify: Callable[[DownloadJob], None],
                       max_workers: int, part_size: int, progress: Progress | None,
                       ) -> list[tuple[DownloadJob, BidsbatchError]]:
        """One round of downloads to each job's ``part`` file, each then ``verify``-ed.

        Returns the jobs that failed in a way a retry may fix; raises the first
        error that will not pass. The default downloads file by file on a pool.
        """
        from .transfer import pool_round

        def one(job: DownloadJob) -> None:
            self.download(job.key, job.part, progress=progress)
            verify(job)

        return pool_round(jobs, one, max_workers=max_workers)

    def upload_round(self, jobs: list[LocalFile], *, checksum: Callable[[LocalFile], str],
                     max_workers: int, part_size: int, progress: Progress | None,
                     ) -> list[tuple[LocalFile, BidsbatchError]]:
        """One round of uploads, ``checksum(job)`` (its ``"sha256:<hex>"``) called for each.

        Returns the jobs that failed in a way a retry may fix; raises the first
        error that will not pass.
        """
        from .transfer import pool_round

        def one(job: LocalFile) -> None:
            checksum(job)
            self.upload(job.path, job.key, progress=progress)

        return pool_round(jobs, one, max_workers=max_workers)

    def etag_is_not_md5(self, key: str) -> bool:
        """Whether ``key``'s ETag is not an MD5 of its content (asked after a mismatch)."""
        return False

    def describe(self, key: str = "") -> str:
        """A URI for ``key`` under this location, for messages."""
        base = self.uri.rstrip("/")
        return f"{base}/{key}" if key else base
