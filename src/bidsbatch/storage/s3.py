"""An ``s3://bucket/prefix`` as a :class:`Location`, with S3's fast bulk operations.

The standard AWS configuration only: profiles, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` (read by botocore itself).
Requester Pays and unsigned reads are options of the location
(:class:`S3Options`). Listing many subjects is a few key-range listings;
transfers and a worker's small reads and writes go through obstore
(``s3fast.py``) where it reaches S3 as boto3 would, else one s3transfer
``TransferManager`` per round; botocore's errors become one clear line each
(:meth:`S3Location.translate_error`).
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ..errors import (
    BidsbatchError,
    StorageError,
    TransientStorageError,
    UsageError,
    aws_error_code,
)
from .base import (
    DownloadJob,
    Listing,
    LocalFile,
    Location,
    ObjectInfo,
    Progress,
    S3Options,
    safe_key,
)
from .keyranges import RangePlan
from .transfer import ChecksumMismatchError, transfer_config

_TRANSIENT_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "503",
    "500",
    "ThrottlingException",
}

#: ``S3Location._fast``'s answer when the request must go to boto3 after all.
_BOTO = object()

_client_lock = threading.Lock()
_client_cache: dict[tuple[Any, ...], Any] = {}

#: The standard variables that change which client a process needs.
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION",
               "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE")


def make_s3_client(options: S3Options = S3Options(), *, max_pool_connections: int = 32) -> Any:
    """An S3 client from the standard AWS configuration (shared per options, thread-safe)."""
    key = (options, max_pool_connections, *(os.environ.get(v) for v in _CLIENT_ENV))
    with _client_lock:
        client = _client_cache.get(key)
        if client is None:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            # Our defaults, unless the standard AWS variables say otherwise (an
            # explicit Config would otherwise silently override them).
            retries = {
                "mode": os.environ.get("AWS_RETRY_MODE") or "adaptive",
                "max_attempts": _int_env("AWS_MAX_ATTEMPTS", 8),
            }
            config = Config(
                retries=retries,
                max_pool_connections=max_pool_connections,
                signature_version=UNSIGNED if options.no_sign_request else None,
                # Every download is checked against its ETag's MD5 and every single-part
                # upload carries our own SHA-256 (S3 checks it): botocore's CRC32 of each
                # body, on top, would hash every byte once more (bench/RESULTS.md).
                request_checksum_calculation=os.environ.get(
                    "AWS_REQUEST_CHECKSUM_CALCULATION") or "when_required",
                response_checksum_validation=os.environ.get(
                    "AWS_RESPONSE_CHECKSUM_VALIDATION") or "when_required",
            )
            client = boto3.session.Session().client("s3", config=config)
            client.meta.events.register("before-sign.s3.PutObject", _known_payload_hash)
            _client_cache[key] = client
        return client


def _known_payload_hash(request: Any, **_: Any) -> None:
    """Sign a PUT with the SHA-256 we already have instead of hashing the body again.

    Over plain HTTP (an S3-compatible endpoint such as MinIO or moto) SigV4
    signs the payload's SHA-256, which botocore computes by reading the body.
    A single-part upload of ours carries ``x-amz-checksum-sha256``, the same
    digest: use it. A wrong digest would fail the upload, not pass silently.
    """
    import base64
    import binascii

    given = request.headers.get("x-amz-checksum-sha256")
    if not given or "X-Amz-Content-SHA256" in request.headers:
        return
    try:
        request.headers["X-Amz-Content-SHA256"] = base64.b64decode(given).hex()
    except (binascii.Error, ValueError):
        return


def _int_env(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "")))
    except ValueError:
        return default


class S3Location(Location):
    """An ``s3://bucket/prefix`` location."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        options: S3Options = S3Options(),
        client: Any | None = None,
    ) -> None:
        if not bucket:
            raise UsageError("an s3:// URI needs a bucket name", hint="write s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options
        self._client = client
        #: A client given by the caller is a configuration of its own: keep every
        #: request on it. Otherwise bulk transfers may go through obstore (s3fast.py).
        self._own_client = client is None
        self._fast_disabled = False
        #: How the last ``list_prefixes`` split its key range (None: one page sufficed).
        self.last_ranges: RangePlan | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client(self.options)
        return self._client

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def is_remote(self) -> bool:
        return True

    def child(self, relpath: str) -> S3Location:
        rel = safe_key(relpath.strip("/"))
        prefix = f"{self.prefix}/{rel}" if self.prefix else rel
        child = S3Location(self.bucket, prefix, options=self.options, client=self._client)
        child._own_client = self._own_client
        return child

    def full_key(self, key: str) -> str:
        """The object key in the bucket for ``key`` relative to this location."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    @property
    def request_extra(self) -> dict[str, str]:
        """Extra request arguments every call needs (Requester Pays)."""
        return {"RequestPayer": "requester"} if self.options.requester_pays else {}

    def list(self, prefix: str = "", *, delimiter: str | None = "/") -> Listing:
        full = self.full_key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, **self.request_extra}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        listing = Listing()
        with self._errors(prefix or ""):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(**kwargs):
                for obj in page.get("Contents", ()):
                    listing.objects.append(
                        ObjectInfo(self._rel(obj["Key"]), obj["Size"], _etag(obj.get("ETag")))
                    )
                for cp in page.get("CommonPrefixes", ()):
                    listing.prefixes.append(self._rel(cp["Prefix"]))
        return listing

    def iter_range(self, prefix: str, *, start_after: str, stop: str) -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` with ``start_after < key < stop``, in key order.

        Keys are relative to this location. One paginated listing that starts
        just after ``start_after`` (S3's ``StartAfter``) and ends at ``stop``:
        how the crawl reads many small subjects in a few 1,000-key pages.
        """
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.full_key(prefix),
            "StartAfter": self.full_key(start_after),
            **self.request_extra,
        }
        end = self.full_key(stop)
        with self._errors(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(**kwargs):
                for obj in page.get("Contents", ()):
                    if obj["Key"] >= end:
                        return
                    yield ObjectInfo(self._rel(obj["Key"]), obj["Size"], _etag(obj.get("ETag")))

    def stat(self, key: str) -> ObjectInfo | None:
        small = self._small()
        if small is not None:
            found = self._fast(lambda: small.stat(key))
            if found is not _BOTO:
                return None if found is None else ObjectInfo(key, found[0], found[1])
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key),
                                           **self.request_extra)
        except ClientError as exc:
            if aws_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                # A 404 may also mean "no such bucket"; tell the two apart once.
                self._check_bucket(key)
                return None
            raise self.translate_error(exc, key) from None
        except Exception as exc:
            raise self.translate_error(exc, key) from None
        return ObjectInfo(key, head["ContentLength"], _etag(head.get("ETag")))

    def _check_bucket(self, key: str) -> None:
        # A one-key listing under the key itself, not HeadBucket: a least-privilege role
        # may list only its prefixes (s3:prefix condition), and HeadBucket has no prefix.
        from botocore.exceptions import ClientError

        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.full_key(key), MaxKeys=1,
                                        **self.request_extra)
        except ClientError as exc:
            missing_bucket = aws_error_code(exc) == "NoSuchBucket"
            raise self.translate_error(exc, "" if missing_bucket else key) from None

    def read_bytes(self, key: str) -> bytes:
        small = self._small()
        if small is not None and (data := self._fast(lambda: small.read(key))) is not _BOTO:
            return data
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key),
                                          **self.request_extra)
            return resp["Body"].read()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        from botocore.exceptions import ClientError

        if length <= 0:
            return b""
        small = self._small()
        if small is not None and (data := self._fast(
                lambda: small.read_range(key, start, length))) is not _BOTO:
            return data
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key),
                                          Range=f"bytes={start}-{start + length - 1}",
                                          **self.request_extra)
            with self._errors(key):
                return resp["Body"].read()
        except ClientError as exc:
            # 416: the range starts past the end of the object, which is no error here.
            if aws_error_code(exc) in ("InvalidRange", "416"):
                return b""
            raise self.translate_error(exc, key) from None
        except BidsbatchError:
            raise
        except Exception as exc:
            raise self.translate_error(exc, key) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old or the new object.
        small = self._small()
        if small is not None and self._fast(lambda: small.write(key, data)) is not _BOTO:
            return
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket, Key=self.full_key(key), Body=data, **self.request_extra
            )

    def delete(self, key: str) -> None:
        small = self._small()
        if small is not None and self._fast(lambda: small.delete(key)) is not _BOTO:
            return
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key),
                                      **self.request_extra)

    def download(
        self, key: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        tmp = dest.with_name(f".{dest.name}.part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._errors(key):
                self.client.download_file(
                    self.bucket,
                    self.full_key(key),
                    str(tmp),
                    ExtraArgs=self.request_extra or None,
                    Callback=progress,
                    Config=transfer_config(),
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectInfo(key, dest.stat().st_size)

    def upload(
        self, src: Path, key: str, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        # Never an ACL: buckets made since 2023 have ACLs disabled, and outputs
        # inherit the bucket's policy.
        with self._errors(key):
            self.client.upload_file(
                str(src),
                self.bucket,
                self.full_key(key),
                ExtraArgs=self.request_extra or None,
                Callback=progress,
                Config=transfer_config(),
            )
        return ObjectInfo(key, src.stat().st_size)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except BidsbatchError:
            raise
        except Exception as exc:
            raise self.translate_error(exc, key) from None

    # -- bulk operations (see Location)

    def list_prefixes(self, prefixes: list[str], *, max_workers: int = 16,
                      progress: Callable[[int, int], None] | None = None,
                      ) -> dict[str, list[ObjectInfo]]:
        """Everything below each prefix, by prefix: a few key-range listings, not one each.

        One-level prefixes (``sub-01/``), sorted in key order, are one key range:
        its first page is read alone (a dataset under 1,000 keys is then done),
        then the rest is cut into contiguous groups read in parallel, each one
        paginated listing over its range. How many groups comes from what the
        first page and one empty request took and how dense the keys are
        (``keyranges.choose``), at most ``max_workers``: 1,000 small subjects cost
        about ``objects / 1000 + groups + 2`` requests instead of one per
        subject (bench/RESULTS.md). Deeper prefixes are listed one by one.
        """
        flat = [p for p in prefixes if p.endswith("/") and p.count("/") == 1]
        if len(flat) < 2:
            return super().list_prefixes(prefixes, max_workers=max_workers, progress=progress)
        ordered = sorted(flat)  # S3's key order
        total = len(prefixes)
        if progress:
            progress(0, total)
        out, rest, start_after = self._first_page(ordered, max_workers=max_workers)
        units: list[tuple[list[str], str | None]] = []
        if rest:
            n_groups = self.last_ranges.ranges if self.last_ranges else 1
            size = max(1, -(-len(rest) // n_groups))
            units = [(rest[i:i + size], start_after if i == 0 else None)
                     for i in range(0, len(rest), size)]
        flat_set, rest_set = set(flat), set(rest)
        units += [([p], None) for p in prefixes if p not in flat_set]

        def one(unit: tuple[list[str], str | None]) -> dict[str, list[ObjectInfo]]:
            group, after = unit
            if len(group) == 1 and after is None:
                return {group[0]: self.list(group[0], delimiter=None).objects}
            return self._list_key_range(group, start_after=after)

        from concurrent.futures import ThreadPoolExecutor

        done = {p for p in ordered if p not in rest_set}
        if progress:
            progress(len(done), total)
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(units) or 1)),
                                thread_name_prefix="list") as pool:
            for listing in pool.map(one, units):
                for prefix, objects in listing.items():
                    out.setdefault(prefix, []).extend(objects)
                    done.add(prefix)
                if progress:
                    progress(len(done), total)
        return out

    def _first_page(self, ordered: list[str], *, max_workers: int,
                    ) -> tuple[dict[str, list[ObjectInfo]], list[str], str | None]:
        """Read the range's first page and decide the split of the rest.

        Returns the objects read so far by prefix, the prefixes still to read
        (the first of them possibly in part) and the key to continue after.
        """
        import bisect
        import time

        from .keyranges import Probe, choose

        out: dict[str, list[ObjectInfo]] = {p: [] for p in ordered}
        common = _common_prefix(ordered)
        stop = self.full_key(ordered[-1].rstrip("/") + "0")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.full_key(common),
                                  "StartAfter": self.full_key(ordered[0].rstrip("/")),
                                  **self.request_extra}
        t0 = time.perf_counter()
        with self._errors(common):
            page = self.client.list_objects_v2(**kwargs)
        page_seconds = time.perf_counter() - t0
        contents = page.get("Contents", ())
        last = None
        for obj in contents:
            if obj["Key"] >= stop:
                return out, [], None
            key = self._rel(obj["Key"])
            folder, slash, _rest = key.partition("/")
            if slash and folder + "/" in out:
                out[folder + "/"].append(
                    ObjectInfo(key, obj["Size"], _etag(obj.get("ETag"))))
            last = key
        if not page.get("IsTruncated") or last is None:
            self.last_ranges = None
            return out, [], None
        # The latency: one request that lists (almost) nothing, past the last prefix.
        t0 = time.perf_counter()
        with self._errors(common):
            self.client.list_objects_v2(**{**kwargs, "StartAfter": stop, "MaxKeys": 1})
        small_seconds = time.perf_counter() - t0
        at = max(0, bisect.bisect_right(ordered, last) - 1)  # the prefix holding `last`
        rest = ordered[at:]
        self.last_ranges = choose(
            Probe(small_seconds=small_seconds, page_seconds=page_seconds,
                  page_keys=len(contents), prefixes_covered=at + 0.5),
            prefixes_left=len(rest), max_ranges=max_workers)
        return out, rest, last

    def _list_key_range(self, group: list[str], *,
                        start_after: str | None = None) -> dict[str, list[ObjectInfo]]:
        """The objects of ``group`` (one-level prefixes, contiguous in key order), by prefix.

        The range starts just after ``FIRST`` (every key of ``FIRST/`` sorts after
        it), or after ``start_after`` (a key already read), and stops at
        ``LAST0`` (``/`` sorts before ``0``, so every key of ``LAST/`` sorts
        before it). A key is given to the folder it starts with, so each prefix
        gets exactly what ``Prefix=FIRST/`` would list; keys of other folders
        inside the range are read and dropped.
        """
        out: dict[str, list[ObjectInfo]] = {p: [] for p in group}
        common = _common_prefix(group)
        for obj in self.iter_range(common, start_after=start_after or group[0].rstrip("/"),
                                   stop=group[-1].rstrip("/") + "0"):
            folder, slash, _rest = obj.key.partition("/")
            if slash and folder + "/" in out:
                out[folder + "/"].append(obj)
        return out

    def download_round(self, jobs: list[DownloadJob], *, verify: Callable[[DownloadJob], None],
                       max_workers: int, part_size: int, progress: Progress | None,
                       ) -> list[tuple[DownloadJob, BidsbatchError]]:
        """One round of downloads, verified as files land: obstore when it can, else s3transfer."""
        fast = self._fast_store(max_workers)
        if fast is not None:
            from . import s3fast

            try:
                return s3fast.download_round(
                    fast, jobs, full_key=self.full_key, describe=self.describe,
                    options=self.options, verify=verify, max_workers=max_workers,
                    part_size=part_size, progress=progress)
            except s3fast.WrongRegion:
                self._fast_disabled = True  # boto3 follows S3's redirect
        done: queue.Queue[tuple[Any, Any]] = queue.Queue()
        failures: list[tuple[DownloadJob, BidsbatchError]] = []
        with _transfer_manager(self, max_workers, part_size) as tm:
            for job in jobs:
                sub = _Subscriber(job, done, progress, size=job.size, etag=job.etag)
                tm.download(self.bucket, self.full_key(job.key), str(job.part),
                            extra_args=dict(self.request_extra), subscribers=[sub])
            # Verify as files finish, while the rest are still downloading. A fatal
            # error leaves the with-block, which cancels what is still queued.
            for _ in jobs:
                job, future = done.get()
                try:
                    future.result()
                    verify(job)
                except ChecksumMismatchError as exc:
                    failures.append((job, exc))
                except Exception as exc:
                    job.part.unlink(missing_ok=True)
                    err = self._translate_transfer(exc, job.key)
                    if not isinstance(err, TransientStorageError | ChecksumMismatchError):
                        raise err from None
                    failures.append((job, err))  # a changed object is read once more
        return failures

    def upload_round(self, jobs: list[LocalFile], *, checksum: Callable[[LocalFile], str],
                     max_workers: int, part_size: int, progress: Progress | None,
                     ) -> list[tuple[LocalFile, BidsbatchError]]:
        """One round of uploads (obstore when it can); each file's SHA-256 is taken as well.

        On the s3transfer path: hash on a small pool and upload each file as soon
        as its checksum is known (S3 checks it against the body).
        """
        fast = self._fast_store(max_workers)
        if fast is not None:
            from . import s3fast

            try:
                return s3fast.upload_round(
                    fast, jobs, full_key=self.full_key, describe=self.describe,
                    options=self.options, checksum=checksum, max_workers=max_workers,
                    part_size=part_size, progress=progress)
            except s3fast.WrongRegion:
                self._fast_disabled = True
        done: queue.Queue[tuple[Any, Any]] = queue.Queue()
        failures: list[tuple[LocalFile, BidsbatchError]] = []

        def digest(job: LocalFile) -> tuple[LocalFile, str]:
            return job, checksum(job)

        # Hashing overlaps the uploads instead of preceding them, and starts before
        # the client exists: a fresh worker's imports and S3 client (about 0.5 s of
        # CPU) run while the files are hashed (hashlib releases the GIL).
        with ThreadPoolExecutor(max_workers=2) as hashers:
            hashed = [hashers.submit(digest, job) for job in jobs]
            with _transfer_manager(self, max_workers, part_size) as tm:
                for fut in as_completed(hashed):
                    try:
                        job, checksum_text = fut.result()
                    except OSError as exc:
                        for f in hashed:
                            f.cancel()
                        raise StorageError(f"cannot read output file: {exc}") from None
                    sub = _Subscriber(job, done, progress, size=job.size)
                    extra = dict(self.request_extra)
                    if job.size < part_size and checksum_text.startswith("sha256:"):
                        # S3 checks the body against the digest the marker records.
                        extra["ChecksumSHA256"] = base64.b64encode(
                            bytes.fromhex(checksum_text[len("sha256:"):])).decode()
                    # No ACL, ever: buckets made since 2023 have ACLs disabled.
                    tm.upload(str(job.path), self.bucket, self.full_key(job.key),
                              extra_args=extra, subscribers=[sub])
                self._collect_uploads(jobs, done, failures)
        return failures

    def _collect_uploads(self, jobs: list[LocalFile], done: queue.Queue[tuple[Any, Any]],
                         failures: list[tuple[LocalFile, BidsbatchError]]) -> None:
        """Wait for every upload of the round; add the transient failures to ``failures``."""
        for _ in jobs:
            job, future = done.get()
            try:
                future.result()
            except Exception as exc:
                err = self._translate_transfer(exc, job.key)
                if not isinstance(err, TransientStorageError):
                    raise err from None
                failures.append((job, err))

    def _small(self) -> Any | None:
        """The small-object requests on obstore's store, or None (boto3's client)."""
        store = self._fast_store(16)
        if store is None:
            return None
        from .s3fast import SmallObjects

        return SmallObjects(store, full_key=self.full_key, describe=self.describe,
                            options=self.options)

    def _fast(self, call: Callable[[], Any]) -> Any:
        """``call()``, or ``_BOTO`` when the bucket is in another region (boto3 redirects)."""
        from .s3fast import WrongRegion

        try:
            return call()
        except WrongRegion:
            self._fast_disabled = True
            return _BOTO

    def _fast_store(self, max_workers: int) -> Any | None:
        """obstore's store for this bucket, or None: boto3's path (see s3fast.py)."""
        if not self._own_client or self._fast_disabled:
            return None
        from . import s3fast

        config = s3fast.fast_config(self.bucket, self.options)
        return None if config is None else s3fast.store_for(config, max_workers=max_workers)

    def etag_is_not_md5(self, key: str) -> bool:
        """Whether the object's ETag is not an MD5 of its content (SSE-KMS, SSE-C).

        Asked only after a mismatch, so a normal download pays no HEAD for it.
        """
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key),
                                           **self.request_extra)
        except Exception:
            return False
        return head.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or bool(
            head.get("SSECustomerAlgorithm")
        )

    def _translate_transfer(self, exc: Exception, key: str) -> BidsbatchError:
        from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError

        if isinstance(exc, BidsbatchError):
            return exc
        if isinstance(exc, S3DownloadFailedError) and "did not match expected ETag" in str(exc):
            # Our GETs carry If-Match with the planned ETag: the object is not what was
            # planned (same words as the MD5 check, which this check spares).
            return ChecksumMismatchError(
                f"{self.describe(key)}: content does not match its ETag (it changed "
                "since the run was planned)",
                hint="plan the run again if the dataset was changed on purpose",
            )
        if isinstance(exc, RetriesExceededError):
            # s3transfer's own download retries (socket errors mid-body) ran out.
            return TransientStorageError(
                f"reading {self.describe(key)} kept failing: {exc.last_exception}"
            )
        if aws_error_code(exc) in ("PreconditionFailed", "412"):
            return ChecksumMismatchError(
                f"{self.describe(key)} changed since the run was planned (its ETag differs)",
                hint="plan the run again if the dataset was changed on purpose",
            )
        return self.translate_error(exc, key)

    def translate_error(self, exc: Exception, key: str) -> BidsbatchError:
        """Turn a botocore error into one clear line: what, where, what to do."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import (
            ClientError,
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        where = self.describe(key)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"no AWS credentials found to read {where}",
                hint="configure a profile (aws configure, AWS_PROFILE) or pass "
                "--no-sign-request for a public bucket",
            )
        if isinstance(exc, HTTPClientError | BotoConnectionError | IncompleteReadError
                      | FlexibleChecksumError):
            # Refused/reset/timed-out connections, bodies cut short, a body that
            # failed its checksum: all may pass on a retry.
            return TransientStorageError(f"cannot reach S3 for {where}: {exc}")
        if isinstance(exc, S3UploadFailedError):
            text = str(exc)
            if "NoSuchBucket" in text:
                return StorageError(
                    f"bucket {self.bucket!r} does not exist",
                    hint="check the bucket name in the URI",
                )
            if "AccessDenied" in text or "403" in text:
                return StorageError(
                    f"access denied writing {where}",
                    hint="check your credentials and the bucket policy",
                )
            return TransientStorageError(f"upload to {where} failed: {text}")
        if isinstance(exc, ClientError):
            code = aws_error_code(exc)
            if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and not key):
                return StorageError(
                    f"bucket {self.bucket!r} does not exist",
                    hint="check the bucket name in the URI",
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return StorageError(f"{where} does not exist")
            if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId",
                        "SignatureDoesNotMatch"):
                hint = "check your credentials and the bucket policy"
                if not self.options.no_sign_request:
                    hint += "; for a public bucket pass --no-sign-request"
                if not self.options.requester_pays:
                    hint += "; for a Requester Pays bucket pass --requester-pays"
                return StorageError(f"access denied to {where}", hint=hint)
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301",
                        "IllegalLocationConstraintException"):
                region = (
                    exc.response.get("Error", {}).get("Region")
                    or exc.response.get("ResponseMetadata", {})
                    .get("HTTPHeaders", {})
                    .get("x-amz-bucket-region")
                )
                hint = f"set AWS_REGION={region}" if region else "set AWS_REGION to its region"
                return StorageError(f"bucket {self.bucket!r} is in another region", hint=hint)
            if code in _TRANSIENT_CODES:
                return TransientStorageError(f"S3 is busy for {where} ({code})")
            message = exc.response.get("Error", {}).get("Message") or code
            return StorageError(f"S3 error for {where}: {code}: {message}")
        if isinstance(exc, OSError):
            return StorageError(f"local file error for {where}: {exc}")
        return StorageError(f"S3 error for {where}: {exc}")


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


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


def _common_prefix(items: list[str]) -> str:
    """The longest string every item starts with (the first and last in order suffice)."""
    lo, hi = min(items), max(items)
    n = 0
    while n < len(lo) and lo[n] == hi[n]:
        n += 1
    return lo[:n]
