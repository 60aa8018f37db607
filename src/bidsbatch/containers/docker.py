"""Docker: ``docker run --rm`` with the request's binds, limits, user and network."""

from __future__ import annotations

from ..errors import UsageError
from .base import (
    ContainerRequest,
    ContainerRuntime,
    Entrypoint,
    ImageError,
    ImageInfo,
    Invocation,
    last_line,
)


class DockerRuntime(ContainerRuntime):
    """The Docker CLI (and, through :class:`~.podman.PodmanRuntime`, podman's)."""

    name = "docker"
    default_client = "docker"
    #: Seconds ``rm -f`` gives a container to stop before it is killed.
    remove_timeout = 0
    keeps_containers = True

    def container_id(self, name: str) -> str | None:
        proc = self._run(["inspect", "--format", "{{.Id}}", name], timeout=10)
        cid = proc.stdout.strip() if proc.returncode == 0 else ""
        return cid or None

    def probe(self) -> str | None:
        # Asked, not looked up: a docker client without a daemon is on PATH on many hosts.
        proc = self._run(["info", "--format", "{{.ServerVersion}}"])
        return None if proc.returncode == 0 else last_line(proc)

    def invocation(self, request: ContainerRequest) -> Invocation:
        argv = [*self.client, "run", "--rm", *self._run_options()]
        if request.name:
            argv += ["--name", request.name]
        if not request.network:
            argv += ["--network", "none"]
        if request.user:
            argv += ["--user", request.user]
        limits = request.limits
        argv += ["--cpus", f"{limits.cpus:g}", "--memory", f"{limits.memory_mib}m"]
        if limits.gpus:
            argv += self._gpu_options(limits.gpus)
        for bind in request.binds:
            for part in (str(bind.source), bind.target):
                if ":" in part or "," in part:
                    raise UsageError(f"cannot bind {part!r} into a container: ':' or ',' in it",
                                     hint="use a scratch folder and asset paths without them")
            argv += ["-v", f"{bind.source}:{bind.target}" + (":ro" if bind.read_only else "")]
        argv += ["-w", request.workdir]
        for name, value in sorted(request.env.items()):
            argv += ["--env", f"{name}={value}"]
        for name in sorted(request.pass_env):
            argv += ["--env", name]  # the value comes from the client's environment
        args = request.argv[1:]
        if request.entrypoint is Entrypoint.REPLACE:
            argv += ["--entrypoint", request.argv[0]]
        argv += [request.image, *args]
        return Invocation(argv=argv, env=self._client_env(request.pass_env),
                          container=request.name)

    def _run_options(self) -> list[str]:
        return []

    def _gpu_options(self, gpus: int) -> list[str]:
        return ["--gpus", str(gpus)]

    def _image_id(self, image: str) -> str | None:
        proc = self._run(["image", "inspect", "--format", "{{.Id}}", image])
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None

    def ensure_image(self, image: str, *, pull: bool) -> ImageInfo:
        found = self._image_id(image)
        if found:
            return ImageInfo(reference=image, runs=image, digest=found, action="found")
        if not pull:
            raise ImageError(
                f"image {image} is not in {self.name}'s local images",
                hint=f"get it once with: bidsbatch image pull --pipeline PIPELINE "
                     f"--container {self.name}",
            )
        proc = self._run(["pull", image], timeout=3600)
        if proc.returncode != 0:
            raise ImageError(f"{self.name} cannot pull {image}: {last_line(proc)}",
                             hint="check the name, the registry login and the network")
        return ImageInfo(reference=image, runs=image, digest=self._image_id(image),
                         action="pulled")

    def remove(self, name: str) -> None:
        self._run(["rm", "-f", name], timeout=60)
