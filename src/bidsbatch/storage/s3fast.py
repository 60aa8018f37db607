"""The bulk data path of S3 (stage-in and stage-out rounds) through obstore, when it can be.

A worker is a fresh process per scan: boto3's path costs about 0.6–1.0 s of CPU
before the first byte (importing botocore, loading the S3 model) and then
~8 s of client CPU per GB; obstore (Rust ``object_store``) costs ~0.05 s to
start and a fraction of the CPU per byte (bench/RESULTS.md, "obstore for the
bulk path"). Listing, small reads and writes, errors and everything else stay
on boto3.

obstore is used only where it behaves as boto3 would (:func:`fast_store`
returns None otherwise, and the round goes to s3transfer):

* endpoint: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (plain http allowed
  when the URL says so); none: AWS's regional endpoint;
* credentials: access keys in the environment, or, when no profile is in play
  (no ``AWS_PROFILE``, no shared config or credentials file), the web identity
  (``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``) or container role
  (``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``: ECS, Batch; ``_FULL_URI`` with
  its token file: EKS) that
  object_store reads itself, in botocore's order. Anything else (profiles, SSO,
  instance roles) is resolved by botocore's own chain and handed to obstore
  through a credential callback, so the same identity is used; ``--no-sign-request``
  sends unsigned requests;
* region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` or the profile's; unknown on
  AWS itself: boto3 (which follows S3's redirects);
* ``--requester-pays``: ``x-amz-request-payer`` on every request.

Integrity is what the boto3 path checks: every GET carries ``If-Match`` with the
planned ETag and lands under a temporary name, verified (size, MD5 when the
ETag is one) before its rename (``transfer.verify_and_rename``); every upload
carries an ``x-amz-checksum-sha256`` of its body (object_store computes it, S3
rejects a mismatch), and the marker's SHA-256 is ours, from the local file.

``BIDSBATCH_S3_TRANSFER=boto3`` forces the s3transfer path (a user's way out).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BidsbatchError, StorageError, TransientStorageError
from .base import DownloadJob, LocalFile, Progress, S3Options

MiB = 1024 * 1024

#: Pieces a download is read and written in (obstore yields at least this much).
_CHUNK = 4 * MiB


@dataclass(frozen=True)
class FastConfig:
    """What the store is built from (hashable: one store per process and configuration)."""

    bucket: str
    options: S3Options
    endpoint: str | None
    region: str | None
    native_credentials: bool


class WrongRegion(Exception):
    """The bucket answered from another region: the round is redone on boto3 (it redirects)."""


def _profile_in_play(env: os._Environ[str] | dict[str, str]) -> bool:
    if env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
        return True
    home = Path.home() / ".aws"
    files = (env.get("AWS_CONFIG_FILE") or str(home / "config"),
             env.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / "credentials"))
    return any(Path(f).expanduser().is_file() for f in files)


def fast_config(bucket: str, options: S3Options) -> FastConfig | None:
    """How obstore would reach ``bucket`` as boto3 does; None when it cannot (use boto3)."""
    env = os.environ
    if (env.get("BIDSBATCH_S3_TRANSFER") or "").lower() == "boto3":
        return None
    if _runtime_pid not in (None, os.getpid()):
        # Forked from a process that used obstore: its runtime's threads did not
        # survive the fork, and a request on it would hang. boto3 is fork-safe.
        return None
    try:
        import obstore  # noqa: F401
    except ImportError:
        return None
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    profile = _profile_in_play(env)
    if options.no_sign_request or (env.get("AWS_ACCESS_KEY_ID")
                                   and env.get("AWS_SECRET_ACCESS_KEY")):
        native = True
    elif profile:
        native = False
    else:
        # object_store reads a full URI only with its token file (EKS pod identity);
        # without one, botocore's chain reads it.
        named = (env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN")) or \
            env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or \
            (env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
             and env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))
        native = bool(named)
    if profile and (region is None or endpoint is None):
        # The profile may name the region or an endpoint: ask botocore (no client made).
        session = _botocore_session()
        region = region or session.get_config_variable("region")
        if endpoint is None and _profile_endpoint(session):
            return None  # a profile's endpoint_url / services section: boto3 reads those
    if region is None and endpoint is None:
        return None  # S3 itself, region unknown: boto3 follows the redirect
    return FastConfig(bucket=bucket, options=options, endpoint=endpoint, region=region,
                      native_credentials=native)


def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def _profile_endpoint(session: Any) -> bool:
    try:
        cfg = session.get_scoped_config()
    except Exception:
        return False
    return bool(cfg.get("endpoint_url") or cfg.get("services"))


class BotocoreCredentials:
    """obstore credential callback backed by botocore's own chain (profiles, SSO, IMDS)."""

    def __init__(self) -> None:
        creds = _botocore_session().get_credentials()
        if creds is None:
            raise StorageError(
                "no AWS credentials found to reach S3",
                hint="configure a profile (aws configure, AWS_PROFILE) or pass "
                "--no-sign-request for a public bucket",
            )
        self._creds = creds

    def __call__(self) -> dict[str, Any]:
        import datetime

        frozen = self._creds.get_frozen_credentials()
        # Refreshable credentials renew themselves in get_frozen_credentials; ask
        # again in 5 minutes rather than trusting an expiry we do not know.
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5)
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": expires}


