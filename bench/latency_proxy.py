#!/usr/bin/env python
"""A TCP proxy on 127.0.0.1 that gives a local server (moto) the latency of a real one.

    python bench/latency_proxy.py --target 127.0.0.1:PORT [--delay-ms 40]

prints ``PORT <n>`` and serves until killed. moto on loopback answers in
microseconds, so it cannot show what matters on real S3, where every round
trip (a ListObjectsV2 page, a GET, a PUT) is 30–100 ms away. This proxy
delays each *round trip*: the first bytes a client sends after the server
last spoke (a new request on a kept-alive connection, or the body after a
``100 Continue``, which is a round trip on S3 too) wait ``--delay-ms``
before they are forwarded; the rest of a request and every response byte
pass at once. Connections are many and independent (asyncio), so 16 requests
in flight wait 40 ms together, as on S3, not one after another.

Not modelled: bandwidth limits, TCP slow start, the TLS handshake (one or
two more round trips per new connection), S3's per-prefix request rates.

Benchmarks use :func:`start`, a context manager that runs the proxy in its
own process (it must not share the GIL with the client it slows down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                delay: float, turn: dict[str, bool], client_side: bool) -> None:
    try:
        while data := await reader.read(1 << 16):
            if client_side:
                if turn["server_spoke"]:
                    turn["server_spoke"] = False
                    if delay:
                        await asyncio.sleep(delay)
            else:
                turn["server_spoke"] = True
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(target_host: str, target_port: int, delay: float, port: int) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        turn = {"server_spoke": True}  # the first request waits too
        await asyncio.gather(
            _pipe(client_r, server_w, delay=delay, turn=turn, client_side=True),
            _pipe(server_r, client_w, delay=delay, turn=turn, client_side=False))

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@dataclass
class Proxy:
    """A running proxy process: its URL, and how to stop it (by its pid)."""

    process: subprocess.Popen[str]
    port: int
    delay_ms: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def start(target_url: str, delay_ms: float) -> Iterator[Proxy]:
    """Run a proxy in front of ``target_url`` (``http://127.0.0.1:PORT``) while in the block."""
    hostport = target_url.split("://", 1)[-1].rstrip("/")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--target", hostport,
                             "--delay-ms", str(delay_ms)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        yield Proxy(proc, int(line.split()[1]), delay_ms)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="HOST:PORT of the server (127.0.0.1 only)")
    ap.add_argument("--delay-ms", type=float, default=40.0, help="delay per round trip")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        ap.error("the target must be on 127.0.0.1")
    asyncio.run(_serve(host, int(port), args.delay_ms / 1000, args.port))


if __name__ == "__main__":
    main()
