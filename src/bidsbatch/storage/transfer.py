"""Parallel, verified transfers between a Location and a local folder.

Two calls do the worker's data path:

- :func:`download_many` copies a list of objects (key, size, ETag) into a
  local folder: every key passes :func:`~bidsbatch.storage.safe_key` before
  anything is fetched, each file lands under a temporary name and is renamed
  only once its size (and its MD5, when the ETag is a plain MD5) matched;
- :func:`upload_tree` copies a local folder to a location, minus excluded
  globs, and returns the manifest of what it stored (key, size, sha256).

Each round of files goes to the location's own bulk method
(:meth:`Location.download_round` / :meth:`Location.upload_round`): on S3 one
s3transfer ``TransferManager`` per round, a bounded pool of request threads
shared by every file, so small files run many at a time and large ones are
split into ranged GETs / multipart parts (``s3.py``); elsewhere a thread pool
over :meth:`Location.download` / :meth:`Location.upload`. Sizes come from the
plan, so no HEAD is sent before a download (see bench/RESULTS.md).

A transient fault (connection refused, 5xx, throttling) that outlives
botocore's own retries is retried here per file, a few rounds with backoff;
when it still fails the call raises :class:`TransientStorageError` so the
worker can exit 75 and let the executor retry the whole job.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from ..errors import BidsbatchError, StorageError, TransientStorageError
from .base import (
    DownloadJob,
    LocalFile,
    Location,
    OutputFile,
    Progress,
    hostile_reason,
    safe_key,
)

MiB = 1024 * 1024

#: Files (or S3 requests) in flight at once. Measured in bench/RESULTS.md: 16
#: saturates what we could measure; botocore's connection pool is 32.
DEFAULT_WORKERS = 16

#: Files above this size are moved in ranged GETs / multipart parts of this size.
DEFAULT_PART_SIZE = 64 * MiB


class RemoteFile(Protocol):
    """What :func:`download_many` needs to know of an object (``InputFile``, ``ObjectInfo``)."""

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Rounds of retries on top of botocore's, for files whose transfer failed transiently.

    Round ``n`` (from 0) waits ``delay * 2**n`` seconds before it starts;
    ``sleep`` is injected so tests run in milliseconds.
    """

    retries: int = 3
    delay: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    def backoff(self, round_: int) -> float:
        return self.delay * (2**round_)


@dataclass(frozen=True)
class TransferStats:
    """What a transfer moved, and how fast."""

    files: int
    bytes: int
    seconds: float

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Collected:
    """The result of :func:`collect_files`: what to upload and what was left out (and why)."""

    files: list[LocalFile] = field(default_factory=list)
    excluded: int = 0
    skipped: list[str] = field(default_factory=list)


@lru_cache(maxsize=8)
def transfer_config(*, max_concurrency: int = DEFAULT_WORKERS,
                    part_size: int = DEFAULT_PART_SIZE) -> Any:
    """The s3transfer settings: one request for files up to ``part_size``, parts above.

    64 MiB parts came out of the benchmark (bench/RESULTS.md): fewer, larger
    requests won over 8 and 16 MiB, as they do for s5cmd (50 MB parts), and a
    large file still spreads over several request threads.
    """
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=max_concurrency,
        # Each request thread reads/writes in 1 MiB pieces instead of 256 KiB:
        # fewer queue round trips per large file.
        io_chunksize=1 * MiB,
        use_threads=True,
    )


# --------------------------------------------------------------------------- checksums


def plain_md5(etag: str | None) -> str | None:
    """The MD5 hex digest an ETag stands for, or None when it is not a plain MD5.

    Multipart uploads have ETags like ``<hex>-<parts>``; objects encrypted with
    SSE-KMS or SSE-C have 32 hex digits that are *not* the MD5 of the content,
    which :func:`download_many` checks with a HEAD before it calls a mismatch.
    """
    if not etag:
        return None
    value = etag.strip('"').lower()
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, streamed (never loads the file; releases the GIL)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def sha256_checksum(path: Path) -> str:
    """``"sha256:<hex>"`` of a file, as recorded in completion markers."""
    return "sha256:" + file_digest(path, "sha256")


class ChecksumMismatchError(StorageError):
    """A downloaded file does not match the size or MD5 it should have."""


# --------------------------------------------------------------------------- excludes


