"""The subjects of a local dataset listed with ``os.scandir``: one pass, no thread pool.

``LocalLocation.list_prefixes`` lists each subject with ``os.walk`` on a
pool of 16 threads, and the crawl then asked ``os.path.realpath`` of every
file whether a symlink leads out of the dataset: at 100,000 subjects the
crawl took 39 s of CPU, most of it in those two (a ``realpath`` lstats every
component of the path; the pool's 100,000 futures held 100 MB). Here each
subject is walked as ``os.walk`` would (folders in sorted order, symlinked
folders not entered, a file's size through its symlink), and the real path
of a folder is its parent's plus its name unless the directory entry says
it is a symlink: ``realpath`` runs only for symlinks.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .storage import ObjectInfo

#: Why a key is refused when its real path leaves the dataset.
LEAVES = "symlink out of the dataset (--follow-symlinks to allow)"


class LocalListing:
    """Every object below some prefixes of a local folder, and the keys that leave it."""

    def __init__(self, root: str, *, check_links: bool) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.check_links = check_links
        #: Keys whose real path is outside the dataset folder (only when ``check_links``).
        self.leaving: set[str] = set()
        self._links: set[str] | None = None

    def list_prefixes(self, prefixes: list[str],
                      progress: Callable[[int, int], None] | None = None,
                      ) -> dict[str, list[ObjectInfo]]:
        total = len(prefixes)
        if progress:
            progress(0, total)
        out: dict[str, list[ObjectInfo]] = {}
        for i, prefix in enumerate(prefixes, 1):
            out[prefix] = self.list_tree(prefix)
            if progress and (i % 512 == 0 or i == total):
                progress(i, total)
        return out

    def list_tree(self, prefix: str) -> list[ObjectInfo]:
        """What ``LocalLocation.list(prefix, delimiter=None).objects`` lists.

        A prefix that is no folder lists nothing (``_walk`` finds no entries).
        """
        base = (os.path.join(self.root, prefix) if prefix else self.root).rstrip("/")
        real: str | None = None
        if self.check_links:
            name = prefix.rstrip("/")
            if name and "/" not in name and name not in self._top_links():
                real = self.real_root + os.sep + name  # realpath's answer, without its lstats
            else:
                real = os.path.realpath(base)
        objects: list[ObjectInfo] = []
        self._walk(base, prefix, real, objects)
        return objects

    def _top_links(self) -> set[str]:
        """The names at the root that are symlinks: one listing, not an lstat a subject."""
        if self._links is None:
            try:
                with os.scandir(self.root) as it:
                    self._links = {e.name for e in it if e.is_symlink()}
            except OSError:
                self._links = set()
        return self._links

    def _walk(self, path: str, rel: str, real: str | None, objects: list[ObjectInfo]) -> None:
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            return  # os.walk's default: a folder it cannot read is left out
        folders = []
        files = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (folders if is_dir else files).append(entry)
        files.sort(key=_name)
        outside = real is not None and self._outside(real)
        for entry in files:
            key = rel + entry.name
            objects.append(ObjectInfo(key, os.stat(entry.path).st_size))
            if real is None:
                continue
            if outside if not entry.is_symlink() else self._outside(os.path.realpath(entry.path)):
                self.leaving.add(key)
        folders.sort(key=_name)
        for entry in folders:
            if entry.is_symlink():
                continue  # os.walk(followlinks=False) does not enter it
            inner = None if real is None else real + os.sep + entry.name
            self._walk(entry.path, rel + entry.name + "/", inner, objects)

    def _outside(self, real: str) -> bool:
        root = self.real_root
        return not (real == root or real.startswith(root + os.sep))


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name
