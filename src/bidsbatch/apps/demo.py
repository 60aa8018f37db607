"""bidsbatch-demo-app: a small, real BIDS App (numpy and nibabel only).

Usage (the BIDS Apps convention)::

    bidsbatch-demo-app BIDS_DIR OUTPUT_DIR {participant,group}
        [--participant_label L [L ...]] [--session_label S [S ...]]
        [--parcellation-grid N] [-v]

Participant level, for each selected scan (a participant, or a participant
and session), from the image data:

- brain volume from each T1w: voxels above half the robust maximum (99th
  percentile) of the image, times the voxel volume. Written as a mask,
  ``anat/<source>_desc-brain_mask.nii.gz``, whose JSON sidecar carries the
  measure (``Volume`` in ``VolumeUnits`` mm^3, ``VoxelCount``, ``Threshold``).
- a functional connectome from each BOLD run: the volume is cut into an
  N x N x N grid of blocks (``--parcellation-grid``, default 3); blocks with
  no brain voxel (same threshold rule on the mean image) are skipped; the
  mean time series of each block are correlated (Pearson). Written as a
  weighted edge list, upper triangle, like m2g's connectomes:
  ``func/<source>_desc-grid<N>_connectome.csv`` with columns
  ``source,target,weight``; nodes are grid block numbers (1-based, x slowest),
  so the same number is the same block in every subject.

Group level: reads every participant-level result under OUTPUT_DIR and
writes ``group_brainvolume.tsv`` (+ ``.json`` data dictionary): one row per
scan, columns ``participant_id``, ``session_id``, ``brain_volume_mm3``,
``n_regions``, ``mean_connectivity``, sorted.

Both levels keep OUTPUT_DIR a valid BIDS derivative dataset: they write
``dataset_description.json`` (``DatasetType: derivative``) and a
``.bidsignore`` for the connectome and group tables, which the BIDS
specification does not cover yet. These two files have fixed content and are
replaced atomically, so any number of scans may run in parallel into the
same OUTPUT_DIR.

Progress goes to stdout, one line per step; warnings and errors to stderr.
A scan without T1w or BOLD loses that measure with a warning.

Environment (documented features, to demonstrate failures and retries):

``BIDSBATCH_DEMO_FAIL``
    Comma-separated participant labels (without ``sub-``). At participant
    level, reaching one of them prints an error and exits with code 3.
``BIDSBATCH_DEMO_SLEEP``
    Seconds (a float) to sleep at the start of each scan, so that runs last
    long enough to watch, cancel or time out.

Exit codes: 0 success; 1 a data file could not be read or written, or the
group level found no results; 2 usage error (BIDS_DIR missing or not a BIDS
dataset, unknown label, bad option or environment value); 3 failure injected
by ``BIDSBATCH_DEMO_FAIL``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

APP_NAME = "bidsbatch-demo-app"
BIDS_VERSION = "1.10.0"
GROUP_TABLE = "group_brainvolume.tsv"
DEFAULT_GRID = 3
# Voxels above this fraction of the robust maximum count as brain. On T1w the
# bright tissue is white and grey matter; skull, CSF and air fall below.
MASK_FRACTION = 0.5
ROBUST_MAX_PERCENTILE = 99.0

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INJECTED = 0, 1, 2, 3

_BIDSIGNORE = (
    f"# Written by {APP_NAME}: outputs the BIDS specification does not cover yet.\n"
    "*_connectome.csv\n"
    "/group_brainvolume.*\n"
)
_GROUP_COLUMNS = {
    "participant_id": {"Description": "participant, as in the raw dataset"},
    "session_id": {"Description": "session, or n/a in a dataset without sessions"},
    "brain_volume_mm3": {
        "Description": "brain volume from the T1w threshold mask (mean over T1w runs)",
        "Units": "mm^3",
    },
    "n_regions": {"Description": "grid blocks with brain signal (nodes of the connectome)"},
    "mean_connectivity": {
        "Description": "mean Pearson correlation over all edges of the BOLD connectomes"
    },
}


class AppError(Exception):
    """A failure reported as one line on stderr, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Scan:
    """One unit of work: a participant, or a participant and session."""

    subject: str
    session: str | None
    path: Path  # folder of the scan inside BIDS_DIR

    @property
    def id(self) -> str:
        """``sub-X`` or ``sub-X_ses-Y``: the scan id used by bidsbatch."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def relative(self) -> Path:
        """The scan's folder relative to a dataset root (raw or derivative)."""
        sub = Path(f"sub-{self.subject}")
        return sub / f"ses-{self.session}" if self.session else sub


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The BIDS Apps command line of the demo app."""
    parser = argparse.ArgumentParser(
        prog=APP_NAME,
        description="Brain volume (T1w) and grid-parcellation functional connectome (BOLD) "
        "for each scan of a BIDS dataset; a group table at group level.",
    )
    parser.add_argument("bids_dir", type=Path, help="root of the BIDS dataset (input)")
    parser.add_argument("output_dir", type=Path, help="root of the derivative dataset (output)")
    parser.add_argument("analysis_level", choices=["participant", "group"])
    parser.add_argument(
        "--participant_label",
        "--participant-label",
        nargs="+",
        metavar="LABEL",
        help="participants to process (without 'sub-'); default: all",
    )
    parser.add_argument(
        "--session_label",
        "--session-label",
        nargs="+",
        metavar="LABEL",
        help="sessions to process (without 'ses-'); default: all",
    )
    parser.add_argument(
        "--parcellation-grid",
        "--parcellation_grid",
        type=_grid_size,
        default=DEFAULT_GRID,
        metavar="N",
        help=f"cut the BOLD volume into N x N x N blocks (default {DEFAULT_GRID})",
    )
    parser.add_argument(
        "--allocate-mib",
        "--allocate_mib",
        type=_mib,
        default=0,
        metavar="N",
        help="hold N MiB of memory (written, so resident) while processing: a known "
        "peak, for measuring what a scan used (default 0)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    parser.add_argument("--version", action="version", version=f"%(prog)s {app_version()}")
    return parser


def _grid_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2 (one block has no edges)")
    return value


def _mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _resident_mib() -> float | None:
    """This process's resident set now (Linux /proc), for the allocation message."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; return its exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        if args.analysis_level == "participant":
            return run_participant(
                args.bids_dir,
                args.output_dir,
                participant_labels=args.participant_label,
                session_labels=args.session_label,
                grid=args.parcellation_grid,
                verbose=args.verbose,
                allocate_mib=args.allocate_mib,
            )
        return run_group(
            args.bids_dir,
            args.output_dir,
            participant_labels=args.participant_label,
            session_labels=args.session_label,
            grid=args.parcellation_grid,
        )
    except AppError as err:
        _error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


