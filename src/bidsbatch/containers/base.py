"""The container interface: one typed request in, one argv list out, per runtime.

A :class:`ContainerRequest` says what the app needs (image, argv, binds,
environment, working directory, resources, user, network, entrypoint
handling); a :class:`ContainerRuntime` turns it into an :class:`Invocation`:
the argv of the runtime's client and the environment that client runs in.
The contract's variables are given on the command line (``--env NAME=VALUE``:
nothing secret, they are in the spec); variables passed through from the
worker's environment are only named there, their values travel in the
client's environment (Apptainer: ``APPTAINERENV_NAME`` for both).
"""

from __future__ import annotations

import enum
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..credentials import CREDENTIAL_VARIABLES
from ..errors import BidsbatchError

#: Seconds a runtime gets to answer "are you usable?" (``podman info``, ``docker info``).
PROBE_TIMEOUT = 20.0


class Entrypoint(enum.StrEnum):
    """How the pipeline's command meets the image's ENTRYPOINT.

    ``replace``: the command is a whole command line; its first word replaces the
    image's entrypoint (``--entrypoint``; Apptainer ``exec``). ``keep``: the image's
    entrypoint is the app (BIDS App images: ``nipreps/fmriprep``); the command's
    first word names it and is dropped, the rest are the entrypoint's arguments
    (Apptainer ``run``). Either way the app never sees ``app app …``.
    """

    REPLACE = "replace"
    KEEP = "keep"


@dataclass(frozen=True)
class Bind:
    """A host folder or file seen inside the container at ``target``."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Limits:
    """What the container may use: the pipeline's resources."""

    cpus: float = 1.0
    memory_mib: int = 2048
    gpus: int = 0


@dataclass(frozen=True)
class ContainerRequest:
    """Everything a runtime needs to run one app once."""

    image: str
    argv: list[str]
    binds: list[Bind] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Variables passed through from the worker's environment: named on the command
    #: line, their values only in the client's environment (a token never in a log).
    pass_env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/work"
    limits: Limits = field(default_factory=Limits)
    user: str | None = None  # "UID:GID"; None: the image's user
    network: bool = False
    entrypoint: Entrypoint = Entrypoint.REPLACE
    name: str | None = None  # a container name, so that it can be stopped by name


@dataclass(frozen=True)
class Invocation:
    """A command to start: the argv and the environment of the process."""

    argv: list[str]
    env: dict[str, str]
    #: The container's name when the runtime keeps containers apart from its client
    #: (docker, podman): a stopped client does not stop it, removing it by name does.
    container: str | None = None


class ImageError(BidsbatchError):
    """The image cannot be had: not local, cannot be pulled, cannot be built."""


@dataclass(frozen=True)
class ImageInfo:
    """What a runtime will run for an image reference."""

    reference: str  # what the user named
    runs: str  # what the runtime is given (a local image id, a SIF path)
    digest: str | None = None
    action: str = "found"  # found, pulled, built, cached


class ContainerRuntime(ABC):
    """One container runtime (or none): probing, command lines, images."""

    #: The name users type after ``--container``.
    name: str

    def __init__(self, *, command: list[str] | None = None,
                 base_env: Mapping[str, str] | None = None) -> None:
        # The client's own command: ["podman"], or a launcher the user configured.
        self.client = list(command) if command else [self.default_client]
        self.base_env = dict(base_env or {})

    default_client: str = ""

    @abstractmethod
    def probe(self) -> str | None:
        """None when this runtime can run containers here; else why not (one line)."""

    @abstractmethod
    def invocation(self, request: ContainerRequest) -> Invocation:
        """The command that runs ``request``."""

    @abstractmethod
    def ensure_image(self, image: str, *, pull: bool) -> ImageInfo:
        """Make sure ``image`` can be run (pulling or building it when ``pull``)."""

    def remove(self, name: str) -> None:  # noqa: B027 (a no-op for runtimes without daemons)
        """Stop and remove the container ``name`` if it still exists."""

    #: Does the engine keep the container apart from its client (docker, podman)? Then
    #: the app is not the client's child, and its usage is read from its cgroup.
    keeps_containers: bool = False

    def container_id(self, name: str) -> str | None:
        """The id of the running container ``name`` (None: not running, or no engine)."""
        return None

    # ------------------------------------------------------------------ helpers

    def _run(self, args: list[str], *, timeout: float = PROBE_TIMEOUT
             ) -> subprocess.CompletedProcess[str]:
        """Run the client with ``args``; output captured. OSError/timeout become exit 127/124."""
        argv = [*self.client, *args]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, env=self._client_env())
        except FileNotFoundError:
            return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: not found")
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "",
                                               f"{argv[0]} did not answer in {timeout:g} s")
        except OSError as exc:
            return subprocess.CompletedProcess(argv, 126, "", f"{argv[0]}: {exc.strerror}")

    def _client_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in self.base_env.items() if k.upper() not in CREDENTIAL_VARIABLES}
        env.update(extra or {})
        return env


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The last non-empty line a command printed (its error, usually)."""
    lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else f"exit code {proc.returncode}"
