"""The user's container settings: ``config.toml`` in bidsbatch's config folder.

::

    [container]
    runtime = "apptainer"                  # default for pipelines with an image
    fs_license_file = "~/freesurfer/license.txt"
    templateflow_home = "~/.cache/templateflow"
    image_cache = "/shared/bidsbatch/sif"  # where SIFs are built (default: state home)
    user = "1000:1000"                     # the container's user (default: yours)

    [container.commands]                   # a runtime's client, when not its plain name
    apptainer = ["singularity"]

Command-line options win over this file; this file wins over detection.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .settings import RUNTIME_NAMES

CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class UserContainerConfig:
    runtime: str | None = None
    fs_license_file: Path | None = None
    templateflow_home: Path | None = None
    image_cache: Path | None = None
    user: str | None = None
    commands: dict[str, list[str]] = field(default_factory=dict)


def config_path() -> Path:
    from ..config import config_dir

    return config_dir() / CONFIG_FILE


def default_image_cache() -> Path:
    """``$BIDSBATCH_HOME/images`` (under the state home): SIFs built once, shared by runs."""
    from ..runs import bidsbatch_home

    return bidsbatch_home() / "images"


def load_user_config(path: Path | None = None) -> UserContainerConfig:
    """The ``[container]`` table of the user's config file (empty settings without one)."""
    path = path or config_path()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UserContainerConfig()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", hint="fix or remove the file") from None
    table = doc.get("container", {})

    def fail(message: str) -> UsageError:
        return UsageError(f"{path}: {message}", hint="see the README's container section")

    if not isinstance(table, dict):
        raise fail("[container] must be a table")
    known = {"runtime", "fs_license_file", "templateflow_home", "image_cache", "user",
             "commands"}
    if set(table) - known:
        raise fail(f"[container]: unknown key(s) {', '.join(sorted(set(table) - known))}")
    runtime = table.get("runtime")
    if runtime is not None and runtime not in RUNTIME_NAMES:
        raise fail(f"container.runtime must be one of {', '.join(RUNTIME_NAMES)}")
    commands = table.get("commands", {})
    if not isinstance(commands, dict) or not all(
            k in RUNTIME_NAMES and isinstance(v, list) and v and all(isinstance(x, str) for x in v)
            for k, v in commands.items()):
        raise fail("[container.commands] maps a runtime name to its command (a list)")
    user = table.get("user")
    if user is not None:
        check_user(user, where=str(path))

    def a_path(key: str) -> Path | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise fail(f"container.{key} must be a path")
        return Path(value).expanduser()

    return UserContainerConfig(
        runtime=runtime, fs_license_file=a_path("fs_license_file"),
        templateflow_home=a_path("templateflow_home"), image_cache=a_path("image_cache"),
        user=user, commands={k: list(v) for k, v in commands.items()},
    )


def check_user(user: object, *, where: str) -> str:
    """``UID:GID`` (numbers), or a UsageError."""
    parts = str(user).split(":")
    if not isinstance(user, str) or len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"{where}: the container user must be UID:GID (numbers), not {user!r}")
    return user