# --------------------------------------------------------------------------- levels


def run_participant(
    bids_dir: Path,
    output_dir: Path,
    *,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
    grid: int = DEFAULT_GRID,
    verbose: bool = False,
    allocate_mib: int = 0,
) -> int:
    """Participant level: process each selected scan; return the exit code.

    ``allocate_mib`` MiB are held (filled, so resident) while the scans are processed.

    Raises:
        AppError: usage errors (exit 2), unreadable data (exit 1).
    """
    bids_dir, output_dir = _check_dirs(bids_dir, output_dir)
    fail_labels = _env_labels("BIDSBATCH_DEMO_FAIL")
    sleep_seconds = _env_seconds("BIDSBATCH_DEMO_SLEEP")
    scans = find_scans(bids_dir, participant_labels, session_labels)

    started = time.monotonic()
    _say(f"{APP_NAME} {app_version()}: participant level, {len(scans)} scan(s), grid {grid}")
    write_dataset_files(output_dir)
    held = b""
    if allocate_mib:
        before = _resident_mib()
        # Filled, not just reserved: untouched pages would not be resident.
        held = b"\x01" * (allocate_mib * 1024 * 1024)
        _say(f"holding {allocate_mib} MiB (resident before: "
             f"{'unknown' if before is None else f'{before:.1f} MiB'})")
    for scan in scans:
        scan_started = time.monotonic()
        _say(f"{scan.id}: start")
        if sleep_seconds:
            _say(f"{scan.id}: sleeping {sleep_seconds:g} s (BIDSBATCH_DEMO_SLEEP)")
            time.sleep(sleep_seconds)
        if scan.subject in fail_labels:
            _error(f"{scan.id}: injected failure (sub-{scan.subject} is in BIDSBATCH_DEMO_FAIL)")
            return EXIT_INJECTED
        _process_scan(scan, bids_dir, output_dir, grid=grid, verbose=verbose)
        _say(f"{scan.id}: done in {time.monotonic() - scan_started:.2f} s")
    _say(f"done: {len(scans)} scan(s) in {time.monotonic() - started:.2f} s")
    del held
    return EXIT_OK


