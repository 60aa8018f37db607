"""Locations: where data lives. A local folder, ``file://…`` or ``s3://bucket/prefix``.

One small interface (``Location``) with two implementations. Keys are always
relative to the location's root and ``/``-separated; every key that comes in
from outside (a listing, a spec) passes :func:`safe_key` before it touches a
local path, so nothing is ever written outside the folder the user named.

S3 uses the standard AWS configuration only: profiles, ``AWS_REGION``,
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` (read by botocore itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import (
    BidsbatchError,
    HostileKeyError,
    StorageError,
    TransientStorageError,
    UsageError,
    aws_error_code,
)


@dataclass(frozen=True, order=True)
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


def hostile_reason(key: str) -> str | None:
    """Why ``key`` is unsafe to use as a relative local path, or None when it is safe."""
    if not key:
        return "empty key"
    if _CONTROL_CHARS.search(key):
        return "control character"
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

    def describe(self, key: str = "") -> str:
        """A URI for ``key`` under this location, for messages."""
        base = self.uri.rstrip("/")
        return f"{base}/{key}" if key else base


# --------------------------------------------------------------------------- local


class LocalLocation(Location):
    """A folder on this machine."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.normpath(Path(root).expanduser().absolute()))

    @property
    def uri(self) -> str:
        return str(self.root)

    def child(self, relpath: str) -> LocalLocation:
        return LocalLocation(self.root / safe_key(relpath.strip("/")))

    def _path(self, key: str) -> Path:
        return self.root / safe_key(key)

    def list(self, prefix: str = "", *, delimiter: str | None = "/") -> Listing:
        base = self.root / prefix if prefix else self.root
        listing = Listing()
        if not base.is_dir():
            return listing
        if delimiter is None:
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames.sort()
                rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
                rel = "" if rel == "." else rel + "/"
                for name in sorted(filenames):
                    st = os.stat(os.path.join(dirpath, name))
                    listing.objects.append(ObjectInfo(rel + name, st.st_size))
            return listing
        with os.scandir(base) as it:
            for entry in sorted(it, key=lambda e: e.name):
                if entry.is_dir():
                    listing.prefixes.append(f"{prefix}{entry.name}/")
                elif entry.is_file():
                    listing.objects.append(ObjectInfo(prefix + entry.name, entry.stat().st_size))
        return listing

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        return ObjectInfo(key, st.st_size) if not os.path.isdir(self._path(key)) else None

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{self.describe(key)} does not exist") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.describe(key)}: {exc.strerror}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            atomic_write(self._path(key), data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.describe(key)}: {exc.strerror}") from None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def download(
        self, key: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        src = self._path(key)
        tmp: Path | None = None
        try:
            tmp = _unique_part(dest)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except FileNotFoundError:
            _discard(tmp)
            raise StorageError(f"{self.describe(key)} does not exist") from None
        except OSError as exc:
            _discard(tmp)
            raise StorageError(f"cannot copy {self.describe(key)}: {exc.strerror}") from None
        size = dest.stat().st_size
        if progress:
            progress(size)
        return ObjectInfo(key, size)

    def upload(
        self, src: Path, key: str, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        dest = self._path(key)
        tmp: Path | None = None
        try:
            # A name of its own: several workers may write the same key at once
            # (every scan of a BIDS App writes dataset_description.json).
            tmp = _unique_part(dest)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            _discard(tmp)
            raise StorageError(f"cannot write {self.describe(key)}: {exc.strerror}") from None
        size = dest.stat().st_size
        if progress:
            progress(size)
        return ObjectInfo(key, size)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a temporary file of its own and a rename.

    Readers see the old or the new content, never half a file, and several
    writers of the same path at once do not trip over each other's temporary
    file. Raises OSError.
    """
    tmp = _unique_part(path)
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def _unique_part(dest: Path) -> Path:
    """A new, empty temporary file next to ``dest`` (same folder: the rename is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    return Path(name)


def _discard(tmp: Path | None) -> None:
    if tmp is not None:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- S3

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
            )
            client = boto3.session.Session().client("s3", config=config)
            _client_cache[key] = client
        return client


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
        return S3Location(self.bucket, prefix, options=self.options, client=self._client)

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
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key),
                                          **self.request_extra)
            return resp["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old or the new object.
        with self._errors(key):
            self.client.put_object(
                Bucket=self.bucket, Key=self.full_key(key), Body=data, **self.request_extra
            )

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key),
                                      **self.request_extra)

    def download(
        self, key: str, dest: Path, *, progress: Callable[[int], None] | None = None
    ) -> ObjectInfo:
        from .transfer import transfer_config

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
        from .transfer import transfer_config

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


def open_location(uri: str | Path, *, s3: S3Options = S3Options(), client: Any = None) -> Location:
    """The :class:`Location` for a URI: ``s3://bucket/prefix``, ``file://path`` or a path."""
    text = str(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        return S3Location(parsed.netloc, parsed.path.lstrip("/"), options=s3, client=client)
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"file URI with a host is not supported: {text}")
        return LocalLocation(Path(parsed.path))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise UsageError(
            f"unsupported location scheme {scheme!r} in {text}",
            hint="use a local path, file://PATH or s3://BUCKET/PREFIX",
        )
    return LocalLocation(Path(text))
