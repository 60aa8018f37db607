"""Parallel, verified transfers: local folders and the moto S3 server, no mocks."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
from conftest import unique_bucket

from bidsbatch.errors import HostileKeyError, StorageError, TransientStorageError
from bidsbatch.storage import LocalLocation, ObjectInfo, S3Location
from bidsbatch.storage.transfer import (
    ChecksumMismatchError,
    RetryPolicy,
    collect_files,
    compile_excludes,
    download_many,
    is_excluded,
    plain_md5,
    upload_tree,
)

MiB = 1024 * 1024


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


FILES = {
    "dataset_description.json": b'{"Name": "x", "BIDSVersion": "1.10.0"}',
    "sub-01/anat/sub-01_T1w.nii.gz": os.urandom(300_000),
    "sub-01/anat/sub-01_T1w.json": b"{}",
    "sub-01/dwi/sub-01_dwi.bval": b"0 1000\n",
    "sub-01/empty.tsv": b"",
}


# --------------------------------------------------------------------------- excludes


@pytest.mark.parametrize(("pattern", "path", "excluded"), [
    ("tmp_d/**", "tmp_d/a/b.nii", True),
    ("tmp_d/**", "tmp_d/", True),  # the folder itself (pruned from the walk)
    ("tmp_d/**", "tmp_d", False),  # a file of that name is not under it
    ("tmp_d/**", "sub-01/tmp_d/x", False),
    ("tmp_d", "tmp_d/deep/x", True),
    ("**/*.tmp", "a/b/c.tmp", True),
    ("**/*.tmp", "c.tmp", True),
    ("*.tmp", "a/c.tmp", False),
    ("sub-0[12]/*.log", "sub-02/x.log", True),
    ("sub-0[!12]/*.log", "sub-02/x.log", False),
    ("work/*/cache", "work/a/cache/file", True),
])
def test_exclude_globs(pattern: str, path: str, excluded: bool) -> None:
    assert is_excluded(path, compile_excludes([pattern])) is excluded


def test_plain_md5_only_for_single_part_etags() -> None:
    digest = hashlib.md5(b"x").hexdigest()
    assert plain_md5(f'"{digest}"') == digest
    assert plain_md5(f"{digest}-3") is None
    assert plain_md5(None) is None
    assert plain_md5("not-an-md5") is None


# --------------------------------------------------------------------------- local


def test_download_many_local_copies_and_verifies(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, FILES)
    dest = tmp_path / "dest"
    items = LocalLocation(src).walk()
    stats = download_many(LocalLocation(src), items, dest, max_workers=4)
    assert _tree(dest) == FILES
    assert stats.files == len(FILES)
    assert stats.bytes == sum(len(v) for v in FILES.values())
    assert not list(dest.rglob("*.bbpart"))


def test_download_many_refuses_a_size_that_does_not_match(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src, FILES)
    item = ObjectInfo("sub-01/anat/sub-01_T1w.json", 999)  # the plan said 999 bytes
    with pytest.raises(ChecksumMismatchError, match="expected 999"):
        download_many(LocalLocation(src), [item], tmp_path / "dest",
                      retry=RetryPolicy(retries=1, sleep=lambda s: None))
    assert not [p for p in (tmp_path / "dest").rglob("*") if p.is_file()]


@pytest.mark.parametrize("key", ["../escape.txt", "/etc/passwd", "sub-01/../../x", "a\\b"])
def test_download_many_refuses_hostile_keys_before_any_transfer(tmp_path: Path,
                                                                key: str) -> None:
    src = tmp_path / "src"
    _write(src, FILES)
    items = [ObjectInfo("dataset_description.json", 38), ObjectInfo(key, 1)]
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(HostileKeyError):
        download_many(LocalLocation(src), items, dest)
    assert not dest.exists()  # nothing was fetched, not even the good file
    assert not (tmp_path / "escape.txt").exists()


def test_upload_tree_local_checksums_excludes_and_reserved(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, {**FILES, "tmp_d/big.bin": b"x" * 1000,
                 ".bidsbatch/done/sub-99.json": b"{}"})
    (out / "sub-01" / "link-outside").symlink_to("/etc/hostname")
    (out / "sub-01" / "link-inside").symlink_to(out / "sub-01" / "anat" / "sub-01_T1w.json")
    dest = tmp_path / "dest"
    # the folder bidsbatch keeps its records in is named by the caller (storage knows no runs)
    outputs = upload_tree(out, LocalLocation(dest), excludes=["tmp_d/**"], max_workers=3,
                          reserved=[".bidsbatch"])
    stored = _tree(dest)
    expected = {**FILES, "sub-01/link-inside": b"{}"}
    assert stored == expected
    assert [o.key for o in outputs] == sorted(expected)
    for o in outputs:
        assert o.size == len(expected[o.key])
        assert o.checksum == "sha256:" + hashlib.sha256(expected[o.key]).hexdigest()
    collected = collect_files(out, excludes=["tmp_d/**"], reserved=[".bidsbatch"])
    assert collected.excluded == 1
    assert any("link-outside" in s for s in collected.skipped)
    assert any(s.startswith(".bidsbatch/") for s in collected.skipped)


def test_upload_tree_refuses_unstorable_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, {"bad\\name.txt": b"x"})
    with pytest.raises(StorageError, match="cannot be stored"):
        upload_tree(out, LocalLocation(tmp_path / "dest"))


# --------------------------------------------------------------------------- S3


@pytest.fixture(params=["obstore", "boto3"])
def s3_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each bulk-transfer test on both data paths: obstore (the default) and s3transfer."""
    if request.param == "boto3":
        monkeypatch.setenv("BIDSBATCH_S3_TRANSFER", "boto3")
    return str(request.param)