_stores: dict[FastConfig, Any] = {}

#: The process that made obstore's stores (and so its runtime), None before the first.
_runtime_pid: int | None = None


def store_for(config: FastConfig, *, max_workers: int) -> Any:
    """The obstore ``S3Store`` of a configuration (one per process)."""
    global _runtime_pid
    store = _stores.get(config)
    if store is not None:
        return store
    from obstore.store import S3Store

    _runtime_pid = os.getpid()
    kwargs: dict[str, Any] = {
        "checksum_algorithm": "sha256",
        "request_payer": config.options.requester_pays,
        "skip_signature": config.options.no_sign_request,
    }
    if config.region:
        kwargs["region"] = config.region
    if config.endpoint:
        kwargs["endpoint"] = config.endpoint
    client_options: dict[str, Any] = {
        "allow_http": bool(config.endpoint and config.endpoint.startswith("http://")),
        # The default (30 s for a whole request) would cut a slow 64 MiB part short.
        "timeout": "600s", "connect_timeout": "10s",
        "pool_max_idle_per_host": str(max(32, max_workers)),
    }
    provider = None if config.native_credentials else BotocoreCredentials()
    store = S3Store(config.bucket, client_options=client_options, credential_provider=provider,
                    **kwargs)
    _stores[config] = store
    return store


def translate(exc: BaseException, where: str, *, options: S3Options) -> BidsbatchError:
    """One clear line for an obstore error (same words as the boto3 path's)."""
    from obstore import exceptions as ox

    from .transfer import ChecksumMismatchError

    text = str(exc)
    if isinstance(exc, BidsbatchError):
        return exc
    if _status(text, 301) and ("PermanentRedirect" in text or "Moved Permanently" in text):
        raise WrongRegion(text) from None
    # What is missing first: the text of any error also holds the endpoint's port.
    if "NoSuchBucket" in text:
        return StorageError(f"bucket {where.split('/')[2]!r} does not exist",
                            hint="check the bucket name in the URI")
    if is_not_found(exc):
        return StorageError(f"{where} does not exist")
    if isinstance(exc, ox.PreconditionError) or _status(text, 412):
        return ChecksumMismatchError(
            f"{where}: content does not match its ETag (it changed since the run was "
            "planned)",
            hint="plan the run again if the dataset was changed on purpose")
    if isinstance(exc, ox.PermissionDeniedError | ox.UnauthenticatedError) or _status(text, 403):
        hint = "check your credentials and the bucket policy"
        if not options.no_sign_request:
            hint += "; for a public bucket pass --no-sign-request"
        if not options.requester_pays:
            hint += "; for a Requester Pays bucket pass --requester-pays"
        return StorageError(f"access denied to {where}", hint=hint)
    if isinstance(exc, OSError):
        return StorageError(f"local file error for {where}: {exc}")
    # Connection errors, timeouts, 5xx and throttling that outlived object_store's
    # own retries: may pass on a later round.
    return TransientStorageError(f"cannot reach S3 for {where}: {text.splitlines()[0][:300]}")


