"""podman: Docker's command line, daemonless; never pulls at run time."""

from __future__ import annotations

from .base import last_line
from .docker import DockerRuntime


class PodmanRuntime(DockerRuntime):
    name = "podman"
    default_client = "podman"

    def probe(self) -> str | None:
        proc = self._run(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        return None if proc.returncode == 0 else last_line(proc)

    def _run_options(self) -> list[str]:
        # The image was made sure of before the run: a missing one must fail, not
        # reach for a registry from every scan.
        return ["--pull=never"]

    def _gpu_options(self, gpus: int) -> list[str]:
        # The NVIDIA Container Toolkit's CDI names (nvidia-ctk cdi generate).
        return ["--device", "nvidia.com/gpu=all"]

    def remove(self, name: str) -> None:
        self._run(["rm", "-f", "--time", "0", name], timeout=60)