def _sent_by(requests: list[dict[str, str]], path: str) -> bool:
    """Whether every request came from the data path ``path`` (by its User-Agent)."""
    agent = "object_store" if path == "obstore" else "Boto3"
    return bool(requests) and all(r["agent"].startswith(agent) for r in requests)


def _s3_dataset(s3, tmp_path: Path, files: dict[str, bytes]) -> tuple[S3Location, list]:  # type: ignore[no-untyped-def]
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    for rel, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"ds/{rel}", Body=data)
    location = S3Location(bucket, "ds")
    return location, location.walk()


def test_download_many_s3_ranged_no_heads_verified(aws, s3, s3_path: str,
                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = {**FILES, "sub-01/dwi/sub-01_dwi.nii.gz": os.urandom(8 * MiB + 123)}
    location, items = _s3_dataset(s3, tmp_path, files)
    aws.reset_requests()
    seen: list[int] = []
    download_many(location, items, tmp_path / "dest", max_workers=8, part_size=4 * MiB,
                  progress=seen.append)
    assert _tree(tmp_path / "dest") == files
    assert sum(seen) == sum(len(v) for v in files.values())
    requests = aws.requests()
    assert not [r for r in requests if r["method"] == "HEAD"], "sizes come from the plan"
    gets = [r for r in requests if r["method"] == "GET"]
    # one GET per small file, three ranged GETs for the 8 MiB + 123 B one (4 MiB parts)
    assert len(gets) == len(files) + 2
    assert len([r for r in gets if r["path"].endswith("_dwi.nii.gz")]) == 3
    assert _sent_by(requests, s3_path)


def test_download_many_s3_catches_changed_content(aws, s3, s3_path: str,
                                                 tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    location, items = _s3_dataset(s3, tmp_path, FILES)
    key = "sub-01/anat/sub-01_T1w.nii.gz"
    # Same size, other bytes: only the MD5 ETag can tell (a corrupted or replaced object).
    s3.put_object(Bucket=location.bucket, Key=f"ds/{key}", Body=os.urandom(300_000))
    sleeps: list[float] = []
    with pytest.raises(ChecksumMismatchError, match="does not match its ETag"):
        download_many(location, items, tmp_path / "dest",
                      retry=RetryPolicy(retries=1, delay=0.5, sleep=sleeps.append))
    assert sleeps == [0.5]  # it was downloaded again once before giving up
    assert not (tmp_path / "dest" / key).exists()
    assert not list((tmp_path / "dest").rglob("*.bbpart"))


def test_download_many_s3_missing_object_is_not_transient(aws, s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    location, items = _s3_dataset(s3, tmp_path, FILES)
    s3.delete_object(Bucket=location.bucket, Key="ds/sub-01/anat/sub-01_T1w.json")
    with pytest.raises(StorageError) as info:
        download_many(location, items, tmp_path / "dest",
                      retry=RetryPolicy(sleep=lambda s: pytest.fail("no retry expected")))
    assert not isinstance(info.value, TransientStorageError)


def test_upload_tree_s3_checksums_and_no_acl(aws, s3, s3_path: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    files = {**FILES, "sub-01/big.bin": os.urandom(9 * MiB), "tmp_d/x": b"x"}
    _write(out, files)
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    aws.reset_requests()
    outputs = upload_tree(out, S3Location(bucket, "deriv"), excludes=["tmp_d"], max_workers=8,
                          part_size=5 * MiB)  # S3's smallest part: the big file in two parts
    expected = {k: v for k, v in files.items() if not k.startswith("tmp_d")}
    assert [o.key for o in outputs] == sorted(expected)
    for o in outputs:
        body = s3.get_object(Bucket=bucket, Key=f"deriv/{o.key}")["Body"].read()
        assert body == expected[o.key]
        assert o.checksum == "sha256:" + hashlib.sha256(body).hexdigest()
    requests = aws.requests()
    assert not [r for r in requests if "acl" in r["query"]]
    assert len([r for r in requests if "partNumber" in r["query"]]) == 2
    assert _sent_by([r for r in requests if r["method"] in ("PUT", "POST")], s3_path)
    # every single-part PUT carries the body's SHA-256, which S3 checks
    whole = [r for r in requests if r["method"] == "PUT" and "partNumber" not in r["query"]]
    assert len(whole) == len(expected) - 1 and all(r["sha256"] for r in whole)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_store_retries_then_is_transient(aws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    # A real refused connection: nothing listens on that port.
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{_closed_port()}",
                          config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    out = tmp_path / "out"
    _write(out, {"a.txt": b"a", "b.txt": b"b"})
    sleeps: list[float] = []
    with pytest.raises(TransientStorageError, match="after 3 tries"):
        upload_tree(out, S3Location("bucket", "p", client=client),
                    retry=RetryPolicy(retries=2, delay=1.0, sleep=sleeps.append))
    assert sleeps == [1.0, 2.0]
    sleeps.clear()
    with pytest.raises(TransientStorageError):
        download_many(S3Location("bucket", "p", client=client), [ObjectInfo("a.txt", 1, None)],
                      tmp_path / "dest", retry=RetryPolicy(retries=1, sleep=sleeps.append))
    assert sleeps == [2.0]


def test_small_objects_on_s3(aws, s3, s3_path: str) -> None:  # type: ignore[no-untyped-def]
    """A worker's spec, markers and logs: the same answers on both data paths."""
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    loc = S3Location(bucket, "out")
    aws.reset_requests()
    loc.write_text("done/a.json", '{"ok": true}')
    assert loc.read_text("done/a.json") == '{"ok": true}'
    assert loc.read_range("done/a.json", 1, 4) == b'"ok"'
    assert loc.read_range("done/a.json", 100, 4) == b""  # past the end: nothing, no error
    info = loc.stat("done/a.json")
    assert info is not None and info.size == 12
    assert info.etag == hashlib.md5(b'{"ok": true}').hexdigest()
    assert loc.stat("done/b.json") is None and not loc.exists("done/b.json")
    with pytest.raises(StorageError, match="does not exist"):
        loc.read_bytes("done/b.json")
    loc.delete("done/a.json")
    loc.delete("done/a.json")  # already gone: no error
    assert not loc.exists("done/a.json")
    assert _sent_by(aws.requests(), s3_path)
    with pytest.raises(StorageError, match="bucket 'bb-no-such-bucket' does not exist"):
        S3Location("bb-no-such-bucket", "out").exists("done/a.json")


def test_a_process_forked_after_obstore_was_used_still_reaches_s3(aws, s3) -> None:  # type: ignore[no-untyped-def]
    """obstore's runtime threads do not survive a fork: a forked child must not hang on it."""
    import signal

    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    S3Location(bucket, "p").write_text("a", "parent")  # obstore's runtime now runs here
    pid = os.fork()
    if pid == 0:  # the child: boto3's path, or SIGALRM if it hangs
        code = 1
        try:
            signal.alarm(30)
            loc = S3Location(bucket, "p")
            code = 0 if loc.read_text("a") == "parent" else 3
            loc.write_text("b", "child")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert S3Location(bucket, "p").read_text("b") == "child"


def test_obstore_errors_are_read_by_status_not_by_digits_in_the_endpoint() -> None:
    """A missing key on an endpoint whose port holds "412" is missing, not changed."""
    from bidsbatch.storage import S3Options
    from bidsbatch.storage.s3fast import _status, translate

    missing = FileNotFoundError("Object at location k not found: Error performing GET "
                                "http://127.0.0.1:41235/b/k in 2ms: Client error with status "
                                "404 Not Found")
    err = translate(missing, "s3://b/k", options=S3Options())
    assert "does not exist" in str(err) and "ETag" not in str(err)
    assert _status("Client error with status 412 Precondition Failed", 412)
    assert not _status("http://127.0.0.1:41235/b/k", 412)
    assert not _status("http://127.0.0.1:30403/b/k 404", 403)
