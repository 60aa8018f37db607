"""One shared suite for every Location (local folder and S3), plus S3's error lines."""

from __future__ import annotations

from pathlib import Path

import moto_server
import pytest
from conftest import run_cli, unique_bucket

from bidsbatch.errors import HostileKeyError, StorageError
from bidsbatch.storage import LocalLocation, Location, S3Location, open_location, safe_key


@pytest.fixture(params=["local", "file", "s3"])
def loc(request, tmp_path: Path) -> Location:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return open_location(str(tmp_path / "store"))
    if request.param == "file":
        return open_location(f"file://{tmp_path}/store")
    s3 = request.getfixturevalue("s3")
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    return open_location(f"s3://{bucket}/some/prefix")


def test_write_read_exists_size(loc: Location) -> None:
    assert not loc.exists("a/b.txt")
    assert loc.stat("a/b.txt") is None
    loc.write_text("a/b.txt", "hello")
    assert loc.exists("a/b.txt")
    assert loc.size("a/b.txt") == 5
    assert loc.read_text("a/b.txt") == "hello"
    loc.write_bytes("a/b.txt", b"replaced")
    assert loc.read_bytes("a/b.txt") == b"replaced"
    loc.delete("a/b.txt")
    assert not loc.exists("a/b.txt")
    loc.delete("a/b.txt")  # deleting twice is fine


def test_missing_key_is_a_storage_error(loc: Location) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        loc.read_bytes("nope.txt")
    with pytest.raises(StorageError, match="does not exist"):
        loc.size("nope.txt")


def test_listing_with_and_without_delimiter(loc: Location) -> None:
    for key in ("top.txt", "sub-01/a.txt", "sub-01/x/b.txt", "sub-010/c.txt"):
        loc.write_text(key, key)
    level = loc.list("", delimiter="/")
    assert [o.key for o in level.objects] == ["top.txt"]
    assert sorted(level.prefixes) == ["sub-01/", "sub-010/"]
    sub = loc.list("sub-01/", delimiter="/")
    assert [o.key for o in sub.objects] == ["sub-01/a.txt"]
    assert sub.prefixes == ["sub-01/x/"]
    assert [o.key for o in loc.walk("sub-01/")] == ["sub-01/a.txt", "sub-01/x/b.txt"]
    assert [o.key for o in loc.walk()] == [
        "sub-01/a.txt", "sub-01/x/b.txt", "sub-010/c.txt", "top.txt"]


def test_upload_download_round_trip(loc: Location, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    info = loc.upload(src, "d/data.bin")
    assert info.size == 256_000
    seen: list[int] = []
    dest = tmp_path / "dl" / "data.bin"
    got = loc.download("d/data.bin", dest, progress=seen.append)
    assert dest.read_bytes() == src.read_bytes()
    assert got.size == 256_000 and sum(seen) == 256_000
    assert not list(dest.parent.glob(".*part"))  # no temporary left behind


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a\\b", "a//b", "a/./b",
                                 "bell\x07", "C:/x", ""])
def test_hostile_keys_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(HostileKeyError):
        safe_key(key)
    with pytest.raises(HostileKeyError):
        LocalLocation(tmp_path).write_text(key, "x")
    assert list(tmp_path.parent.glob("x")) == []


def test_uris() -> None:
    assert open_location("s3://b/p/q/").uri == "s3://b/p/q"
    assert open_location("s3://b").uri == "s3://b"
    assert isinstance(open_location("file:///tmp/x"), LocalLocation)
    assert open_location("/tmp/a/../b").uri == "/tmp/b"


def test_access_denied_is_one_line(tmp_path: Path) -> None:
    """A server that checks credentials: our unknown keys are refused."""
    server = moto_server.start(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        res = run_cli("plan", "s3://private-bucket-bb/ds", str(tmp_path / "o"),
                      env={"AWS_ENDPOINT_URL": server.url, "AWS_REGION": "us-east-1",
                           "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN000000000",
                           "AWS_SECRET_ACCESS_KEY": "unknown"})
    finally:
        server.stop()
    assert res.returncode == 1
    assert res.stderr.startswith("error: access denied to s3://private-bucket-bb")
    assert "--no-sign-request" in res.stderr and "Traceback" not in res.stderr


def test_wrong_region_says_which(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    err = ClientError(
        {"Error": {"Code": "PermanentRedirect", "Message": "wrong endpoint",
                   "Region": "eu-west-1"},
         "ResponseMetadata": {"HTTPHeaders": {"x-amz-bucket-region": "eu-west-1"}}},
        "ListObjectsV2",
    )
    translated = S3Location("bkt", "ds").translate_error(err, "")
    assert "in another region" in translated.message
    assert translated.hint == "set AWS_REGION=eu-west-1"


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    res = run_cli("plan", "s3://b-bb/ds", str(tmp_path / "o"),
                  env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1",
                       "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                       "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"})
    assert res.returncode == 1
    assert "cannot reach S3" in res.stderr and "Traceback" not in res.stderr


def test_concurrent_writers_of_one_key_do_not_collide(tmp_path: Path) -> None:
    """Every scan uploads dataset_description.json: parallel writers must all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    loc = LocalLocation(tmp_path / "out")
    sources = []
    for i in range(16):
        src = tmp_path / f"src{i}.json"
        src.write_bytes(b'{"Name": "same"}' * 4096)
        sources.append(src)
    with ThreadPoolExecutor(8) as pool:
        infos = list(pool.map(lambda s: loc.upload(s, "dataset_description.json"), sources * 4))
    assert all(i.size == 16 * 4096 for i in infos)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dataset_description.json"]


def test_atomic_write_with_concurrent_writers(tmp_path: Path) -> None:
    """Two runs marking themselves "latest" at once: both writes land, no temp is left."""
    from concurrent.futures import ThreadPoolExecutor

    from bidsbatch.storage import atomic_write

    target = tmp_path / "state" / "latest"
    texts = [f"/runs/run-{i}\n" * 512 for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: atomic_write(target, t), texts * 8))
    assert target.read_text() in texts
    assert [p.name for p in target.parent.iterdir()] == ["latest"]
