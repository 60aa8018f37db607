"""Synthetic BIDS datasets with real, tiny NIfTI images.

``make_dataset`` writes a raw BIDS dataset that the official validator
accepts, for demos, tests and benchmarks. The images are small but real:

- ``anat/*_T1w.nii.gz``: a head. A bright ellipsoid "brain" (white matter
  brighter than grey matter, as in T1w) inside a dark CSF gap and a dim
  "skull" shell, on a near-zero background, with Rician-like noise. Brain
  size varies by subject, so a threshold mask gives a volume that differs
  per subject; the voxel-exact volume is written to ``participants.tsv``
  (column ``synth_brain_volume_mm3``) so pipelines can be checked against it.
- ``func/*_task-rest[_run-N]_bold.nii.gz``: 4D, on the same grid. Brain
  voxels carry a few shared low-frequency signals, each weighted by a
  spatial blob, plus noise: nearby regions correlate, distant ones less.
- ``dwi/*_dwi.nii.gz`` with ``.bval``/``.bvec``: ``N_B0`` b=0 volumes and six
  directions at b=1000, with a tensor model (anisotropic "white matter").

Everything is deterministic from ``seed``: the same arguments give
byte-identical files (gzip headers carry ``mtime=0``). Images of subject *i*
depend only on ``seed`` and *i*, not on how many subjects there are.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

BIDS_VERSION = "1.10.0"
TASK = "rest"
REPETITION_TIME = 2.0
B_VALUE = 1000
N_B0 = 2
MODALITIES = ("anat", "func", "dwi")

# Six non-collinear directions (the classic minimal tensor scheme).
_DIRECTIONS = np.array(
    [[1, 0, 1], [-1, 0, 1], [0, 1, 1], [0, 1, -1], [1, 1, 0], [-1, 1, 0]], dtype=float
) / math.sqrt(2.0)

_LABEL = re.compile(r"[0-9A-Za-z]+")

# Stream ids mixed into the seed so each kind of data draws its own numbers;
# adding a kind later does not change the data of the others.
_STREAM_HEAD, _STREAM_T1W, _STREAM_BOLD, _STREAM_DWI, _STREAM_DEMOGRAPHICS = range(5)

# Sidecar metadata shared by every file of a kind. With inherited sidecars
# it lives once at the root (BIDS inheritance principle); otherwise it is
# repeated next to each image.
_SCANNER = {"Manufacturer": "bidsbatch-synth", "MagneticFieldStrength": 3}
_T1W_META = {**_SCANNER, "EchoTime": 0.003, "FlipAngle": 9}
# Both EPI sequences: fieldmap-related fields that pipelines look for.
_EPI = {"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.05}
_DWI_META = {**_SCANNER, **_EPI, "FlipAngle": 90}
_DWI_ECHO_TIME = 0.08
_BOLD_ECHO_TIME = 0.03


def make_dataset(
    path: Path | str,
    *,
    subjects: int = 8,
    sessions: Sequence[str] | None = ("1", "2"),
    runs: int = 1,
    modalities: Sequence[str] = MODALITIES,
    inherited_sidecars: bool = True,
    subject_labels: Sequence[str] | None = None,
    seed: int = 0,
    shape: tuple[int, int, int] = (16, 16, 12),
    n_volumes: int = 20,
    voxel_size: float = 2.0,
) -> Path:
    """Write a valid synthetic BIDS dataset at ``path`` and return its path.

    Args:
        path: target directory; created if missing, must be empty if present.
        subjects: number of subjects, labelled ``01``, ``02``, ... (zero-padded
            to at least two digits). Ignored when ``subject_labels`` is given.
        sessions: session labels; ``None`` or empty for a dataset without
            sessions (no ``ses-`` folders, no ``sessions.tsv``).
        runs: BOLD runs per scan; with more than one, files carry ``run-<n>``.
        modalities: any of ``"anat"``, ``"func"``, ``"dwi"``.
        inherited_sidecars: put shared metadata (and ``dwi.bval``/``dwi.bvec``)
            in root-level files that apply by inheritance; the per-file sidecars
            of BOLD and DWI then hold only the echo time, T1w has none.
        subject_labels: explicit participant labels (alphanumeric, no ``sub-``).
        seed: seed of all random draws; same arguments give identical bytes.
        shape: voxel grid of every image (x, y, z).
        n_volumes: time points of each BOLD run.
        voxel_size: isotropic voxel size in mm.

    Raises:
        ValueError: an argument is out of range or a label is not alphanumeric.
        FileExistsError: ``path`` exists and is not an empty directory.
    """
    root = Path(path)
    labels = _subject_labels(subjects, subject_labels)
    session_labels = _check_labels("session", sessions or ())
    kinds = _check_arguments(
        runs=runs,
        modalities=modalities,
        seed=seed,
        shape=shape,
        n_volumes=n_volumes,
        voxel_size=voxel_size,
    )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)

    grid = _Grid(shape=tuple(int(n) for n in shape), voxel_size=float(voxel_size))
    heads = [_Head.draw(grid, seed=seed, index=i) for i in range(len(labels))]

    _write_dataset_files(
        root, labels=labels, heads=heads, grid=grid, seed=seed, sessions=bool(session_labels)
    )
    if inherited_sidecars:
        _write_inherited_sidecars(root, kinds=kinds, grid=grid)

    for i, (label, head) in enumerate(zip(labels, heads, strict=True)):
        subject_dir = root / f"sub-{label}"
        subject_dir.mkdir()
        if session_labels:
            _write_tsv(
                subject_dir / f"sub-{label}_sessions.tsv",
                ["session_id"],
                [[f"ses-{s}"] for s in session_labels],
            )
        for j, session in enumerate(session_labels or [None]):
            scan_dir = subject_dir / f"ses-{session}" if session else subject_dir
            prefix = f"sub-{label}_ses-{session}" if session else f"sub-{label}"
            _write_scan(
                scan_dir,
                prefix,
                head=head,
                grid=grid,
                kinds=kinds,
                runs=runs,
                n_volumes=n_volumes,
                seed_key=(seed, i, j),
                full_sidecars=not inherited_sidecars,
            )
    return root


# --------------------------------------------------------------------------- checks


def _check_labels(kind: str, labels: Sequence[str]) -> list[str]:
    out = [str(label) for label in labels]
    for label in out:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{kind} label {label!r} must be alphanumeric (BIDS label)")
    if len(set(out)) != len(out):
        raise ValueError(f"{kind} labels must be unique, got {out}")
    return out


def _subject_labels(subjects: int, subject_labels: Sequence[str] | None) -> list[str]:
    if subject_labels is not None:
        labels = _check_labels("participant", subject_labels)
    else:
        if subjects < 1:
            raise ValueError(f"subjects must be at least 1, got {subjects}")
        width = max(2, len(str(subjects)))
        labels = [f"{i:0{width}d}" for i in range(1, subjects + 1)]
    if not labels:
        raise ValueError("at least one subject label is needed")
    return labels


def _check_arguments(
    *,
    runs: int,
    modalities: Sequence[str],
    seed: int,
    shape: Sequence[int],
    n_volumes: int,
    voxel_size: float,
) -> frozenset[str]:
    kinds = frozenset(modalities)
    if not kinds or not kinds <= set(MODALITIES):
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"shape must be three sizes of at least 4 voxels, got {shape}")
    if n_volumes < 3:
        # Fewer points make every correlation trivially +-1.
        raise ValueError(f"n_volumes must be at least 3, got {n_volumes}")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    return kinds


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class _Grid:
    """The voxel grid shared by all images: RAS+, origin at the grid centre."""

    shape: tuple[int, int, int]
    voxel_size: float

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([self.voxel_size] * 3 + [1.0])
        affine[:3, 3] = -(np.array(self.shape) - 1) / 2.0 * self.voxel_size
        return affine

    @property
    def voxel_volume(self) -> float:
        return self.voxel_size**3

    def coordinates(self) -> list[np.ndarray]:
        """Millimetre coordinates of voxel centres, as broadcastable open grids."""
        return [
            (np.arange(n) - (n - 1) / 2.0).reshape([-1 if a == axis else 1 for a in range(3)])
            * self.voxel_size
            for axis, n in enumerate(self.shape)
        ]


@dataclass(frozen=True)
class _Head:
    """One subject's anatomy: tissue masks on the grid."""

    brain: np.ndarray  # bool: grey + white matter
    white: np.ndarray  # bool: inner part of the brain
    csf: np.ndarray  # bool: gap between brain and skull
    skull: np.ndarray  # bool: outer shell
    radii: np.ndarray  # brain ellipsoid radii, mm
    fibre_axis: int  # main diffusion direction of the white matter

    @classmethod
    def draw(cls, grid: _Grid, *, seed: int, index: int) -> _Head:
        rng = np.random.default_rng([seed, index, 0, _STREAM_HEAD])
        half = np.array(grid.shape) * grid.voxel_size / 2.0
        # A common scale (head size) and a small per-axis jitter (head shape);
        # the outer skull stays inside the field of view (1.25 * 0.74 < 1).
        scale = rng.uniform(0.60, 0.68)
        radii = half * scale * rng.uniform(0.94, 1.06, size=3)
        x, y, z = grid.coordinates()
        r2 = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2
        brain = r2 <= 1.0
        return cls(
            brain=brain,
            white=r2 <= 0.7**2,
            csf=(r2 > 1.0) & (r2 <= 1.1**2),
            skull=(r2 > 1.1**2) & (r2 <= 1.25**2),
            radii=radii,
            fibre_axis=int(rng.integers(0, 3)),
        )

    def brain_volume_mm3(self, grid: _Grid) -> float:
        return float(self.brain.sum()) * grid.voxel_volume