def run_group(
    bids_dir: Path,
    output_dir: Path,
    *,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
    grid: int = DEFAULT_GRID,
) -> int:
    """Group level: gather the participant-level results into one table.

    Raises:
        AppError: usage errors (exit 2); no results to gather (exit 1).
    """
    bids_dir, output_dir = _check_dirs(bids_dir, output_dir)
    # The scans are those with results in the output: the group step may see only the
    # dataset-level files of a remote dataset (bidsbatch stages in just those).
    try:
        scans = find_scans(output_dir, participant_labels, session_labels)
    except AppError:
        scans = find_scans(bids_dir, participant_labels, session_labels)
    _say(f"{APP_NAME} {app_version()}: group level, {len(scans)} scan(s), grid {grid}")

    rows = []
    for scan in scans:
        row = _group_row(scan, output_dir, grid=grid)
        if row is None:
            _warn(f"{scan.id}: no participant-level results in {output_dir}; not in the table")
            continue
        rows.append(row)
    if not rows:
        raise AppError(
            f"no participant-level results under {output_dir}; run the participant level first"
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    write_dataset_files(output_dir)
    table = "\n".join("\t".join(row) for row in [list(_GROUP_COLUMNS), *rows]) + "\n"
    _write_atomic(output_dir / GROUP_TABLE, table.encode())
    _write_atomic(
        output_dir / GROUP_TABLE.replace(".tsv", ".json"),
        (json.dumps(_GROUP_COLUMNS, indent=2) + "\n").encode(),
    )
    _say(f"wrote {output_dir / GROUP_TABLE} ({len(rows)} row(s))")
    return EXIT_OK


# --------------------------------------------------------------------------- dataset


def _check_dirs(bids_dir: Path, output_dir: Path) -> tuple[Path, Path]:
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    if not bids_dir.is_dir():
        raise AppError(f"BIDS directory {bids_dir} does not exist", EXIT_USAGE)
    description = bids_dir / "dataset_description.json"
    if not description.is_file():
        raise AppError(
            f"{bids_dir} is not a BIDS dataset: it has no dataset_description.json", EXIT_USAGE
        )
    try:
        json.loads(description.read_text())
    except (OSError, ValueError) as err:
        raise AppError(f"cannot read {description}: {err}", EXIT_USAGE) from None
    if output_dir.resolve() == bids_dir.resolve():
        raise AppError("output_dir must differ from bids_dir (the input is read-only)", EXIT_USAGE)
    return bids_dir, output_dir


def find_scans(
    bids_dir: Path,
    participant_labels: Sequence[str] | None = None,
    session_labels: Sequence[str] | None = None,
) -> list[Scan]:
    """The scans of ``bids_dir`` selected by labels (with or without prefixes).

    Raises:
        AppError: (exit 2) no participants, or a label that the dataset lacks.
    """
    subjects = sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())
    if not subjects:
        raise AppError(f"{bids_dir} has no sub-* folders", EXIT_USAGE)
    if participant_labels:
        wanted = _strip_prefix(participant_labels, "sub-")
        _require_known("participant", wanted, subjects, bids_dir)
        subjects = [s for s in subjects if s in wanted]

    wanted_sessions = _strip_prefix(session_labels, "ses-") if session_labels else None
    scans: list[Scan] = []
    seen_sessions: set[str] = set()
    for subject in subjects:
        subject_dir = bids_dir / f"sub-{subject}"
        sessions = sorted(p.name[4:] for p in subject_dir.glob("ses-*") if p.is_dir())
        seen_sessions.update(sessions)
        if not sessions:
            if wanted_sessions:
                _warn(f"sub-{subject}: has no sessions; skipped (--session_label given)")
                continue
            scans.append(Scan(subject, None, subject_dir))
            continue
        for session in sessions:
            if wanted_sessions is None or session in wanted_sessions:
                scans.append(Scan(subject, session, subject_dir / f"ses-{session}"))
    if wanted_sessions:
        _require_known("session", wanted_sessions, sorted(seen_sessions), bids_dir)
    return scans


