"""Apptainer (and Singularity): a SIF per image digest, built once into a shared cache.

Apptainer runs the app as the invoking user, as a child process of its
client (no daemon): the worker's process-group signals reach it, and nothing
outlives a killed worker. ``--containall --cleanenv`` gives it only the
variables named through ``APPTAINERENV_*``, fresh ``/tmp`` and ``/dev``, and
no home folder. CPU and memory limits are the scheduler's (Slurm's cgroups)
on the clusters Apptainer is for; GPUs come through ``--nv``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .base import (
    ContainerRequest,
    ContainerRuntime,
    Entrypoint,
    ImageError,
    ImageInfo,
    Invocation,
    last_line,
)

#: Image references Apptainer builds from as they are (a transport named).
TRANSPORTS = ("docker://", "docker-archive:", "oci-archive:", "docker-daemon:", "oras://",
              "library://", "oci:")
_PINNED = re.compile(r"@sha256:([0-9a-f]{64})$")


class ApptainerRuntime(ContainerRuntime):
    name = "apptainer"
    default_client = "apptainer"

    def __init__(self, *, command: list[str] | None = None,
                 base_env: Mapping[str, str] | None = None,
                 image_cache: Path | None = None) -> None:
        super().__init__(command=command, base_env=base_env)
        self.image_cache = image_cache

    def probe(self) -> str | None:
        proc = self._run(["--version"])
        return None if proc.returncode == 0 else last_line(proc)

    def invocation(self, request: ContainerRequest) -> Invocation:
        verb = "run" if request.entrypoint is Entrypoint.KEEP else "exec"
        argv = [*self.client, verb, "--containall", "--cleanenv", "--no-home",
                "--pwd", request.workdir]
        if os.geteuid() == 0:
            # An app started by root gets no root privileges inside (and a host
            # without CAP_SYS_RESOURCE can still run it).
            argv.append("--no-privs")
        for bind in request.binds:
            argv += ["-B", f"{bind.source}:{bind.target}" + (":ro" if bind.read_only else "")]
        if request.limits.gpus:
            argv.append("--nv")
        args = request.argv[1:] if request.entrypoint is Entrypoint.KEEP else request.argv
        argv += [request.image, *args]
        given = {**request.env, **request.pass_env}
        env = self._client_env({f"APPTAINERENV_{k}": v for k, v in given.items()})
        return Invocation(argv=argv, env=env)

    # ------------------------------------------------------------------ images

    def ensure_image(self, image: str, *, pull: bool) -> ImageInfo:
        if image.endswith(".sif") and "://" not in image:
            path = Path(image).expanduser()
            if not path.is_file():
                raise ImageError(f"SIF image {path} does not exist")
            return ImageInfo(reference=image, runs=str(path.absolute()), action="found")
        cache = self._cache()
        digest = self._digest(image, cache)
        sif = cache / f"sha256-{digest}.sif"
        if sif.is_file():
            return ImageInfo(reference=image, runs=str(sif), digest=f"sha256:{digest}",
                             action="cached")
        if not pull:
            raise ImageError(
                f"no SIF of {image} in {cache}",
                hint="build it once with: bidsbatch image pull --pipeline PIPELINE "
                     "--container apptainer",
            )
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".sif", dir=cache)
        os.close(fd)
        try:
            proc = self._run(["build", "--force", tmp, build_source(image)], timeout=7200)
            if proc.returncode != 0:
                raise ImageError(f"apptainer cannot build a SIF of {image}: {last_line(proc)}",
                                 hint="check the reference; docker:// needs the registry")
            os.replace(tmp, sif)  # whole or nothing: a scan never sees half a SIF
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return ImageInfo(reference=image, runs=str(sif), digest=f"sha256:{digest}",
                         action="built")

    def _cache(self) -> Path:
        if self.image_cache is None:
            from .userconfig import default_image_cache

            return default_image_cache()
        return self.image_cache

    def _digest(self, image: str, cache: Path) -> str:
        """The image's identity: its pinned digest, an archive's content hash, else its name.

        A tag (``nipreps/fmriprep:25.2.7``) can move: pin by digest to rebuild on change.
        """
        pinned = _PINNED.search(image)
        if pinned:
            return pinned.group(1)
        archive = _archive_path(image)
        if archive is None:
            return hashlib.sha256(image.encode()).hexdigest()
        try:
            st = archive.stat()
        except OSError as exc:
            raise ImageError(f"image archive {archive}: {exc.strerror}") from None
        # Hashing a large archive for every scan would cost seconds: remember it by
        # path, size and modification time.
        key = hashlib.sha256(f"{archive.absolute()}|{st.st_size}|{st.st_mtime_ns}".encode())
        memo = cache / "archives" / key.hexdigest()
        with contextlib.suppress(OSError):
            return memo.read_text().strip()
        h = hashlib.sha256()
        with open(archive, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(h.hexdigest())
        return h.hexdigest()


def _archive_path(image: str) -> Path | None:
    for prefix in ("docker-archive:", "oci-archive:"):
        if image.startswith(prefix):
            rest = image[len(prefix):]
            return Path(rest[2:] if rest.startswith("//") else rest)
    return None


def build_source(image: str) -> str:
    """What ``apptainer build`` is given: the reference, with ``docker://`` when none is named."""
    archive = _archive_path(image)
    if archive is not None:
        transport = image.split(":", 1)[0]
        return f"{transport}://{archive.absolute()}"
    return image if image.startswith(TRANSPORTS) else f"docker://{image}"