# --------------------------------------------------------------------------- images


def _t1w(head: _Head, rng: np.random.Generator) -> np.ndarray:
    # T1w contrast: WM > GM >> skull > CSF ~ background.
    image = np.zeros(head.brain.shape)
    image[head.skull] = 250.0
    image[head.csf] = 60.0
    image[head.brain] = 600.0
    image[head.white] = 900.0
    image *= rng.uniform(0.95, 1.05)  # scanner gain differs per session
    return _rician(image, sigma=20.0, rng=rng)


def _bold(head: _Head, grid: _Grid, n_volumes: int, rng: np.random.Generator) -> np.ndarray:
    base = np.zeros(head.brain.shape)
    base[head.skull] = 150.0
    base[head.csf] = 300.0
    base[head.brain] = 1000.0
    base[head.white] = 850.0

    # Shared low-frequency signals (0.01-0.1 Hz, the resting-state band) plus a
    # weak global one; each component reaches the voxels near its blob centre.
    n_components = 4
    t = np.arange(n_volumes) * REPETITION_TIME
    freqs = rng.uniform(0.01, 0.1, size=(n_components, 2))
    phases = rng.uniform(0, 2 * math.pi, size=(n_components, 2))
    signals = np.sin(2 * math.pi * freqs[:, :1] * t + phases[:, :1]) + 0.5 * np.sin(
        2 * math.pi * freqs[:, 1:] * t + phases[:, 1:]
    )
    signals = (signals - signals.mean(axis=1, keepdims=True)) / (
        signals.std(axis=1, keepdims=True) + 1e-12
    )
    global_signal = rng.standard_normal(n_volumes)

    x, y, z = (np.broadcast_to(c, grid.shape)[head.brain] for c in grid.coordinates())
    points = np.stack([x, y, z], axis=1)  # (n_brain, 3) mm
    centres = head.radii * _inside_unit_ball(rng, n_components, 0.8)
    width = 0.45 * float(head.radii.mean())
    d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    weights = np.exp(-d2 / (2 * width**2))  # (n_brain, n_components)

    fluctuation = weights @ signals + 0.3 * global_signal
    noise = rng.standard_normal((len(points), n_volumes))
    series = base[head.brain][:, None] * (1.0 + 0.03 * fluctuation + 0.01 * noise)

    volume = np.repeat(base[..., None], n_volumes, axis=3)
    volume[head.brain] = series
    return _rician(volume, sigma=10.0, rng=rng)


