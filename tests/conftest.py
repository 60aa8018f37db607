"""Shared fixtures: a real moto server on 127.0.0.1, an isolated AWS environment,
and a helper that runs the ``bidsbatch`` CLI as a user would (a subprocess)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import moto_server
from slurm_cluster import slurm  # noqa: F401 (the one-node Slurm cluster, session-wide)

pytest_plugins = ["containers_fixture", "cwl_fixture"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIDS_EXAMPLES = SHARED / "bids-examples"
BIN = Path(sys.executable).parent

#: Fake but well-formed credentials: the tests check that none of these leak.
FAKE_KEY_ID = "AKIAFAKEBIDSBATCH1234"
FAKE_SECRET = "fakeSecret/bidsbatch+DoNotLeak0123456789ab"
FAKE_TOKEN = "fakeSessionToken-bidsbatch-DoNotLeak"


@contextlib.contextmanager
def moto_running(**env: str) -> Iterator[moto_server.MotoServer]:
    """A moto server process with extra server-side settings, stopped at the end."""
    server = moto_server.start(env={"MOTO_ALLOW_NONEXISTENT_REGION": "true", **env})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto() -> Iterator[moto_server.MotoServer]:
    """One moto server process for the whole test session."""
    with moto_running() as server:
        yield server


@pytest.fixture(scope="session")
def moto_iam() -> Iterator[moto_server.MotoServer]:
    """A moto server that knows AWS managed policies (the instance role attaches one).

    Separate from ``moto``: loading them makes every reset ~0.6 s slower. Modules
    that need it override ``moto`` with it.
    """
    with moto_running(MOTO_IAM_LOAD_MANAGED_POLICIES="true") as server:
        yield server


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test: no real AWS config, its own bidsbatch home and config dir."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "BIDSBATCH_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("BIDSBATCH_HOME", str(tmp_path / "bidsbatch-home"))
    monkeypatch.setenv("BIDSBATCH_CONFIG_DIR", str(tmp_path / "bidsbatch-config"))


@pytest.fixture
def aws(moto: moto_server.MotoServer, monkeypatch: pytest.MonkeyPatch) -> moto_server.MotoServer:
    """The standard AWS variables pointing at the moto server, with fake credentials."""
    moto.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    return moto


@pytest.fixture
def s3(aws: moto_server.MotoServer):  # type: ignore[no-untyped-def]
    """A boto3 S3 client on the moto server (for test set-up and checks)."""
    import boto3

    return boto3.client("s3", endpoint_url=aws.url, region_name="us-east-1")


def upload_tree(s3_client, root: Path, bucket: str, prefix: str = "") -> int:  # type: ignore[no-untyped-def]
    """Copy a local folder to s3://bucket/prefix (creating the bucket); return the count."""
    with contextlib.suppress(s3_client.exceptions.BucketAlreadyOwnedByYou):
        s3_client.create_bucket(Bucket=bucket)
    n = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = path.relative_to(root).as_posix()
            s3_client.upload_file(str(path), bucket, f"{prefix}/{key}" if prefix else key)
            n += 1
    return n


def unique_bucket() -> str:
    return f"bb-{uuid.uuid4().hex[:12]}"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 300, input: str | None = None) -> CliResult:
    """Run ``bidsbatch ARGS`` as a user would: the installed console script, a new process."""
    exe = shutil.which("bidsbatch", path=str(BIN)) or "bidsbatch"
    proc = subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
        timeout=timeout,
        input=input,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    return run_cli
