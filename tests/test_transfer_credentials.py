"""The obstore data path gets its identity as boto3 would: container role, profile, unsigned.

Real parts only: the moto server, a credentials endpoint on 127.0.0.1 shaped like
ECS's (what AWS Batch containers use), a shared credentials file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import FAKE_KEY_ID, FAKE_SECRET, unique_bucket

from bidsbatch.storage import S3Location, S3Options
from bidsbatch.storage.s3fast import fast_config
from bidsbatch.storage.transfer import download_many, upload_tree

ROLE_KEY_ID = "ASIACONTAINERROLE123"


@pytest.fixture
def container_role() -> Iterator[tuple[str, list[str]]]:
    """A container credentials endpoint on 127.0.0.1: its URL and the tokens it was shown."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.headers.get("Authorization", ""))
            body = json.dumps({"AccessKeyId": ROLE_KEY_ID, "SecretAccessKey": FAKE_SECRET,
                               "Token": "role-session-token",
                               "Expiration": "2099-01-01T00:00:00Z"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/credentials/job", asked
    finally:
        server.shutdown()
        server.server_close()


def _round_trip(s3, tmp_path: Path, location: S3Location) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    (src / "sub-01").mkdir(parents=True)
    (src / "sub-01" / "a.txt").write_bytes(b"hello")
    outputs = upload_tree(src, location)
    assert [o.key for o in outputs] == ["sub-01/a.txt"]
    download_many(location, location.walk(), tmp_path / "dest")
    assert (tmp_path / "dest" / "sub-01" / "a.txt").read_bytes() == b"hello"


def _data_requests(aws) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return [r for r in aws.requests() if r["agent"].startswith("object_store")]


def test_container_role(aws, s3, container_role, tmp_path: Path,  # type: ignore[no-untyped-def]
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, asked = container_role
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
    token = tmp_path / "token"
    token.write_text("pod-identity-token")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token))
    config = fast_config("b", S3Options())
    assert config is not None and config.native_credentials  # object_store's own provider
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    aws.reset_requests()
    _round_trip(s3, tmp_path, S3Location(bucket, "out"))
    sent = _data_requests(aws)
    assert set(asked) == {"pod-identity-token"} and sent
    assert all(f"Credential={ROLE_KEY_ID}/" in r["auth"] for r in sent)


def test_profile_credentials_come_from_botocore(aws, s3, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(f"[work]\naws_access_key_id = {FAKE_KEY_ID}\n"
                     f"aws_secret_access_key = {FAKE_SECRET}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_PROFILE", "work")
    config = fast_config("b", S3Options())
    assert config is not None and not config.native_credentials
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    aws.reset_requests()
    _round_trip(s3, tmp_path, S3Location(bucket, "out"))
    sent = _data_requests(aws)
    assert sent and all(f"Credential={FAKE_KEY_ID}/" in r["auth"] for r in sent)


def test_unsigned_reads_of_a_public_bucket(aws, s3, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = unique_bucket()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="ds/sub-01/a.txt", Body=b"open data")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    location = S3Location(bucket, "ds", options=S3Options(no_sign_request=True))
    items = location.walk()
    aws.reset_requests()
    download_many(location, items, tmp_path / "dest")
    assert (tmp_path / "dest" / "sub-01" / "a.txt").read_bytes() == b"open data"
    sent = _data_requests(aws)
    assert sent and not any(r["auth"] for r in sent)


def test_where_obstore_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert fast_config("b", S3Options()) is not None
    monkeypatch.setenv("BIDSBATCH_S3_TRANSFER", "boto3")  # the user's way out
    assert fast_config("b", S3Options()) is None
    monkeypatch.delenv("BIDSBATCH_S3_TRANSFER")
    monkeypatch.delenv("AWS_REGION")  # AWS itself, region unknown: boto3 follows redirects
    assert fast_config("b", S3Options()) is None