def _dwi(head: _Head, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (4D image, bvals, bvecs) from a simple tensor model."""
    bvals, bvecs = _gradients()

    s0 = np.zeros(head.brain.shape)
    s0[head.skull] = 100.0
    s0[head.csf] = 1500.0
    s0[head.brain] = 1000.0
    s0[head.white] = 800.0
    # Apparent diffusion along each gradient (mm^2/s): free water in CSF,
    # isotropic in grey matter, fibre-aligned in white matter.
    fibre = np.eye(3)[head.fibre_axis]
    along = (bvecs @ fibre) ** 2  # (n,)
    diffusivity = np.zeros((*head.brain.shape, len(bvals)))
    diffusivity[head.csf] = 3.0e-3
    diffusivity[head.brain] = 0.8e-3
    diffusivity[head.white] = 0.3e-3 + (1.7e-3 - 0.3e-3) * along
    image = s0[..., None] * np.exp(-bvals * diffusivity)
    return _rician(image, sigma=15.0, rng=rng), bvals, bvecs


def _inside_unit_ball(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * radius * rng.uniform(0, 1, size=(n, 1)) ** (1 / 3)


def _rician(image: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a signal with complex Gaussian noise, as int16."""
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(np.hypot(real, imag)), 0, np.iinfo(np.int16).max).astype(np.int16)


