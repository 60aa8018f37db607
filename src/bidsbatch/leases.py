"""Per-scan claims in the output: no scan runs twice at once, whichever run starts it.

Before a worker stages in, it claims its scan with a lease object,
``OUTPUT/.bidsbatch/claims/<scan>.json`` (owner, host, pid, run, job, expiry).
Creating it is atomic: on a local output a hard link of a complete temporary
file (fails when the name exists), on S3 a conditional PUT (``If-None-Match: *``).
A second claimant finds the lease held, and its worker skips the scan and says
so. The holder renews the lease while it works and deletes it when it ends.

A lease can be taken over when it is no longer held: its expiry passed (a
worker killed on another machine stops renewing it), its worker is gone (same
host, pid dead or reused), or it belongs to an earlier attempt of the same
executor job (Batch retries keep the job id). A take-over is atomic too: a
rename of the stale file, or a PUT conditional on the stale object's ETag.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import BidsbatchError
from .storage import LocalLocation, Location, S3Location

#: How long a lease lasts without renewal, and how often its holder renews it.
LEASE_SECONDS = 600.0
RENEW_SECONDS = 60.0


def claim_key(scan_id: str) -> str:
    return f".bidsbatch/claims/{scan_id}.json"


@dataclass(frozen=True)
class Lease:
    """Who holds a scan, until when."""

    scan_id: str
    owner: str  # unique per claim
    run_id: str
    host: str
    pid: int
    pid_start: str  # the process's start time: a reused pid is another process
    job_id: str | None
    expires_at: str

    def to_bytes(self) -> bytes:
        # Field by field: asdict deep-copies (a lease is written at every scan's start).
        return json.dumps({name: getattr(self, name) for name in self.__dataclass_fields__},
                          sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Lease | None:
        try:
            raw = json.loads(data)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None  # unreadable: treated as not held

    def describe(self) -> str:
        job = f", job {self.job_id}" if self.job_id else ""
        return f"run {self.run_id} (host {self.host}, pid {self.pid}{job}) until {self.expires_at}"


def process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot, or "" when unknown."""
    own = pid == os.getpid()
    if own and pid in _OWN_START:
        return _OWN_START[pid]  # this process's: read once (a worker asks twice a scan)
    try:
        with open(f"/proc/{pid}/stat") as fh:
            start = fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
    if own:
        _OWN_START[pid] = start
    return start


#: This process's start time by its pid, once read (a fork has another pid: read again).
_OWN_START: dict[int, str] = {}


def _alive_here(lease: Lease) -> bool:
    """Whether the lease's worker runs on this host (only asked when the host is ours)."""
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = process_start(lease.pid)
    return not start or not lease.pid_start or start == lease.pid_start


def stale(lease: Lease | None, *, now: datetime, job_id: str | None) -> bool:
    """Whether ``lease`` may be taken over (see the module doc)."""
    if lease is None:
        return True
    try:
        if datetime.fromisoformat(lease.expires_at) <= now:
            return True
    except ValueError:
        return True
    if job_id and lease.job_id == job_id and not job_id.startswith("local:"):
        return True  # an earlier attempt of this same job: Batch retried it
    return lease.host == socket.gethostname() and not _alive_here(lease)


class ClaimHeld(BidsbatchError):
    """The scan is being processed by someone else: the worker skips it."""

    def __init__(self, holder: Lease) -> None:
        super().__init__(f"scan {holder.scan_id} is being processed by {holder.describe()}")
        self.holder = holder


