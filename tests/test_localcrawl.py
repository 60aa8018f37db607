"""The one-pass local listing lists what ``LocalLocation.list`` lists, and finds the same
symlinks out of the dataset as ``os.path.realpath`` of every key did."""

from __future__ import annotations

import os
from pathlib import Path

from bidsbatch.localcrawl import LocalListing
from bidsbatch.storage.local import LocalLocation


def test_listing_and_escapes_match_walk_and_realpath(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.txt").write_text("s")
    (outside / "deep" / "x.nii.gz").write_text("xx")
    root = tmp_path / "ds"
    anat = root / "sub-01" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_ses-1_T1w.nii.gz").write_text("abc")
    (anat / "b.json").write_text("{}")
    (root / "sub-01" / "z.tsv").write_text("1")
    annex = root / ".git" / "annex" / "objects"
    annex.mkdir(parents=True)
    (annex / "KEY").write_text("annexed")
    os.symlink(annex / "KEY", anat / "sub-01_ses-1_T2w.nii.gz")  # inside: fine
    os.symlink(outside / "secret.txt", anat / "a_secret.json")  # outside: refused
    os.symlink(outside / "deep", root / "sub-01" / "linked_dir")  # a folder: not entered
    os.symlink(outside, root / "sub-02")  # a whole subject elsewhere
    os.symlink(root / "sub-01", root / "sub-03")  # a subject that is another one
    (root / "sub-04").mkdir()
    (root / "sub-04" / "only.txt").write_text("o")
    prefixes = ["sub-01/", "sub-02/", "sub-03/", "sub-04/", "sub-missing/"]

    listing = LocalListing(str(root), check_links=True)
    seen = []
    listed = listing.list_prefixes(prefixes, progress=lambda d, t: seen.append((d, t)))
    loc = LocalLocation(root)
    real_root = os.path.realpath(root)
    expected_leaving = set()
    for prefix in prefixes:
        want = loc.list(prefix, delimiter=None).objects
        assert listed[prefix] == want, prefix
        for obj in want:
            real = os.path.realpath(os.path.join(real_root, obj.key))
            if not (real == real_root or real.startswith(real_root + os.sep)):
                expected_leaving.add(obj.key)
    assert listing.leaving == expected_leaving
    assert "sub-01/ses-1/anat/a_secret.json" in expected_leaving
    assert "sub-02/secret.txt" in expected_leaving
    assert "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz" not in expected_leaving
    assert seen == [(0, 5), (5, 5)]
    assert LocalListing(str(root), check_links=False).list_prefixes(prefixes) == listed