def _status(text: str, code: int) -> bool:
    """Whether ``text`` names the HTTP status ``code`` as a number of its own (not inside
    a port, a request id or a key: ``127.0.0.1:41235`` must not read as a 412)."""
    import re

    return re.search(rf"(?<![\w.:/-]){code}(?![\w.:/-])", text) is not None


def is_not_found(exc: BaseException) -> bool:
    """An object or bucket S3 does not have (obstore raises a FileNotFoundError for it)."""
    from obstore import exceptions as ox

    return isinstance(exc, ox.NotFoundError) or (
        isinstance(exc, FileNotFoundError) and "Object at location" in str(exc))


# --------------------------------------------------------------------------- rounds


def download_round(store: Any, jobs: list[DownloadJob], *, full_key: Callable[[str], str],
                   describe: Callable[[str], str], options: S3Options,
                   verify: Callable[[DownloadJob], None], max_workers: int, part_size: int,
                   progress: Progress | None) -> list[tuple[DownloadJob, BidsbatchError]]:
    """Download ``jobs`` (``max_workers`` requests in flight); verify each as it lands."""
    return asyncio.run(_download_all(store, jobs, full_key=full_key, describe=describe,
                                     options=options, verify=verify, max_workers=max_workers,
                                     part_size=part_size, progress=progress))


async def _download_all(store: Any, jobs: list[DownloadJob], *, full_key: Callable[[str], str],
                        describe: Callable[[str], str], options: S3Options,
                        verify: Callable[[DownloadJob], None], max_workers: int,
                        part_size: int, progress: Progress | None,
                        ) -> list[tuple[DownloadJob, BidsbatchError]]:
    from .transfer import ChecksumMismatchError

    sem = asyncio.Semaphore(max_workers)
    failures: list[tuple[DownloadJob, BidsbatchError]] = []

    async def one(job: DownloadJob) -> None:
        try:
            await _download_one(store, job, full_key(job.key), sem=sem, part_size=part_size,
                                progress=progress)
            await asyncio.to_thread(verify, job)
        except ChecksumMismatchError as exc:
            failures.append((job, exc))
        except WrongRegion:
            raise
        except Exception as exc:
            job.part.unlink(missing_ok=True)
            err = translate(exc, describe(job.key), options=options)
            if not isinstance(err, TransientStorageError | ChecksumMismatchError):
                raise err from None
            failures.append((job, err))

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in jobs:
            job.part.unlink(missing_ok=True)
        raise
    return failures


