"""A folder on this machine as a :class:`Location`, and atomic writes of local files."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from ..errors import BidsbatchError, StorageError
from .base import DownloadJob, Listing, Location, ObjectInfo, Progress, safe_key


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

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
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

    def download_round(self, jobs: list[DownloadJob], *, verify: Callable[[DownloadJob], None],
                       max_workers: int, part_size: int, progress: Progress | None,
                       ) -> list[tuple[DownloadJob, BidsbatchError]]:
        """Copies straight into each job's ``part`` file, the download's own temporary
        name (:meth:`download` would copy through a temporary file of its own first)."""
        from .transfer import pool_round

        def one(job: DownloadJob) -> None:
            try:
                shutil.copyfile(self._path(job.key), job.part)
            except FileNotFoundError:
                raise StorageError(f"{self.describe(job.key)} does not exist") from None
            except OSError as exc:
                raise StorageError(
                    f"cannot copy {self.describe(job.key)}: {exc.strerror}") from None
            verify(job)
            if progress:
                progress(job.size)

        return pool_round(jobs, one, max_workers=max_workers)

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
    """A new, empty temporary file next to ``dest`` (same folder: the rename is atomic).

    Its mode is the one ``dest`` will keep: that of the file it replaces, else
    0666 minus the umask, as ``open()`` would give. (``mkstemp`` makes 0600
    files: collaborators on shared storage could not read the results.)
    """
    while True:
        name = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
        try:
            # 0o666 here and the kernel applies the umask: no process-wide umask dance.
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except FileNotFoundError:  # the folder is made when missing, not checked every write
            dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, stat.S_IMODE(os.stat(dest).st_mode))
    finally:
        os.close(fd)
    return name


def _discard(tmp: Path | None) -> None:
    if tmp is not None:
        tmp.unlink(missing_ok=True)