def compile_excludes(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    """Compile glob patterns over relative paths.

    ``*`` and ``?`` stay inside one path segment, ``**`` spans any number of
    segments (``tmp_d/**``, ``**/*.tmp``), ``[abc]`` is a class. A pattern
    matches whole paths; a path is also excluded when one of its parent
    folders matches (so ``tmp_d`` excludes the whole folder).
    """
    return [re.compile(_glob_to_regex(p)) for p in patterns if p.strip("/")]


def is_excluded(relpath: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether ``relpath`` (or one of its parent folders) matches an exclude pattern."""
    if not patterns:
        return False
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(c) for p in patterns for c in candidates)


def _glob_to_regex(pattern: str) -> str:
    segments = pattern.strip("/").split("/")
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        out.append(_segment_regex(seg))
        if not last:
            out.append("/")
    return "".join(out)


def _segment_regex(seg: str) -> str:
    out, i = [], 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and seg.find("]", i + 2) != -1:
            j = seg.find("]", i + 2)  # from i + 2: a "]" right after "[" is a member
            body = seg[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\").replace("/", "") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------- download


def download_many(
    location: Location,
    items: Iterable[RemoteFile],
    dest_dir: Path,
    *,
    max_workers: int = DEFAULT_WORKERS,
    part_size: int = DEFAULT_PART_SIZE,
    retry: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
) -> TransferStats:
    """Download ``items`` (keys relative to ``location``) into ``dest_dir``, in parallel.

    Every key is checked by :func:`safe_key` first: one hostile key refuses
    the whole call (:class:`HostileKeyError`) before a byte is fetched. Each
    file is written as ``.<name>.bbpart`` and renamed once verified: size
    always, MD5 when the expected ETag is a plain MD5. ``progress(n)`` is
    called with byte counts as they arrive (from several threads).

    Raises :class:`TransientStorageError` when files still fail after the
    retry rounds, :class:`ChecksumMismatchError` when content keeps not
    matching, :class:`StorageError` for anything that will not pass (missing
    object, access denied).
    """
    items = list(items)
    dest_dir = Path(dest_dir)
    jobs = [
        DownloadJob(safe_key(i.key), i.size, i.etag, dest_dir.joinpath(*i.key.split("/")))
        for i in items
    ]
    # Largest first: the long transfers start early and the small ones fill the gaps.
    jobs.sort(key=lambda j: (-j.size, j.key))
    for parent in sorted({j.dest.parent for j in jobs}):
        parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    def one_round(batch: list[DownloadJob]) -> list[tuple[DownloadJob, BidsbatchError]]:
        return location.download_round(
            batch, verify=lambda job: verify_and_rename(job, location), max_workers=max_workers,
            part_size=part_size, progress=progress)

    _with_retries(jobs, one_round, retry=retry, what="download")
    return TransferStats(len(jobs), sum(j.size for j in jobs), time.monotonic() - started)


def verify_and_rename(job: DownloadJob, location: Location) -> None:
    """Check size (and MD5 when the ETag is one), then give the file its real name."""
    try:
        size = job.part.stat().st_size
        if size != job.size:
            raise ChecksumMismatchError(
                f"{location.describe(job.key)}: got {size} bytes, expected {job.size}",
                hint="the object changed since the run was planned; plan the run again",
            )
        md5 = plain_md5(job.etag)
        if md5 is not None and file_digest(job.part, "md5") != md5 and \
                not location.etag_is_not_md5(job.key):
            raise ChecksumMismatchError(
                f"{location.describe(job.key)}: content does not match its ETag {md5}",
                hint="it changed since the run was planned (plan again) or was "
                "corrupted in transit",
            )
        os.replace(job.part, job.dest)
    except BaseException:
        job.part.unlink(missing_ok=True)
        raise


def as_storage_error(exc: BaseException, key: str) -> BidsbatchError:
    if isinstance(exc, BidsbatchError):
        return exc
    return StorageError(f"cannot transfer {key}: {exc}")


def pool_round(
    jobs: list[Any], run: Callable[[Any], None], *, max_workers: int,
    translate: Callable[[BaseException, str], BidsbatchError] = as_storage_error,
) -> list[tuple[Any, BidsbatchError]]:
    """``run`` each job on a bounded pool; the jobs that failed transiently, with why.

    An error that will not pass is raised (the rest of the round is cancelled).
    """
    failures: list[tuple[Any, BidsbatchError]] = []
    if _small_local(jobs):
        # A handful of small local copies: threads would cost more than they save
        # (each new thread is ~0.5 ms in a freshly forked worker).
        for job in jobs:
            try:
                run(job)
            except Exception as exc:
                err = translate(exc, job.key)
                if isinstance(err, TransientStorageError | ChecksumMismatchError):
                    failures.append((job, err))
                else:
                    raise err from None
        return failures
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(jobs) or 1))) as pool:
        futures = {pool.submit(run, job): job for job in jobs}
        try:
            for fut in as_completed(futures):
                job = futures[fut]
                exc = fut.exception()
                if exc is None:
                    continue
                err = translate(exc, job.key)
                if isinstance(err, TransientStorageError | ChecksumMismatchError):
                    failures.append((job, err))
                else:
                    raise err from None
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return failures


def _small_local(jobs: list[Any]) -> bool:
    return len(jobs) <= 32 and sum(getattr(j, "size", 0) for j in jobs) <= 8 * MiB


def _with_retries(
    jobs: list[Any],
    one_round: Callable[[list[Any]], list[tuple[Any, BidsbatchError]]],
    *, retry: RetryPolicy, what: str,
) -> None:
    pending = jobs
    failures: list[tuple[Any, BidsbatchError]] = []
    for round_ in range(retry.retries + 1):
        if round_:
            retry.sleep(retry.backoff(round_ - 1))
        failures = one_round(pending)
        if not failures:
            return
        pending = [job for job, _ in failures]
    first = failures[0][1]
    tries = retry.retries + 1
    if isinstance(first, ChecksumMismatchError):
        raise first
    raise TransientStorageError(
        f"{len(failures)} file(s) failed to {what} after {tries} tries; first: {first.message}",
        hint="the storage may be overloaded or unreachable; the job can be retried",
    )


# --------------------------------------------------------------------------- upload


def collect_files(src_dir: Path, *, excludes: Iterable[str] = (),
                  reserved: Iterable[str] = ()) -> Collected:
    """The regular files under ``src_dir`` to upload, minus the excluded ones.

    Left out (and said why in ``skipped``): symbolic links that point outside
    ``src_dir`` or to folders, special files, and the top-level folders named
    in ``reserved`` (the caller's own records there: an app must not write them).
    A file name that cannot be an object key raises :class:`StorageError`.
    """
    src_dir = Path(src_dir)
    root = src_dir.resolve()
    patterns = compile_excludes(excludes)
    reserved = set(reserved)
    out = Collected()
    for dirpath, dirnames, filenames in os.walk(src_dir):
        rel_dir = os.path.relpath(dirpath, src_dir).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in sorted(dirnames):
            rel = rel_dir + d
            full = os.path.join(dirpath, d)
            if rel in reserved:
                out.skipped.append(f"{rel}/ (reserved for bidsbatch's own records)")
            elif is_excluded(rel, patterns) or is_excluded(rel + "/", patterns):
                out.excluded += sum(len(f) for _, _, f in os.walk(full))
            elif os.path.islink(full):
                out.skipped.append(f"{rel}/ (symbolic link to a folder)")
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = rel_dir + name
            path = Path(dirpath) / name
            if is_excluded(rel, patterns):
                out.excluded += 1
                continue
            reason = hostile_reason(rel)
            if reason:
                raise StorageError(
                    f"output file {rel!r} cannot be stored: {reason}",
                    hint="rename it in the app, or exclude it with [output] exclude",
                )
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    out.skipped.append(f"{rel} (symbolic link outside the output folder)")
                    continue
            elif not path.is_file():
                out.skipped.append(f"{rel} (not a regular file)")
                continue
            out.files.append(LocalFile(rel, path, path.stat().st_size))
    out.files.sort(key=lambda f: f.key)
    return out


def upload_tree(
    src_dir: Path,
    location: Location,
    prefix: str = "",
    *,
    excludes: Iterable[str] = (),
    max_workers: int = DEFAULT_WORKERS,
    part_size: int = DEFAULT_PART_SIZE,
    retry: RetryPolicy = RetryPolicy(),
    progress: Progress | None = None,
    collected: Collected | None = None,
    reserved: Iterable[str] = (),
) -> list[OutputFile]:
    """Upload every file under ``src_dir`` to ``location`` below ``prefix``, in parallel.

    Returns the manifest of what was stored, sorted by key: key (relative to
    ``location``), size, and ``"sha256:<hex>"`` computed from the local file
    (streamed, in parallel with the uploads). Never sets an ACL. Pass
    ``collected`` (from :func:`collect_files`) to reuse a walk already done.

    Raises :class:`TransientStorageError` when files still fail after the retry
    rounds and :class:`StorageError` for anything that will not pass.
    """
    files = (collected or collect_files(src_dir, excludes=excludes, reserved=reserved)).files
    base = safe_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
    jobs = [LocalFile(base + f.key, f.path, f.size) for f in files]
    jobs.sort(key=lambda j: (-j.size, j.key))
    checksums: dict[str, str] = {}
    lock = threading.Lock()

    def checksum(job: LocalFile) -> str:
        digest = checksums.get(job.key)
        if digest is None:
            digest = sha256_checksum(job.path)
            with lock:
                checksums[job.key] = digest
        return digest

    def one_round(batch: list[LocalFile]) -> list[tuple[LocalFile, BidsbatchError]]:
        return location.upload_round(batch, checksum=checksum, max_workers=max_workers,
                                     part_size=part_size, progress=progress)

    _with_retries(jobs, one_round, retry=retry, what="upload")
    return sorted((OutputFile(j.key, j.size, checksums[j.key]) for j in jobs), key=lambda o: o.key)


__all__ = [
    "DEFAULT_PART_SIZE",
    "DEFAULT_WORKERS",
    "ChecksumMismatchError",
    "Collected",
    "LocalFile",
    "RemoteFile",
    "RetryPolicy",
    "TransferStats",
    "collect_files",
    "compile_excludes",
    "download_many",
    "file_digest",
    "is_excluded",
    "plain_md5",
    "sha256_checksum",
    "transfer_config",
    "upload_tree",
]