async def _download_one(store: Any, job: DownloadJob, key: str, *, sem: asyncio.Semaphore,
                        part_size: int, progress: Progress | None) -> None:
    import obstore

    match = f'"{job.etag.strip(chr(34))}"' if job.etag else None
    ranges = [(start, min(start + part_size, job.size))
              for start in range(0, job.size, part_size)] or [(0, 0)]
    fd = os.open(job.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        async def piece(start: int, end: int) -> None:
            opts: dict[str, Any] = {"if_match": match} if match else {}
            if len(ranges) > 1:
                opts["range"] = (start, end)
            async with sem:
                result = await obstore.get_async(store, key, options=opts)
                if end - start <= _CHUNK:
                    # A small body in one piece: one copy into Python, one write.
                    data = await result.bytes_async()
                    os.pwrite(fd, memoryview(data), start)
                    if progress is not None:
                        progress(len(data))
                    return
                offset = start
                async for chunk in result.stream(min_chunk_size=_CHUNK):
                    view = memoryview(chunk)
                    os.pwrite(fd, view, offset)
                    offset += len(view)
                    if progress is not None:
                        progress(len(view))

        await asyncio.gather(*(piece(s, e) for s, e in ranges))
    finally:
        os.close(fd)


def upload_round(store: Any, jobs: list[LocalFile], *, full_key: Callable[[str], str],
                 describe: Callable[[str], str], options: S3Options,
                 checksum: Callable[[LocalFile], str], max_workers: int, part_size: int,
                 progress: Progress | None) -> list[tuple[LocalFile, BidsbatchError]]:
    """Upload ``jobs``; each file's SHA-256 (the marker's) is taken while it uploads."""
    return asyncio.run(_upload_all(store, jobs, full_key=full_key, describe=describe,
                                   options=options, checksum=checksum, max_workers=max_workers,
                                   part_size=part_size, progress=progress))


async def _upload_all(store: Any, jobs: list[LocalFile], *, full_key: Callable[[str], str],
                      describe: Callable[[str], str], options: S3Options,
                      checksum: Callable[[LocalFile], str], max_workers: int, part_size: int,
                      progress: Progress | None) -> list[tuple[LocalFile, BidsbatchError]]:
    import obstore

    sem = asyncio.Semaphore(max_workers)
    hashers = asyncio.Semaphore(2)
    failures: list[tuple[LocalFile, BidsbatchError]] = []

    async def digest(job: LocalFile) -> None:
        async with hashers:
            await asyncio.to_thread(checksum, job)

    async def one(job: LocalFile) -> None:
        try:
            async with sem:
                # object_store sends the body's SHA-256 (x-amz-checksum-sha256) and
                # S3 checks it; a file above part_size goes in parts of that size.
                await obstore.put_async(store, full_key(job.key), job.path,
                                        chunk_size=part_size,
                                        max_concurrency=max(1, min(4, max_workers)))
            if progress is not None:
                progress(job.size)
        except WrongRegion:
            raise
        except Exception as exc:
            err = translate(exc, describe(job.key), options=options)
            if not isinstance(err, TransientStorageError):
                raise err from None
            failures.append((job, err))

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    hashing = [asyncio.ensure_future(digest(job)) for job in jobs]
    try:
        await asyncio.gather(*tasks)
        await asyncio.gather(*hashing)
    except OSError as exc:
        raise StorageError(f"cannot read output file: {exc}") from None
    finally:
        for t in (*tasks, *hashing):
            t.cancel()
        await asyncio.gather(*tasks, *hashing, return_exceptions=True)
    return failures


# --------------------------------------------------------------------------- small objects


class SmallObjects:
    """A worker's few small requests (its spec, markers, logs) on the same obstore store.

    So that a worker never needs botocore at all: its fixed cost is what it pays
    per scan (bench/RESULTS.md). Each method raises what the boto3 path raises.
    """

    def __init__(self, store: Any, *, full_key: Callable[[str], str],
                 describe: Callable[[str], str], options: S3Options) -> None:
        self.store, self.full_key, self.describe, self.options = store, full_key, describe, options

    def _error(self, exc: BaseException, key: str) -> BidsbatchError:
        return translate(exc, self.describe(key), options=self.options)

    def stat(self, key: str) -> tuple[int, str | None] | None:
        """(size, ETag) of ``key``, None when it does not exist (the bucket does)."""
        import obstore

        try:
            meta = obstore.head(self.store, self.full_key(key))
        except Exception as exc:
            if is_not_found(exc):
                self._check_bucket(key)
                return None
            raise self._error(exc, key) from None
        etag = meta.get("e_tag")
        return int(meta["size"]), etag.strip('"') if etag else None

    def _check_bucket(self, key: str) -> None:
        # A 404 may mean "no such bucket": a listing of the key's folder tells
        # (not HeadBucket: a least-privilege role may list only its prefixes).
        import obstore

        folder = self.full_key(key).rpartition("/")[0] or None
        try:
            next(iter(obstore.list(self.store, prefix=folder, chunk_size=1)), None)
        except Exception as exc:
            raise self._error(exc, "" if "NoSuchBucket" in str(exc) else key) from None

    def read(self, key: str) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self.store, self.full_key(key)).bytes())
        except Exception as exc:
            raise self._error(exc, key) from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        import obstore

        try:
            return bytes(obstore.get_range(self.store, self.full_key(key), start=start,
                                           length=length))
        except Exception as exc:
            if _status(str(exc), 416) or "InvalidRange" in str(exc) or \
                    "out of range" in str(exc).lower():
                return b""  # the range starts past the end: no error here
            raise self._error(exc, key) from None

    def write(self, key: str, data: bytes) -> None:
        import obstore

        try:
            # One PUT (atomic on S3), with its SHA-256 that S3 checks.
            obstore.put(self.store, self.full_key(key), data, use_multipart=False)
        except Exception as exc:
            raise self._error(exc, key) from None

    def delete(self, key: str) -> None:
        import obstore

        try:
            obstore.delete(self.store, self.full_key(key))
        except Exception as exc:
            if not is_not_found(exc):
                raise self._error(exc, key) from None