class ScanClaim:
    """A claim on one scan in one output; a context manager that renews and releases it."""

    def __init__(self, output: Location, *, scan_id: str, run_id: str, job_id: str | None,
                 now: Any = None) -> None:
        self.output = output
        self.key = claim_key(scan_id)
        self.scan_id = scan_id
        self.run_id = run_id
        self.job_id = job_id
        self._now = now or (lambda: datetime.now(UTC))
        self._store = _store_for(output, self.key)
        self._lease: Lease | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _new_lease(self) -> Lease:
        expires = self._now() + timedelta(seconds=LEASE_SECONDS)
        pid = os.getpid()
        return Lease(scan_id=self.scan_id, owner=uuid.uuid4().hex, run_id=self.run_id,
                     host=socket.gethostname(), pid=pid, pid_start=process_start(pid),
                     job_id=self.job_id, expires_at=expires.isoformat(timespec="seconds"))

    def acquire(self) -> None:
        """Take the lease, or raise :class:`ClaimHeld` naming its holder."""
        for _ in range(3):
            lease = self._new_lease()
            if self._store.create(lease.to_bytes()):
                self._lease = lease
                break
            current, token = self._store.read()
            if not stale(current, now=self._now(), job_id=self.job_id):
                assert current is not None
                raise ClaimHeld(current)
            if self._store.take_over(token, lease.to_bytes()):
                self._lease = lease
                break
        else:  # three races lost in a row: someone else is busy with it
            current, _ = self._store.read()
            if current is not None:
                raise ClaimHeld(current)
            raise BidsbatchError(f"cannot claim {self.output.describe(self.key)}",
                                 hint="another worker keeps claiming this scan")
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                         name="lease-renewer")
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            with contextlib.suppress(Exception):  # a missed renewal is retried next time
                current, token = self._store.read()
                if current is None or self._lease is None or current.owner != self._lease.owner:
                    return  # taken over (we were presumed dead): nothing more to renew
                fresh = self._new_lease()
                from dataclasses import replace

                renewed = replace(self._lease, expires_at=fresh.expires_at)
                if self._store.take_over(token, renewed.to_bytes()):
                    self._lease = renewed

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self._lease is None:
            return
        with contextlib.suppress(Exception):  # an unreleased lease expires on its own
            current, token = self._store.read()
            if current is not None and current.owner == self._lease.owner:
                self._store.delete(token)
        self._lease = None

    def __enter__(self) -> ScanClaim:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------- stores


class _Store:
    def create(self, data: bytes) -> bool:
        raise NotImplementedError

    def read(self) -> tuple[Lease | None, Any]:
        raise NotImplementedError

    def take_over(self, token: Any, data: bytes) -> bool:
        raise NotImplementedError

    def delete(self, token: Any) -> None:
        raise NotImplementedError


class _LocalStore(_Store):
    """A lease file; the token is the content read (a take-over checks it did not change)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self, data: bytes) -> bool:
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
        except FileNotFoundError:  # the claims folder is made when missing, not every time
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
        try:
            os.link(tmp, self.path)  # atomic, complete, and fails when the name exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def read(self) -> tuple[Lease | None, Any]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        return Lease.from_bytes(data), data

    def take_over(self, token: Any, data: bytes) -> bool:
        tomb = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(self.path, tomb)  # only one taker can move a given file away
        except FileNotFoundError:
            return self.create(data)
        try:
            if tomb.read_bytes() != (token or b""):
                # Someone renewed or took it between our read and the rename: put it back.
                with contextlib.suppress(FileExistsError):
                    os.link(tomb, self.path)
                return False
            return self.create(data)
        finally:
            tomb.unlink(missing_ok=True)

    def delete(self, token: Any) -> None:
        _current, data = self.read()
        if data == token:
            self.path.unlink(missing_ok=True)


class _S3Store(_Store):
    """A lease object; the token is its ETag, and writes are conditional on it."""

    def __init__(self, loc: S3Location, key: str) -> None:
        self.loc = loc
        self.key = key
        self.full = loc.full_key(key)

    def _put(self, data: bytes, **cond: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self.loc._errors(self.key):
                try:
                    self.loc.client.put_object(Bucket=self.loc.bucket, Key=self.full, Body=data,
                                               **cond)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code", "")
                    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                    if code in ("PreconditionFailed", "ConditionalRequestConflict") \
                            or status in (409, 412):
                        return False
                    raise
        except BidsbatchError:
            raise
        return True

    def create(self, data: bytes) -> bool:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> tuple[Lease | None, Any]:
        from botocore.exceptions import ClientError

        with self.loc._errors(self.key):
            try:
                resp = self.loc.client.get_object(Bucket=self.loc.bucket, Key=self.full)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None, None
                raise
            return Lease.from_bytes(resp["Body"].read()), resp.get("ETag")

    def take_over(self, token: Any, data: bytes) -> bool:
        if token is None:
            return self.create(data)
        return self._put(data, IfMatch=token)

    def delete(self, token: Any) -> None:
        # A conditional delete is not offered everywhere: read-compare-delete (the lease
        # is ours; the worst race deletes a lease that was just taken over, which the
        # taker finds when it renews).
        with self.loc._errors(self.key):
            self.loc.client.delete_object(Bucket=self.loc.bucket, Key=self.full)


def _store_for(output: Location, key: str) -> _Store:
    if isinstance(output, S3Location):
        return _S3Store(output, key)
    if isinstance(output, LocalLocation):
        return _LocalStore(output.root / key)
    raise BidsbatchError(f"cannot claim scans in {output.uri}")