def _write_nifti(path: Path, data: np.ndarray, grid: _Grid, *, tr: float | None = None) -> None:
    header = _nifti_header(grid, data.shape, data.dtype.str, tr)
    # nibabel's own .nii.gz writer stamps the gzip header with the current
    # time; compressing the bytes ourselves with mtime=0 keeps files
    # byte-identical between runs.
    payload = header + np.asarray(data, order="F").tobytes(order="F")
    path.write_bytes(gzip.compress(payload, compresslevel=6, mtime=0))


@functools.lru_cache(maxsize=16)
def _nifti_header(grid: _Grid, shape: tuple[int, ...], dtype: str, tr: float | None) -> bytes:
    """The bytes nibabel writes before the voxel data, for one image layout.

    Building a ``Nifti1Image`` costs about a millisecond (mostly qform
    maths); every image of a dataset shares a few layouts, so the header is
    made once per layout and the voxel data appended to it.
    """
    affine = grid.affine
    image = nib.Nifti1Image(np.zeros(shape, dtype=np.dtype(dtype)), affine)
    image.set_qform(affine, code=1)  # scanner-anatomical
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        image.header.set_zooms((*image.header.get_zooms()[:3], tr))
    blob = image.to_bytes()
    offset = len(blob) - image.dataobj.nbytes
    # Single-file NIfTI-1: 348-byte header, 4-byte extension flag, then data.
    if offset != 352:
        raise RuntimeError(f"unexpected NIfTI layout from nibabel (data at byte {offset})")
    return blob[:offset]


# --------------------------------------------------------------------------- files


def _write_scan(
    scan_dir: Path,
    prefix: str,
    *,
    head: _Head,
    grid: _Grid,
    kinds: frozenset[str],
    runs: int,
    n_volumes: int,
    seed_key: tuple[int, int, int],
    full_sidecars: bool,
) -> None:
    if "anat" in kinds:
        anat = scan_dir / "anat"
        anat.mkdir(parents=True)
        rng = np.random.default_rng([*seed_key, _STREAM_T1W])
        _write_nifti(anat / f"{prefix}_T1w.nii.gz", _t1w(head, rng), grid)
        if full_sidecars:
            _write_json(anat / f"{prefix}_T1w.json", _T1W_META)

    if "func" in kinds:
        func = scan_dir / "func"
        func.mkdir(parents=True)
        for run in range(1, runs + 1):
            rng = np.random.default_rng([*seed_key, _STREAM_BOLD, run])
            stem = f"{prefix}_task-{TASK}" + (f"_run-{run}" if runs > 1 else "") + "_bold"
            _write_nifti(
                func / f"{stem}.nii.gz",
                _bold(head, grid, n_volumes, rng),
                grid,
                tr=REPETITION_TIME,
            )
            meta = _bold_meta(grid) if full_sidecars else {}
            _write_json(func / f"{stem}.json", {**meta, "EchoTime": _BOLD_ECHO_TIME})

    if "dwi" in kinds:
        dwi_dir = scan_dir / "dwi"
        dwi_dir.mkdir(parents=True)
        rng = np.random.default_rng([*seed_key, _STREAM_DWI])
        image, bvals, bvecs = _dwi(head, rng)
        _write_nifti(dwi_dir / f"{prefix}_dwi.nii.gz", image, grid)
        meta = _DWI_META if full_sidecars else {}
        _write_json(dwi_dir / f"{prefix}_dwi.json", {**meta, "EchoTime": _DWI_ECHO_TIME})
        if full_sidecars:
            _write_gradients(dwi_dir / f"{prefix}_dwi", bvals, bvecs)


