"""The crawl, one shared suite for every location: each layout on local disk and on S3."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import unique_bucket, upload_tree
from layouts import LAYOUTS, Layout

from bidsbatch.bids import crawl, parse_scan_id, scan_id
from bidsbatch.errors import DatasetError

LOCATIONS = ["local", "s3"]


@pytest.fixture(params=LOCATIONS)
def place(request, tmp_path):  # type: ignore[no-untyped-def]
    """A function that puts a local folder somewhere and returns its URI."""
    kind = request.param
    if kind == "local":
        return lambda root: str(root)
    s3 = request.getfixturevalue("s3")
    bucket = unique_bucket()

    def to_s3(root: Path) -> str:
        upload_tree(s3, root, bucket, "data/ds")
        return f"s3://{bucket}/data/ds"

    return to_s3


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_layout_gives_exact_scans(layout: Layout, place, tmp_path: Path) -> None:
    uri = place(layout.write(tmp_path / layout.name))
    ds = crawl(uri)
    assert {s.id for s in ds.scans} == set(layout.scans)
    for scan in ds.scans:
        keys = {f.key for f in scan.files}
        assert keys == set(layout.scans[scan.id]) | set(layout.dataset_files), scan.id
        assert list(keys) == sorted(keys) or [f.key for f in scan.files] == sorted(keys)


def test_scan_sizes_come_from_the_store(place, tmp_path: Path) -> None:
    layout = LAYOUTS[0]
    root = layout.write(tmp_path / "ds")
    (root / "sub-01/anat/sub-01_T1w.nii.gz").write_bytes(b"x" * 12345)
    ds = crawl(place(root))
    files = {f.key: f.size for s in ds.scans for f in s.files}
    assert files["sub-01/anat/sub-01_T1w.nii.gz"] == 12345


def test_invalid_names_are_counted_not_fatal(place, tmp_path: Path) -> None:
    layout = LAYOUTS[0]
    root = layout.write(tmp_path / "ds")
    (root / "sub-01/anat/sub-01_notasuffix.nii.gz").write_text("x")
    (root / "sub-01/anat/garbage.txt").write_text("x")
    ds = crawl(place(root))
    assert sorted(ds.invalid_names) == [
        "sub-01/anat/garbage.txt", "sub-01/anat/sub-01_notasuffix.nii.gz"]
    assert any("2 file name(s) are not valid BIDS" in w for w in ds.warnings)
    assert {s.id for s in ds.scans} == {"sub-01", "sub-02"}


def test_missing_description_is_a_clear_error(place, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "sub-01/anat").mkdir(parents=True)
    (root / "sub-01/anat/sub-01_T1w.nii.gz").write_text("x")
    with pytest.raises(DatasetError, match=r"dataset_description\.json is missing"):
        crawl(place(root))


def test_malformed_description_is_a_clear_error(place, tmp_path: Path) -> None:
    root = LAYOUTS[0].write(tmp_path / "ds")
    (root / "dataset_description.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        crawl(place(root))


def test_description_without_name_warns(place, tmp_path: Path) -> None:
    root = LAYOUTS[0].write(tmp_path / "ds")
    (root / "dataset_description.json").write_text('{"BIDSVersion": "1.10.0"}')
    ds = crawl(place(root))
    assert "dataset_description.json has no Name" in ds.warnings


def test_dataset_without_subjects_says_no_scans(place, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    (root / "README").write_text("nothing here")
    with pytest.raises(DatasetError, match="no scans"):
        crawl(place(root))


def test_s3_refuses_hostile_keys_and_skips_folder_markers(s3, tmp_path: Path) -> None:
    root = LAYOUTS[0].write(tmp_path / "ds")
    bucket = unique_bucket()
    upload_tree(s3, root, bucket, "ds")
    for key in ("ds/sub-01/anat/../../../../etc/passwd", "ds/sub-01/anat\\evil.nii.gz",
                "ds/sub-01//anat/x.nii.gz", "ds/sub-01/anat/bell\x07.nii.gz"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_object(Bucket=bucket, Key="ds/sub-03/", Body=b"")  # a console "folder"
    s3.put_object(Bucket=bucket, Key="ds/sub-03/ses-1/", Body=b"")
    ds = crawl(f"s3://{bucket}/ds")
    assert {s.id for s in ds.scans} == {"sub-01", "sub-02"}
    refused = {k for k, _reason in ds.refused_keys}
    assert "sub-01/anat\\evil.nii.gz" in refused
    assert len(refused) == 4
    for scan in ds.scans:
        assert all(".." not in f.key and "\\" not in f.key for f in scan.files)
    assert any("refused unsafe key" in w for w in ds.warnings)


def test_s3_crawl_lists_each_subject_once(aws, s3, tmp_path: Path) -> None:
    """Root listing with a delimiter, then one page for every subject: no per-prefix walk."""
    from bidsbatch.synth import make_dataset

    root = make_dataset(tmp_path / "ds", subjects=6, sessions=("1", "2"), shape=(4, 4, 4),
                        n_volumes=3)
    bucket = unique_bucket()
    upload_tree(s3, root, bucket, "ds")
    aws.reset_requests()
    ds = crawl(f"s3://{bucket}/ds")
    assert len(ds.scans) == 12
    lists = [r for r in aws.requests() if r["method"] == "GET" and "list-type=2" in r["query"]]
    # 1 root listing + 1 page of all six subjects' keys (under 1,000 of them); reads:
    # dataset_description.json (+ .bidsignore if any)
    assert len(lists) == 2
    gets = [r for r in aws.requests() if r["method"] == "GET" and "list-type" not in r["query"]]
    assert [g["path"].rsplit("/", 1)[-1] for g in gets] == ["dataset_description.json"]


def test_progress_is_reported(tmp_path: Path) -> None:
    root = LAYOUTS[0].write(tmp_path / "ds")
    seen: list[tuple[int, int]] = []
    crawl(str(root), progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)


@pytest.mark.parametrize("text,expected", [
    ("sub-01", ("01", None)), ("sub-a+b_ses-pre+op", ("a+b", "pre+op")),
])
def test_scan_ids_round_trip(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_scan_id(text) == expected
    assert scan_id(*expected) == text


def test_s3_range_listing_matches_local_with_tricky_labels(aws, s3, tmp_path: Path) -> None:
    """Many subjects in few key-range listings: same scans as the local crawl, fewer calls.

    sub-01 has more than 1,000 objects: every page is read. The first page ends
    inside it, just before its tricky neighbours: the listing goes on from the
    last key read, in key ranges.
    """
    from concurrent.futures import ThreadPoolExecutor

    labels = ["01", "010", "0100", "01a", "1", "10", "2", "a+b", "ab", "abc", "b", "c"]
    labels += [f"x{i:02d}" for i in range(28)]
    keys = ["dataset_description.json", "sub-01.txt"]
    keys += [f"sub-01/func/sub-01_task-rest_run-{i}_bold.nii.gz" for i in range(1, 1101)]
    for label in labels:
        keys += [f"sub-{label}/anat/sub-{label}_T1w.nii.gz",
                 f"sub-{label}/func/sub-{label}_task-rest_bold.nii.gz"]
    keys += ["sub-01-notes/readme.txt", "sub-01_bad/x.txt"]  # folders that are not subjects
    layout = Layout("many", tuple(keys), {})
    root = layout.write(tmp_path / "ds")
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=f"ds/{k}",
                                              Body=(root / k).read_bytes()), keys))
    local = crawl(str(root))
    aws.reset_requests()
    remote = crawl(f"s3://{bucket}/ds", max_workers=4)
    assert [(s.id, [f.key for f in s.files]) for s in remote.scans] == [
        (s.id, [f.key for f in s.files]) for s in local.scans]
    assert len(remote.scans) == len(labels)
    assert remote.scans[0].id == "sub-01" and len(remote.scans[0].files) >= 1102
    lists = [r for r in aws.requests() if "list-type=2" in r["query"]]
    # the root, the first page, one near-empty timing request, then the rest (~190 keys)
    # in at most 4 ranges of one page each
    assert 4 <= len(lists) <= 3 + 4
    assert not [r for r in lists if "prefix=ds%2Fsub-01%2F" in r["query"]]  # no per subject


def test_key_ranges_follow_latency_and_size() -> None:
    from bidsbatch.storage.keyranges import Probe, choose

    def ranges(small: float, page: float, *, covered: float = 40, left: int = 960,
               cap: int = 16) -> int:
        probe = Probe(small_seconds=small, page_seconds=page, page_keys=1000,
                      prefixes_covered=covered)
        return choose(probe, prefixes_left=left, max_ranges=cap).ranges

    # a serial server (moto on loopback): little latency to hide, but no range reads
    # more than 3 of the 24 pages left in a row (a serial tail): 8
    assert ranges(0.010, 0.300) == 8
    assert ranges(0.010, 0.300, left=240) == 3  # 6 pages left: Little's law decides
    # the same work behind more latency: more in flight
    # (12 pages left: the 3-page floor is 4)
    assert ranges(0.040, 0.080, left=480) == 4 < ranges(0.100, 0.140, left=480) == 7 \
        < ranges(0.200, 0.210) == 16
    # never more ranges than pages left (960 prefixes at 25 keys each: 24 pages)...
    assert ranges(0.5, 0.51, cap=64) == 24
    # ...nor than prefixes, nor than the cap
    assert ranges(0.5, 0.51, covered=1, left=3) == 3
    assert ranges(0.5, 0.51, cap=8) == 8
