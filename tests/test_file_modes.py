"""Files bidsbatch writes get the umask's mode; a file it replaces keeps its mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli

from bidsbatch.storage import LocalLocation, atomic_write
from bidsbatch.synth import make_dataset


@pytest.fixture
def umask_002() -> Iterator[None]:
    old = os.umask(0o002)  # a shared-group lab setting; the CLI subprocess inherits it
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_uses_the_umask_and_keeps_a_replaced_mode(tmp_path: Path,
                                                               umask_002: None) -> None:
    new = tmp_path / "new.txt"
    atomic_write(new, "a")
    assert _mode(new) == 0o664
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o640)
    atomic_write(kept, "new")
    assert kept.read_text() == "new" and _mode(kept) == 0o640
    loc = LocalLocation(tmp_path / "out")
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    src.chmod(0o600)  # what the app's own file mode is does not matter: the output's does
    loc.upload(src, "sub-01/x.bin")
    assert _mode(tmp_path / "out/sub-01/x.bin") == 0o664


def test_run_outputs_and_records_are_readable_by_the_group(tmp_path: Path,
                                                           umask_002: None) -> None:
    ds = make_dataset(tmp_path / "ds", subjects=1, sessions=None, shape=(8, 8, 6),
                      n_volumes=4)
    out, run_dir = tmp_path / "out", tmp_path / "run"
    res = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--run-dir", str(run_dir))
    assert res.returncode == 0, res.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name.endswith("_desc-brain_mask.nii.gz") for p in written)
    records = [run_dir / "run.json", run_dir / "report.html", *run_dir.glob("specs/*.json")]
    for path in [*written, *records]:
        assert _mode(path) == 0o664, f"{path} has mode {oct(_mode(path))}"
    # A rerun that replaces an output keeps the mode its owner gave it.
    mask = next(p for p in written if p.name.endswith("_desc-brain_mask.nii.gz"))
    mask.chmod(0o640)
    again = run_cli("run", "--pipeline", "demo", str(ds), str(out), "--run-dir", str(run_dir),
                    "--force")
    assert again.returncode == 0, again.stderr
    assert _mode(mask) == 0o640
