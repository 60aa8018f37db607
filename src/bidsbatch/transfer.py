"""Parallel, verified transfers between a Location and a local folder.

Two calls do the worker's data path:

- :func:`download_many` copies a list of objects (key, size, ETag) into a
  local folder: every key passes :func:`~bidsbatch.locations.safe_key` before
  anything is fetched, each file lands under a temporary name and is renamed
  only once its size (and its MD5, when the ETag is a plain MD5) matched;
- :func:`upload_tree` copies a local folder to a location, minus excluded
  globs, and returns the manifest of what it stored (key, size, sha256).

On S3 both go through *one* s3transfer ``TransferManager`` per call: a bounded
pool of request threads shared by every file, so small files run many at a
time and large ones are split into ranged GETs / multipart parts. Sizes come
from the plan, so no HEAD is sent before a download (see bench/RESULTS.md for
the settings and why). Other locations (local folders) use a thread pool
over :meth:`Location.download` / :meth:`Location.upload`.

A transient fault (connection refused, 5xx, throttling) that outlives
botocore's own retries is retried here per file, a few rounds with backoff;
when it still fails the call raises :class:`TransientStorageError` so the
worker can exit 75 and let the executor retry the whole job.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from .errors import BidsbatchError, StorageError, TransientStorageError
from .locations import Location, S3Location, hostile_reason, safe_key
from .markers import STATE_PREFIX, OutputFile

MiB = 1024 * 1024

#: Files (or S3 requests) in flight at once. Measured in bench/RESULTS.md: 16
#: saturates what we could measure; botocore's connection pool is 32.
DEFAULT_WORKERS = 16

#: Files above this size are moved in ranged GETs / multipart parts of this size.
DEFAULT_PART_SIZE = 64 * MiB

#: Suffix of a file being downloaded; renamed away once verified.
PART_SUFFIX = ".bbpart"

Progress = Callable[[int], None]


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


@dataclass(frozen=True)
class LocalFile:
    """A file to upload: its key (relative, ``/``-separated), local path and size."""

    key: str
    path: Path
    size: int


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


@dataclass(frozen=True)
class _Download:
    key: str
    size: int
    etag: str | None
    dest: Path

    @property
    def part(self) -> Path:
        return self.dest.with_name(f".{self.dest.name}{PART_SUFFIX}")


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
        _Download(safe_key(i.key), i.size, i.etag, dest_dir.joinpath(*i.key.split("/")))
        for i in items
    ]
    # Largest first: the long transfers start early and the small ones fill the gaps.
    jobs.sort(key=lambda j: (-j.size, j.key))
    for parent in sorted({j.dest.parent for j in jobs}):
        parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if isinstance(location, S3Location):
        def one_round(batch: list[_Download]) -> list[tuple[_Download, BidsbatchError]]:
            return _s3_download_round(location, batch, max_workers=max_workers,
                                      part_size=part_size, progress=progress)
    else:
        def one_round(batch: list[_Download]) -> list[tuple[_Download, BidsbatchError]]:
            return _pool_round(batch, lambda j: _local_download(location, j, progress),
                               max_workers=max_workers, translate=_as_storage_error)
    _with_retries(jobs, one_round, retry=retry, what="download")
    return TransferStats(len(jobs), sum(j.size for j in jobs), time.monotonic() - started)


def _local_download(location: Location, job: _Download, progress: Progress | None) -> None:
    location.download(job.key, job.part, progress=progress)
    _verify_and_rename(job, location)


def _verify_and_rename(job: _Download, location: Location) -> None:
    """Check size (and MD5 when the ETag is one), then give the file its real name."""
    try:
        size = job.part.stat().st_size
        if size != job.size:
            raise ChecksumMismatchError(
                f"{location.describe(job.key)}: got {size} bytes, expected {job.size}",
                hint="the object changed since the run was planned; plan the run again",
            )
        md5 = plain_md5(job.etag)
        if md5 is not None and file_digest(job.part, "md5") != md5 and not _etag_not_md5(
            location, job.key
        ):
            raise ChecksumMismatchError(
                f"{location.describe(job.key)}: content does not match its ETag {md5}",
                hint="it changed since the run was planned (plan again) or was "
                "corrupted in transit",
            )
        os.replace(job.part, job.dest)
    except BaseException:
        job.part.unlink(missing_ok=True)
        raise


def _etag_not_md5(location: Location, key: str) -> bool:
    """Whether the object's ETag is not an MD5 of its content (SSE-KMS, SSE-C).

    Asked only after a mismatch, so a normal download pays no HEAD for it.
    """
    if not isinstance(location, S3Location):
        return False
    client, bucket, full_key, extra = _s3_parts(location)
    try:
        head = client.head_object(Bucket=bucket, Key=full_key(key), **extra)
    except Exception:
        return False
    return head.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or bool(
        head.get("SSECustomerAlgorithm")
    )


def _s3_parts(location: S3Location) -> tuple[Any, str, Callable[[str], str], dict[str, str]]:
    """The S3 client, bucket, key mapping and request extras of a location."""
    # One adapter for S3Location's internals (see the note in the report on making them public).
    return location.client, location.bucket, location.full_key, location.request_extra


class _Subscriber:
    """s3transfer subscriber: known size (no HEAD), progress, and a done signal."""

    def __init__(self, job: Any, done: queue.Queue[tuple[Any, Any]],
                 progress: Progress | None, *, size: int | None = None,
                 etag: str | None = None) -> None:
        self.job, self.done, self.progress = job, done, progress
        self.size, self.etag = size, etag

    def on_queued(self, future: Any, **_: Any) -> None:
        if self.size is not None:
            future.meta.provide_transfer_size(self.size)
        if self.etag:
            # With size and ETag known s3transfer sends no HEAD, and ranged GETs
            # carry If-Match so a file changing mid-download fails loudly.
            future.meta.provide_object_etag(f'"{self.etag.strip(chr(34))}"')

    def on_progress(self, future: Any, bytes_transferred: int, **_: Any) -> None:
        if self.progress is not None:
            self.progress(bytes_transferred)

    def on_done(self, future: Any, **_: Any) -> None:
        self.done.put((self.job, future))


def _transfer_manager(location: S3Location, max_workers: int, part_size: int) -> Any:
    from s3transfer.manager import TransferManager

    config = transfer_config(max_concurrency=max_workers, part_size=part_size)
    return TransferManager(location.client, config)


def _s3_download_round(
    location: S3Location, jobs: list[_Download], *, max_workers: int, part_size: int,
    progress: Progress | None,
) -> list[tuple[_Download, BidsbatchError]]:
    _client, bucket, full_key, extra = _s3_parts(location)
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    failures: list[tuple[_Download, BidsbatchError]] = []
    with _transfer_manager(location, max_workers, part_size) as tm:
        for job in jobs:
            sub = _Subscriber(job, done, progress, size=job.size, etag=job.etag)
            tm.download(bucket, full_key(job.key), str(job.part), extra_args=dict(extra),
                        subscribers=[sub])
        # Verify as files finish, while the rest are still downloading. A fatal
        # error leaves the with-block, which cancels what is still queued.
        for _ in jobs:
            job, future = done.get()
            try:
                future.result()
                _verify_and_rename(job, location)
            except ChecksumMismatchError as exc:
                failures.append((job, exc))
            except Exception as exc:
                job.part.unlink(missing_ok=True)
                err = _translate_s3(location, exc, job.key)
                if not isinstance(err, TransientStorageError):
                    raise err from None
                failures.append((job, err))
    return failures


def _translate_s3(location: S3Location, exc: Exception, key: str) -> BidsbatchError:
    from s3transfer.exceptions import RetriesExceededError

    if isinstance(exc, BidsbatchError):
        return exc
    if isinstance(exc, RetriesExceededError):
        # s3transfer's own download retries (socket errors mid-body) ran out.
        return TransientStorageError(
            f"reading {location.describe(key)} kept failing: {exc.last_exception}"
        )
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code in ("PreconditionFailed", "412"):
        return ChecksumMismatchError(
            f"{location.describe(key)} changed since the run was planned (its ETag differs)",
            hint="plan the run again if the dataset was changed on purpose",
        )
    return location.translate_error(exc, key)


def _as_storage_error(exc: BaseException, key: str) -> BidsbatchError:
    if isinstance(exc, BidsbatchError):
        return exc
    return StorageError(f"cannot transfer {key}: {exc}")


def _pool_round(
    jobs: list[Any], run: Callable[[Any], None], *, max_workers: int,
    translate: Callable[[BaseException, str], BidsbatchError],
) -> list[tuple[Any, BidsbatchError]]:
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


def collect_files(src_dir: Path, *, excludes: Iterable[str] = ()) -> Collected:
    """The regular files under ``src_dir`` to upload, minus the excluded ones.

    Left out (and said why in ``skipped``): symbolic links that point outside
    ``src_dir`` or to folders, special files, and anything under
    ``.bidsbatch/`` (bidsbatch's own state: an app must not write markers).
    A file name that cannot be an object key raises :class:`StorageError`.
    """
    src_dir = Path(src_dir)
    root = src_dir.resolve()
    patterns = compile_excludes(excludes)
    out = Collected()
    for dirpath, dirnames, filenames in os.walk(src_dir):
        rel_dir = os.path.relpath(dirpath, src_dir).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in sorted(dirnames):
            rel = rel_dir + d
            full = os.path.join(dirpath, d)
            if rel == STATE_PREFIX:
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
) -> list[OutputFile]:
    """Upload every file under ``src_dir`` to ``location`` below ``prefix``, in parallel.

    Returns the manifest of what was stored, sorted by key: key (relative to
    ``location``), size, and ``"sha256:<hex>"`` computed from the local file
    (streamed, in parallel with the uploads). Never sets an ACL. Pass
    ``collected`` (from :func:`collect_files`) to reuse a walk already done.

    Raises :class:`TransientStorageError` when files still fail after the retry
    rounds and :class:`StorageError` for anything that will not pass.
    """
    files = (collected or collect_files(src_dir, excludes=excludes)).files
    base = safe_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""
    jobs = [LocalFile(base + f.key, f.path, f.size) for f in files]
    jobs.sort(key=lambda j: (-j.size, j.key))
    checksums: dict[str, str] = {}
    lock = threading.Lock()
    if isinstance(location, S3Location):
        def one_round(batch: list[LocalFile]) -> list[tuple[LocalFile, BidsbatchError]]:
            return _s3_upload_round(location, batch, checksums, lock, max_workers=max_workers,
                                    part_size=part_size, progress=progress)
    else:
        def upload_one(job: LocalFile) -> None:
            if job.key not in checksums:
                digest = sha256_checksum(job.path)
                with lock:
                    checksums[job.key] = digest
            location.upload(job.path, job.key, progress=progress)

        def one_round(batch: list[LocalFile]) -> list[tuple[LocalFile, BidsbatchError]]:
            return _pool_round(batch, upload_one, max_workers=max_workers,
                               translate=_as_storage_error)
    _with_retries(jobs, one_round, retry=retry, what="upload")
    return sorted((OutputFile(j.key, j.size, checksums[j.key]) for j in jobs), key=lambda o: o.key)


def _s3_upload_round(
    location: S3Location, jobs: list[LocalFile], checksums: dict[str, str],
    lock: threading.Lock, *, max_workers: int, part_size: int, progress: Progress | None,
) -> list[tuple[LocalFile, BidsbatchError]]:
    _client, bucket, full_key, extra = _s3_parts(location)
    done: queue.Queue[tuple[Any, Any]] = queue.Queue()
    failures: list[tuple[LocalFile, BidsbatchError]] = []

    def digest(job: LocalFile) -> LocalFile:
        if job.key not in checksums:
            value = sha256_checksum(job.path)
            with lock:
                checksums[job.key] = value
        return job

    # Hash on a small pool and hand each file to the transfer manager as soon as
    # its checksum is known: hashing overlaps the uploads instead of preceding them.
    with ThreadPoolExecutor(max_workers=2) as hashers, \
            _transfer_manager(location, max_workers, part_size) as tm:
        hashed = [hashers.submit(digest, job) for job in jobs]
        for fut in as_completed(hashed):
            try:
                job = fut.result()
            except OSError as exc:
                for f in hashed:
                    f.cancel()
                raise StorageError(f"cannot read output file: {exc}") from None
            sub = _Subscriber(job, done, progress, size=job.size)
            # No ACL, ever: buckets made since 2023 have ACLs disabled.
            tm.upload(str(job.path), bucket, full_key(job.key), extra_args=dict(extra),
                      subscribers=[sub])
        for _ in jobs:
            job, future = done.get()
            try:
                future.result()
            except Exception as exc:
                err = _translate_s3(location, exc, job.key)
                if not isinstance(err, TransientStorageError):
                    raise err from None
                failures.append((job, err))
    return failures


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