def _strip_prefix(labels: Iterable[str], prefix: str) -> list[str]:
    return [label.removeprefix(prefix) for label in labels]


def _require_known(kind: str, wanted: Iterable[str], known: Sequence[str], where: Path) -> None:
    missing = sorted(set(wanted) - set(known))
    if missing:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise AppError(
            f"{kind} label(s) {', '.join(missing)} not found in {where} (available: {shown})",
            EXIT_USAGE,
        )


def write_dataset_files(output_dir: Path) -> None:
    """Write ``dataset_description.json`` and ``.bidsignore`` of the derivative dataset.

    Safe when many processes do it at once: the content is fixed (no paths,
    no times), and each file is written to a unique temporary name and
    renamed over the target, so readers see the old or the new file, whole.
    """
    description = {
        "Name": f"{APP_NAME} outputs",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": APP_NAME,
                "Version": app_version(),
                "Description": "brain volume (T1w) and grid-parcellation connectome (BOLD)",
            }
        ],
    }
    _write_atomic(
        output_dir / "dataset_description.json",
        (json.dumps(description, indent=2) + "\n").encode(),
    )
    _write_atomic(output_dir / ".bidsignore", _BIDSIGNORE.encode())


def app_version() -> str:
    """The version of bidsbatch that ships this app (``0.0.0`` when it runs alone).

    In a container the app is a lone file (``python3 /opt/demo.py``): no package
    around it, so the import fails, and no bidsbatch is installed there either.
    """
    try:
        from .._version import __version__  # not importlib.metadata: 85 ms a call
    except ImportError:
        import importlib.metadata

        try:
            return importlib.metadata.version("bidsbatch")
        except importlib.metadata.PackageNotFoundError:
            return "0.0.0"
    return __version__


# --------------------------------------------------------------------------- one scan


def _process_scan(
    scan: Scan, bids_dir: Path, output_dir: Path, *, grid: int, verbose: bool
) -> None:
    out = output_dir / scan.relative
    t1ws = _images(scan.path / "anat", "T1w")
    if not t1ws:
        _warn(f"{scan.id}: no T1w image; brain volume skipped")
    for t1w in t1ws:
        image = _load(t1w)
        result = brain_volume(image)
        stem = _stem(t1w, "T1w")
        mask = nib.Nifti1Image(result.mask.astype(np.uint8), image.affine, image.header)
        mask.set_data_dtype(np.uint8)
        mask.header.set_slope_inter(1, 0)
        sidecar = {
            "Type": "Brain",
            "Description": f"T1w voxels above {MASK_FRACTION:g} x the "
            f"{ROBUST_MAX_PERCENTILE:g}th percentile of {t1w.relative_to(bids_dir)}",
            "Volume": round(result.volume_mm3, 3),
            "VolumeUnits": "mm^3",
            "VoxelCount": result.voxel_count,
            "Threshold": round(result.threshold, 6),
        }
        _write_nifti(out / "anat" / f"{stem}_desc-brain_mask.nii.gz", mask)
        _write_atomic(
            out / "anat" / f"{stem}_desc-brain_mask.json",
            (json.dumps(sidecar, indent=2) + "\n").encode(),
        )
        _say(f"{scan.id}: {t1w.name}: brain volume {result.volume_mm3:.1f} mm^3")
        if verbose:
            _say(
                f"{scan.id}:   {result.voxel_count} voxels above {result.threshold:.1f}, "
                f"voxel {result.voxel_mm3:g} mm^3"
            )

    bolds = _images(scan.path / "func", "bold")
    if not bolds:
        _warn(f"{scan.id}: no BOLD image; connectome skipped")
    for bold in bolds:
        image = _load(bold)
        if image.ndim != 4 or image.shape[3] < 3:
            _warn(f"{scan.id}: {bold.name} has fewer than 3 volumes; connectome skipped")
            continue
        connectome = grid_connectome(image.get_fdata(dtype=np.float32), grid)
        stem = _stem(bold, "bold")
        path = out / "func" / f"{stem}_desc-grid{grid}_connectome.csv"
        _write_atomic(path, connectome.edge_list().encode())
        _say(
            f"{scan.id}: {bold.name}: {len(connectome.regions)} regions, "
            f"mean connectivity {connectome.mean_weight():.3f}"
        )
        if verbose and connectome.skipped:
            _say(f"{scan.id}:   skipped blocks without brain signal: {connectome.skipped}")


