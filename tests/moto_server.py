"""A real moto server on 127.0.0.1 in its own process, counting the requests it serves.

Run as ``python tests/moto_server.py`` it binds a free port, prints
``PORT <n>`` on stdout and serves until killed. Besides moto's own API it answers
``GET /__requests__`` (the requests seen so far, as JSON) and
``POST /__requests__/reset``. Tests and benchmarks use it to count S3 calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any


def _serve() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    moto_app = DomainDispatcherApplication(create_backend_app)
    seen: list[dict[str, str]] = []
    lock = threading.Lock()
    #: Buckets that answer 403 to a request without x-amz-request-payer (Requester Pays).
    requester_pays: set[str] = set()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/__requester_pays__":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            with lock:
                requester_pays.clear()
                requester_pays.update(json.loads(environ["wsgi.input"].read(length) or b"[]"))
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        if path == "/__requests__":
            if environ["REQUEST_METHOD"] == "POST":
                with lock:
                    seen.clear()
                body = b"{}"
            else:
                with lock:
                    body = json.dumps(seen).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if path == "/__requests__/reset":
            with lock:
                seen.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        if not path.startswith("/moto-api"):
            record = {
                "method": environ["REQUEST_METHOD"],
                "path": path,
                "query": environ.get("QUERY_STRING", ""),
                "target": environ.get("HTTP_X_AMZ_TARGET", ""),
                "host": environ.get("HTTP_HOST", ""),
                "auth": environ.get("HTTP_AUTHORIZATION", "")[:60],
                "payer": environ.get("HTTP_X_AMZ_REQUEST_PAYER", ""),
                "range": environ.get("HTTP_RANGE", ""),
                "agent": environ.get("HTTP_USER_AGENT", "")[:40],
                "sha256": environ.get("HTTP_X_AMZ_CHECKSUM_SHA256", ""),
                "t": time.time(),  # when it arrived: benchmarks time phases by the server
            }
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length and length < 256 * 1024 and environ["REQUEST_METHOD"] == "POST":
                # Keep small API bodies (Batch, IAM, ...) so tests can scan them for secrets.
                raw = environ["wsgi.input"].read(length)
                record["body"] = raw.decode("utf-8", "replace")
                import io

                environ["wsgi.input"] = io.BytesIO(raw)
            with lock:
                seen.append(record)
                bucket = path.lstrip("/").split("/", 1)[0]
                denied = (bucket in requester_pays and not record["target"]
                          and record["payer"] != "requester")
            if denied:
                # What S3 answers a request to a Requester Pays bucket that does not pay.
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied"
                        b"</Code><Message>Access Denied</Message></Error>"]
        return moto_app(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


@dataclass
class MotoServer:
    """A handle on a moto server process started by :func:`start`."""

    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, str]]:
        with urllib.request.urlopen(f"{self.url}/__requests__") as resp:
            return json.loads(resp.read())

    def reset_requests(self) -> None:
        req = urllib.request.Request(f"{self.url}/__requests__", method="POST", data=b"")
        urllib.request.urlopen(req).read()

    def requester_pays(self, *buckets: str) -> None:
        """Make ``buckets`` refuse (403) every request without ``x-amz-request-payer``."""
        req = urllib.request.Request(f"{self.url}/__requester_pays__", method="POST",
                                     data=json.dumps(list(buckets)).encode())
        urllib.request.urlopen(req).read()

    def reset(self) -> None:
        """Forget every bucket, job, role... (moto's own reset)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(req).read()
        self.reset_requests()
        self.requester_pays()

    def configure(self, config: dict[str, Any]) -> None:
        req = urllib.request.Request(
            f"{self.url}/moto-api/config",
            method="POST",
            data=json.dumps(config).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req).read()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(env: dict[str, str] | None = None) -> MotoServer:
    """Start a moto server process on 127.0.0.1 and wait until it answers."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"moto server did not start: {line!r}")
    server = MotoServer(proc, int(line.split()[1]))
    deadline = time.monotonic() + 30
    while True:
        try:
            server.requests()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.05)


if __name__ == "__main__":
    _serve()
