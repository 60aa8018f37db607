"""Crawl a BIDS dataset (local or ``s3://``) into scans.

A scan is the unit of work: one participant, or one participant × session
where the participant has sessions. Its inputs are every file under its
folder plus the files above it that apply to it: the dataset-level files
(``dataset_description.json``, ``participants.tsv``, ``README``…), the
root- and subject-level sidecars that the BIDS inheritance principle
applies to one of its files, and ``sub-X_sessions.tsv``.

On S3 the crawl lists the root once with a delimiter, then lists every
subject's prefix in parallel on a bounded thread pool: one paginated
listing per subject, not one per key prefix.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pathspec

from .bidsnames import BidsName, is_valid_label, name_validator, parse_name
from .errors import DatasetError, StorageError
from .localcrawl import LEAVES, LocalListing
from .safety import decode_utf8
from .storage import (
    LocalLocation,
    Location,
    ObjectInfo,
    S3Options,
    hostile_reason,
    open_location,
)

#: Folders at the root whose content is never a scan's input.
EXCLUDED_TOP_DIRS = {"derivatives", "sourcedata", "code"}
#: Extensions of the files the inheritance principle applies (BIDS "sidecars").
INHERITABLE_EXTENSIONS = {".json", ".tsv", ".bval", ".bvec"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Scan:
    """One unit of work: a participant, or a participant × session."""

    participant: str
    session: str | None
    files: tuple[ObjectInfo, ...]

    @property
    def id(self) -> str:
        return f"sub-{self.participant}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def folder(self) -> str:
        return f"sub-{self.participant}/" + (f"ses-{self.session}/" if self.session else "")

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class Dataset:
    """A crawled BIDS dataset."""

    uri: str
    description: dict[str, Any]
    scans: list[Scan]
    dataset_files: list[ObjectInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    invalid_names: list[str] = field(default_factory=list)
    refused_keys: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0

    @property
    def participants(self) -> list[str]:
        return sorted({s.participant for s in self.scans})

    @property
    def sessions(self) -> list[str]:
        return sorted({s.session for s in self.scans if s.session})

    @property
    def name(self) -> str:
        return str(self.description.get("Name") or self.uri.rstrip("/").rsplit("/", 1)[-1])


def crawl(
    uri: str | Location,
    *,
    s3: S3Options = S3Options(),
    max_workers: int = 16,
    progress: Progress | None = None,
    follow_symlinks: bool = False,
) -> Dataset:
    """Crawl the BIDS dataset at ``uri`` into a :class:`Dataset`.

    ``progress(done, total)`` is called as subjects are listed.
    Raises :class:`DatasetError` when it is not a BIDS dataset or has no scans.
    In a local dataset, a symlink that leads outside the dataset folder is
    refused (reported like an unsafe key) unless ``follow_symlinks``; links that
    stay inside (git-annex's into ``.git/annex/objects``) are fine.
    """
    location = uri if isinstance(uri, Location) else open_location(uri, s3=s3)
    crawler = _Crawler(location, max_workers=max_workers, progress=progress)
    crawler.follow_symlinks = follow_symlinks
    return crawler.run()


class _Crawler:
    def __init__(self, location: Location, *, max_workers: int, progress: Progress | None):
        self.loc = location
        self.max_workers = max_workers
        self.progress = progress
        self.validator = name_validator()
        self.warnings: list[str] = []
        self.invalid: list[str] = []
        self.refused: list[tuple[str, str]] = []
        self.ignore: pathspec.PathSpec | None = None
        self.n_files = 0
        self.check_names = True
        self.follow_symlinks = False
        self._real_root: str | None = None
        if isinstance(location, LocalLocation):
            self._real_root = os.path.realpath(location.root)
        #: A local dataset's subjects, listed in one pass (localcrawl.py).
        self._local: LocalListing | None = None

    # -- the steps

    def run(self) -> Dataset:
        if isinstance(self.loc, LocalLocation) and not self.loc.root.is_dir():
            raise DatasetError(
                f"dataset folder {self.loc.uri} does not exist",
                hint="check the path, or use s3://BUCKET/PREFIX for a dataset on S3",
            )
        root = self.loc.list("", delimiter="/")
        if not root.objects and not root.prefixes:
            raise DatasetError(
                f"{self.loc.uri} is empty or does not exist",
                hint="name the folder that holds dataset_description.json",
            )
        description = self._description(root.objects)
        # The schema's filename rules that bidsschematools compiles are those of raw
        # data; a derivative dataset's names are not checked rather than misreported.
        self.check_names = description.get("DatasetType", "raw") != "derivative"
        if any(o.key == ".bidsignore" for o in root.objects):
            self.ignore = bidsignore_spec(decode_utf8(
                self.loc.read_bytes(".bidsignore"), where=self.loc.describe(".bidsignore")))

        dataset_files: list[ObjectInfo] = []
        root_sidecars: list[tuple[ObjectInfo, BidsName]] = []
        for obj in root.objects:
            if not self._admit(obj.key):
                continue
            name = parse_name(obj.key)
            if name is not None and _inheritable(name):
                root_sidecars.append((obj, name))
            else:
                dataset_files.append(obj)
            self._check_name(obj.key)

        subjects: list[str] = []
        for prefix in root.prefixes:
            folder = prefix.rstrip("/")
            # .bidsignore says what the validator skips, not what an app does not need:
            # a subject folder it names is still a subject.
            if folder.startswith(".") or folder in EXCLUDED_TOP_DIRS:
                continue
            if hostile_reason(folder):
                self.refused.append((prefix, hostile_reason(folder) or ""))
                continue
            if folder.startswith("sub-"):
                label = folder[4:]
                if is_valid_label(label):
                    subjects.append(label)
                else:
                    self.warnings.append(f"skipped {prefix}: {label!r} is not a valid BIDS label")

        scans: list[Scan] = []
        listings = self._list_subjects(subjects)
        for label in subjects:
            scans.extend(self._subject_scans(label, listings[label], dataset_files, root_sidecars))
        scans.sort(key=lambda s: (s.participant, s.session or ""))

        if self.invalid:
            examples = ", ".join(self.invalid[:3])
            self.warnings.append(
                f"{len(self.invalid)} file name(s) are not valid BIDS (e.g. {examples})"
            )
        for key, reason in self.refused[:5]:
            self.warnings.append(f"refused unsafe key {key!r}: {reason}")
        if len(self.refused) > 5:
            self.warnings.append(f"... and {len(self.refused) - 5} more unsafe keys refused")

        dataset = Dataset(
            uri=self.loc.uri,
            description=description,
            scans=scans,
            dataset_files=dataset_files,
            warnings=self.warnings,
            invalid_names=self.invalid,
            refused_keys=self.refused,
            n_files=self.n_files,
        )
        if not scans:
            raise DatasetError(
                f"no scans in {self.loc.uri}: no sub-*/ folder holds data files",
                hint="atlases and derivative-only datasets have no participants to process",
            )
        return dataset

    def _description(self, root_objects: list[ObjectInfo]) -> dict[str, Any]:
        where = self.loc.describe("dataset_description.json")
        if not any(o.key == "dataset_description.json" for o in root_objects):
            raise DatasetError(
                f"{where} is missing: {self.loc.uri} is not a BIDS dataset root",
                hint="name the folder that holds dataset_description.json",
            )
        try:
            data = json.loads(self.loc.read_bytes("dataset_description.json"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(
                f"{where} is not valid JSON: {exc}", hint="fix the file (see the BIDS spec)"
            ) from None
        if not isinstance(data, dict):
            raise DatasetError(f"{where} must hold a JSON object")
        missing = [k for k in ("Name", "BIDSVersion") if not data.get(k)]
        if missing:
            self.warnings.append(f"dataset_description.json has no {' or '.join(missing)}")
        return data

    def _list_subjects(self, subjects: list[str]) -> dict[str, list[ObjectInfo]]:
        """Every object of every subject, listed in parallel on a bounded pool.

        The location lists the ``sub-X/`` prefixes its fastest way: on S3 a few
        key-range listings instead of one per subject (bench/RESULTS.md).
        """
        prefixes = {f"sub-{s}/": s for s in subjects}
        if type(self.loc) is LocalLocation:
            self._local = LocalListing(str(self.loc.root), check_links=not self.follow_symlinks)
            listed = self._local.list_prefixes(list(prefixes), progress=self.progress)
            return {prefixes[p]: objects for p, objects in listed.items()}
        listed = self.loc.list_prefixes(list(prefixes), max_workers=self.max_workers,
                                        progress=self.progress)
        return {prefixes[p]: objects for p, objects in listed.items()}

    def _subject_scans(
        self,
        label: str,
        objects: list[ObjectInfo],
        dataset_files: list[ObjectInfo],
        root_sidecars: list[tuple[ObjectInfo, BidsName]],
    ) -> list[Scan]:
        sub = f"sub-{label}/"
        meta: list[ObjectInfo] = []  # sessions.tsv, scans.tsv...: every scan of X gets them
        sub_sidecars: list[tuple[ObjectInfo, BidsName]] = []
        by_session: dict[str | None, list[ObjectInfo]] = {}
        for obj in objects:
            if not self._admit(obj.key):
                continue
            rel = obj.key[len(sub):]
            parts = rel.split("/")
            if len(parts) == 1:
                name = parse_name(parts[0])
                self._check_name(obj.key, subject=label)
                if name is not None and _inheritable(name) and "session" not in name.entities:
                    sub_sidecars.append((obj, name))
                else:
                    # Subject-level metadata (sessions.tsv, scans.tsv...): every scan of X.
                    meta.append(obj)
                continue
            session = None
            if parts[0].startswith("ses-"):
                session = parts[0][4:]
                if not is_valid_label(session):
                    self.warnings.append(
                        f"skipped {sub}{parts[0]}/: {session!r} is not a valid BIDS label"
                    )
                    continue
            self._check_name(obj.key, subject=label, session=session)
            by_session.setdefault(session, []).append(obj)

        sessions = sorted(k for k in by_session if k is not None)
        if sessions and None in by_session:
            self.warnings.append(
                f"{sub} mixes session folders and data outside them; "
                f"the data outside is planned as scan sub-{label}"
            )
        if not by_session:
            self.warnings.append(f"{sub} has no data files: no scan planned for it")
            return []
        scans = []
        for session in ([None] if None in by_session else []) + sessions:
            own = by_session[session]
            if not sessions:
                # Sessionless: the scan is the whole subject folder, sidecars included.
                own = own + [o for o, _n in sub_sidecars]
            names = [n for n in (parse_name(o.key.rsplit("/", 1)[-1]) for o in own) if n]
            candidates = root_sidecars + (sub_sidecars if sessions else [])
            inherited = [o for o, n in candidates if _applies(n, names)]
            files = {o.key: o for o in [*dataset_files, *meta, *inherited, *own]}
            scans.append(Scan(label, session, tuple(files[k] for k in sorted(files))))
        return scans

    # -- filters

    def _admit(self, key: str) -> bool:
        """Count, refuse hostile keys, drop folder markers and dotfiles.

        ``.bidsignore``'d files are admitted: the validator skips them, but they are
        inputs all the same (fMRIPrep derivatives' transforms and confounds, the
        FLASH images of ds000117). Hidden files are no BIDS data (``.DS_Store``,
        ``._*`` resource forks, ``.git``).
        """
        if key.endswith("/"):
            return False  # a zero-byte "folder" object some S3 tools make
        self.n_files += 1
        reason = hostile_reason(key) or self._leaves_dataset(key)
        if reason:
            self.refused.append((key, reason))
            return False
        if key == ".bidsignore":
            return True
        return not key.startswith(".") and "/." not in key  # no segment is hidden

    def _leaves_dataset(self, key: str) -> str | None:
        """Why a local key is refused for where its symlinks lead, or None."""
        if self._real_root is None or self.follow_symlinks:
            return None
        if self._local is not None and "/" in key:  # a subject's: its listing knows
            return LEAVES if key in self._local.leaving else None
        real = os.path.realpath(os.path.join(self._real_root, key))
        if real == self._real_root or real.startswith(self._real_root + os.sep):
            return None
        return LEAVES

    def _ignored(self, path: str) -> bool:
        return self.ignore is not None and self.ignore.match_file(path)

    def _check_name(self, key: str, *, subject: str | None = None,
                    session: str | None = None) -> None:
        if key == ".bidsignore" or not self.check_names or self._ignored(key):
            return  # the validator does not check what .bidsignore names: neither do we
        if not self.validator.is_valid(key, subject=subject, session=session):
            self.invalid.append(key)


def _inheritable(name: BidsName) -> bool:
    return name.extension in INHERITABLE_EXTENSIONS and name.suffix not in (
        "participants", "sessions", "scans", "samples",
    )


def _applies(sidecar: BidsName, names: list[BidsName]) -> bool:
    return any(sidecar.applies_to(n) for n in names)


def bidsignore_spec(text: str) -> pathspec.PathSpec:
    """``.bidsignore`` as the validator reads it: gitignore rules (``!``, anchoring, ``**``)."""
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def scan_id(participant: str, session: str | None) -> str:
    """``sub-<participant>`` or ``sub-<participant>_ses-<session>``."""
    return f"sub-{participant}" + (f"_ses-{session}" if session else "")


_SCAN_ID = re.compile(r"sub-(?P<p>[^_/]+)(?:_ses-(?P<s>[^_/]+))?")


def parse_scan_id(text: str) -> tuple[str, str | None]:
    """Inverse of :func:`scan_id`; raises StorageError for other shapes."""
    m = _SCAN_ID.fullmatch(text)
    if not m or not is_valid_label(m["p"]) or (m["s"] and not is_valid_label(m["s"])):
        raise StorageError(f"{text!r} is not a scan id (sub-X or sub-X_ses-Y)")
    return m["p"], m["s"]