def _bold_meta(grid: _Grid) -> dict[str, Any]:
    n_slices = grid.shape[2]
    return {
        "TaskName": TASK,
        "RepetitionTime": REPETITION_TIME,
        **_SCANNER,
        **_EPI,
        "FlipAngle": 70,
        # Sequential ascending acquisition, one slice per TR / n_slices.
        "SliceTiming": [round(i * REPETITION_TIME / n_slices, 6) for i in range(n_slices)],
    }


def _write_inherited_sidecars(root: Path, *, kinds: frozenset[str], grid: _Grid) -> None:
    # Root-level files apply to every file with the same suffix (and entities)
    # below them: BIDS inheritance principle. Per-file sidecars keep only the
    # echo time, so readers must merge both levels to see the full metadata.
    if "anat" in kinds:
        _write_json(root / "T1w.json", _T1W_META)
    if "func" in kinds:
        _write_json(root / f"task-{TASK}_bold.json", _bold_meta(grid))
    if "dwi" in kinds:
        _write_json(root / "dwi.json", _DWI_META)
        _write_gradients(root / "dwi", *_gradients())


def _gradients() -> tuple[np.ndarray, np.ndarray]:
    """b-values (n,) and unit gradient directions (n x 3): N_B0 b=0, then six."""
    bvals = np.array([0] * N_B0 + [B_VALUE] * len(_DIRECTIONS), dtype=float)
    bvecs = np.vstack([np.zeros((N_B0, 3)), _DIRECTIONS])
    return bvals, bvecs


def _write_gradients(stem: Path, bvals: np.ndarray, bvecs: np.ndarray) -> None:
    # BIDS: .bval is one row of b-values, .bvec three rows (x, y, z), space
    # separated, one column per volume.
    stem.with_name(stem.name + ".bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    rows = (" ".join(f"{v:.6f}" for v in row) for row in bvecs.T)
    stem.with_name(stem.name + ".bvec").write_text("\n".join(rows) + "\n")


def _write_dataset_files(
    root: Path, *, labels: list[str], heads: list[_Head], grid: _Grid, seed: int, sessions: bool
) -> None:
    _write_json(
        root / "dataset_description.json",
        {
            "Name": "bidsbatch synthetic dataset",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bidsbatch synth", "bidsbatch contributors"],
            "GeneratedBy": [{"Name": "bidsbatch.synth", "Version": _version()}],
        },
    )
    (root / "README.md").write_text(
        "# bidsbatch synthetic dataset\n\n"
        "Synthetic MRI data written by `bidsbatch.synth.make_dataset` for demos,\n"
        "tests and benchmarks. The images are small but real: a T1w head with an\n"
        "ellipsoid brain, resting-state BOLD with shared regional signals, and DWI\n"
        "with a simple tensor model. None of it comes from a person.\n\n"
        f"Subjects: {len(labels)}. Sessions: {'yes' if sessions else 'no'}. Seed: {seed}.\n"
    )
    (root / "CHANGES").write_text("1.0.0 2024-01-01\n  - Written by bidsbatch.synth.\n")

    rng_rows = []
    for i, (label, head) in enumerate(zip(labels, heads, strict=True)):
        rng = np.random.default_rng([seed, i, 0, _STREAM_DEMOGRAPHICS])
        rng_rows.append(
            [
                f"sub-{label}",
                str(int(rng.integers(20, 70))),
                str(rng.choice(["F", "M"])),
                f"{head.brain_volume_mm3(grid):g}",
            ]
        )
    _write_tsv(
        root / "participants.tsv",
        ["participant_id", "age", "sex", "synth_brain_volume_mm3"],
        rng_rows,
    )
    _write_json(
        root / "participants.json",
        {
            "age": {"Description": "age of the participant", "Units": "year"},
            "sex": {
                "Description": "sex of the participant",
                "Levels": {"F": "female", "M": "male"},
            },
            "synth_brain_volume_mm3": {
                "Description": "true volume of the synthetic brain (grey and white "
                "matter voxels times voxel volume), for checking pipelines",
                "Units": "mm^3",
            },
        },
    )


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n")


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    lines = ["\t".join(header), *("\t".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")


def _version() -> str:
    from ._version import __version__  # not importlib.metadata: 85 ms a call

    return __version__
