"""Container start overhead per scan: podman vs a bare process (and Apptainer's SIF cache).

Runs the same tiny app (busybox ``true``) N times as a bare process and through
bidsbatch's podman command line (``podman run --rm --pull=never --network none
--cpus --memory -v …:ro``), interleaved, and prints the median per run. With
``--apptainer-command`` (a working Apptainer client), also times building a SIF
once and reusing it from the cache vs building it for every scan.

    .venv/bin/python bench/bench_containers.py --reps 10
    .venv/bin/python bench/bench_containers.py --reps 5 --apptainer-command \
        "podman run --rm --privileged --network=none -v /tmp:/tmp \
         --env 'APPTAINERENV_*' localhost/bidsbatch-test-apptainer:sid apptainer"

Needs root podman with tests/containers_fixture.py's settings (it builds the
busybox image the tests use).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import containers_fixture

from bidsbatch.containers import make_runtime
from bidsbatch.containers.base import Bind, ContainerRequest, Entrypoint, Limits


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--apptainer-command", metavar="'CMD ARGS'",
                        help="the apptainer client, one shell-quoted string")
    parser.add_argument("--sif-image", help="the podman image to build a SIF of "
                        "(default: the busybox test image)")
    ns = parser.parse_args()
    podman, why = containers_fixture.find_podman()
    if podman is None:
        print(f"skipped: {why}")
        return 1
    image = containers_fixture.build_busybox(podman)
    runtime = make_runtime("podman")
    with tempfile.TemporaryDirectory() as tmp:
        bids, out, work = Path(tmp, "bids"), Path(tmp, "out"), Path(tmp, "work")
        for folder in (bids, out, work):
            folder.mkdir()
        request = ContainerRequest(
            image=image, argv=["/bin/sh", "-c", "true"], binds=[Bind(bids, "/bids"),
                                                    Bind(out, "/out", read_only=False),
                                                    Bind(work, "/work", read_only=False)],
            env={"OMP_NUM_THREADS": "1"}, limits=Limits(cpus=1, memory_mib=256),
            entrypoint=Entrypoint.REPLACE)
        inv = runtime.invocation(request)
        bare, contained = [], []
        for _ in range(ns.reps):
            bare.append(timed(["/bin/busybox", "true"]))
            contained.append(timed(inv.argv, inv.env))
    b, c = statistics.median(bare), statistics.median(contained)
    print(f"| bare process | {b * 1000:.1f} ms |")
    print(f"| podman run --rm (bidsbatch's command line) | {c * 1000:.0f} ms |")
    print(f"| overhead per scan | {(c - b) * 1000:.0f} ms |")
    if ns.apptainer_command:
        rt = make_runtime("apptainer", command=shlex.split(ns.apptainer_command))
        with tempfile.TemporaryDirectory() as cache:
            archive = Path(cache, "img.tar")
            podman.run("save", "--format", "docker-archive", "-o", str(archive),
                       ns.sif_image or image)
            ref = f"docker-archive:{archive}"
            rt.image_cache = Path(cache, "sif")
            once = timed_call(lambda: rt.ensure_image(ref, pull=True))
            again = [timed_call(lambda: rt.ensure_image(ref, pull=False))
                     for _ in range(ns.reps)]
            sif = rt.ensure_image(ref, pull=False).runs
            with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
                for sub in ("bids", "out", "work"):
                    Path(tmp, sub).mkdir()
                req = ContainerRequest(
                    image=sif, argv=["/bin/sh", "-c", "true"],
                    binds=[Bind(Path(tmp, "bids"), "/bids"),
                           Bind(Path(tmp, "out"), "/out", read_only=False),
                           Bind(Path(tmp, "work"), "/work", read_only=False)])
                inv = rt.invocation(req)
                runs = [timed(inv.argv, inv.env) for _ in range(ns.reps)]
        print(f"| apptainer: SIF built (once per image digest) | {once:.1f} s |")
        print(f"| apptainer: SIF found in the cache (every scan) | "
              f"{statistics.median(again) * 1000:.1f} ms |")
        print(f"| apptainer exec of the SIF (per scan, launcher included) | "
              f"{statistics.median(runs) * 1000:.0f} ms |")
    return 0


def timed_call(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