def _images(folder: Path, suffix: str) -> list[Path]:
    return sorted(
        p
        for pattern in (f"*_{suffix}.nii.gz", f"*_{suffix}.nii")
        for p in folder.glob(pattern)
        if p.name.startswith("sub-")
    )


def _stem(path: Path, suffix: str) -> str:
    """``sub-01_ses-1_task-rest_bold.nii.gz`` -> ``sub-01_ses-1_task-rest``."""
    name = path.name.removesuffix(".gz").removesuffix(".nii")
    return name.removesuffix(f"_{suffix}")


def _load(path: Path) -> nib.Nifti1Image:
    try:
        image = nib.load(path)
        image.get_fdata(dtype=np.float32)  # read now: a truncated file fails here
    except Exception as err:  # nibabel raises many types for bad files
        raise AppError(f"cannot read {path}: {err}") from None
    return image


# --------------------------------------------------------------------------- measures


@dataclass(frozen=True)
class BrainVolume:
    """Result of the threshold brain mask of one T1w."""

    mask: np.ndarray
    threshold: float
    voxel_count: int
    voxel_mm3: float

    @property
    def volume_mm3(self) -> float:
        return self.voxel_count * self.voxel_mm3


def brain_mask(data: np.ndarray) -> tuple[np.ndarray, float]:
    """Voxels above ``MASK_FRACTION`` of the robust maximum; returns (mask, threshold).

    The 99th percentile, not the maximum, so that a few hot voxels (noise,
    vessels) do not raise the threshold.
    """
    robust_max = float(np.percentile(data, ROBUST_MAX_PERCENTILE))
    threshold = MASK_FRACTION * robust_max
    return data > threshold, threshold


def brain_volume(image: nib.Nifti1Image) -> BrainVolume:
    """Brain volume (mm^3) of a T1w image from its threshold mask."""
    data = image.get_fdata(dtype=np.float32)
    if data.ndim == 4:  # a 4D T1w (several averages): use their mean
        data = data.mean(axis=3)
    mask, threshold = brain_mask(data)
    voxel_mm3 = abs(float(np.linalg.det(image.affine[:3, :3])))
    return BrainVolume(mask, threshold, int(mask.sum()), voxel_mm3)


@dataclass(frozen=True)
class Connectome:
    """Correlation between the mean time series of grid blocks."""

    regions: list[int]  # 1-based grid block numbers, ascending
    matrix: np.ndarray  # Pearson correlation, len(regions) square
    skipped: list[int]  # blocks dropped: no brain voxel or constant signal

    def edges(self) -> Iterable[tuple[int, int, float]]:
        """Upper-triangle edges (source < target) with their weights."""
        rows, cols = np.triu_indices(len(self.regions), k=1)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            yield self.regions[i], self.regions[j], float(self.matrix[i, j])

    def edge_list(self) -> str:
        """The CSV text: header ``source,target,weight``, one edge a line."""
        lines = ["source,target,weight"]
        lines += [f"{s},{t},{w:.6f}" for s, t, w in self.edges()]
        return "\n".join(lines) + "\n"

    def mean_weight(self) -> float:
        weights = [w for _, _, w in self.edges()]
        return float(np.mean(weights)) if weights else float("nan")


