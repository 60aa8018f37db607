"""No container: the app's argv runs as a plain process on this machine."""

from __future__ import annotations

from .base import ContainerRequest, ContainerRuntime, ImageInfo, Invocation


class NoRuntime(ContainerRuntime):
    """The command runs here, with the worker's environment (minus credentials).

    What AWS Batch uses inside its job (the job *is* the image), and the demo.
    """

    name = "none"
    default_client = ""

    def probe(self) -> str | None:
        return None

    def invocation(self, request: ContainerRequest) -> Invocation:
        return Invocation(argv=list(request.argv), env={**request.env, **request.pass_env})

    def ensure_image(self, image: str, *, pull: bool) -> ImageInfo:
        return ImageInfo(reference=image, runs="(this machine: no container)", action="none")