def grid_labels(shape: Sequence[int], n: int) -> np.ndarray:
    """Block number (1..n^3, x slowest) of every voxel of a 3D grid."""
    index = [
        np.repeat(np.arange(n), [len(part) for part in np.array_split(np.arange(size), n)])
        for size in shape[:3]
    ]
    return (
        index[0][:, None, None] * n * n + index[1][None, :, None] * n + index[2][None, None, :]
    ) + 1


def grid_connectome(data: np.ndarray, n: int) -> Connectome:
    """Functional connectome of a 4D BOLD array over an n x n x n grid parcellation."""
    mask, _ = brain_mask(data.mean(axis=3))
    if not mask.any():
        return Connectome([], np.ones((0, 0)), list(range(1, n**3 + 1)))
    labels = grid_labels(data.shape, n)[mask]
    series = data[mask].astype(np.float64)  # (voxels, time)

    # Mean series per block without a Python loop: sort voxels by block and
    # sum each run of equal labels.
    order = np.argsort(labels, kind="stable")
    present, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    means = np.add.reduceat(series[order], starts, axis=0) / counts[:, None]

    # A constant series has no correlation; keep only blocks that vary.
    varies = means.std(axis=1) > 0
    regions = [int(r) for r in present[varies]]
    skipped = sorted(set(range(1, n**3 + 1)) - set(regions))
    if len(regions) < 2:
        return Connectome(regions, np.ones((len(regions), len(regions))), skipped)
    matrix = np.clip(np.corrcoef(means[varies]), -1.0, 1.0)
    return Connectome(regions, matrix, skipped)


# --------------------------------------------------------------------------- output


def _group_row(scan: Scan, output_dir: Path, *, grid: int) -> list[str] | None:
    folder = output_dir / scan.relative
    volumes = []
    for sidecar in sorted((folder / "anat").glob("sub-*_desc-brain_mask.json")):
        content = _read_json(sidecar)
        if isinstance(content.get("Volume"), int | float):
            volumes.append(float(content["Volume"]))
    nodes: set[int] = set()
    weights: list[float] = []
    for csv in sorted((folder / "func").glob(f"sub-*_desc-grid{grid}_connectome.csv")):
        for source, target, weight in _read_edges(csv):
            nodes.update((source, target))
            weights.append(weight)
    if not volumes and not nodes:
        return None
    return [
        f"sub-{scan.subject}",
        f"ses-{scan.session}" if scan.session else "n/a",
        f"{np.mean(volumes):.1f}" if volumes else "n/a",
        str(len(nodes)) if nodes else "n/a",
        f"{np.mean(weights):.6f}" if weights else "n/a",
    ]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise AppError(f"cannot read {path}: {err}") from None
    return content if isinstance(content, dict) else {}


def _read_edges(path: Path) -> list[tuple[int, int, float]]:
    try:
        lines = path.read_text().splitlines()
        return [
            (int(s), int(t), float(w))
            for s, t, w in (line.split(",") for line in lines[1:] if line.strip())
        ]
    except (OSError, ValueError) as err:
        raise AppError(f"cannot read {path}: {err}") from None


def _write_nifti(path: Path, image: nib.Nifti1Image) -> None:
    # gzip with mtime=0: the same input gives the same bytes, so checksums of
    # outputs agree between retries.
    _write_atomic(path, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a unique temporary name beside ``path``, then rename over it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Dot-prefixed: BIDS tools ignore hidden files if a crash leaves one.
        temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            temp.write_bytes(data)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    except OSError as err:
        raise AppError(f"cannot write {path}: {err}") from None


# --------------------------------------------------------------------------- environment


def _env_labels(name: str) -> set[str]:
    raw = os.environ.get(name, "")
    return {label.strip().removeprefix("sub-") for label in raw.split(",") if label.strip()}


def _env_seconds(name: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise AppError(f"{name} must be a number of seconds >= 0, got {raw!r}", EXIT_USAGE)
    return seconds


def _say(line: str) -> None:
    # Flushed at once: the bidsbatch worker streams these lines to its log.
    print(line, flush=True)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def _error(line: str) -> None:
    print(f"error: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
