"""Where data lives, and moving it: knows nothing of runs.

``base.py`` the :class:`Location` interface (with bulk methods a store may
override) and the values it takes and returns; ``local.py`` and ``s3.py`` the
two locations; ``transfer.py`` verified parallel downloads and uploads. The S3 ones
are imported when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import UsageError
from .base import (
    Listing,
    Location,
    ObjectInfo,
    OutputFile,
    S3Options,
    hostile_reason,
    safe_key,
)
from .local import LocalLocation, atomic_write

if TYPE_CHECKING:
    from .s3 import S3Location, make_s3_client

#: Names of the S3 module, imported when first asked for: a local run's ``status`` and the
#: local worker read specs and write files without the S3 client's code.
_FROM_S3 = frozenset({"S3Location", "make_s3_client"})


def __getattr__(name: str) -> Any:
    if name in _FROM_S3:
        from . import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_location(uri: str | Path, *, s3: S3Options = S3Options(), client: Any = None) -> Location:
    """The :class:`Location` for a URI: ``s3://bucket/prefix``, ``file://path`` or a path."""
    text = str(uri)
    if text.startswith("s3://"):
        from .s3 import S3Location

        parsed = urlparse(text)
        return S3Location(parsed.netloc, parsed.path.lstrip("/"), options=s3, client=client)
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"file URI with a host is not supported: {text}")
        return LocalLocation(Path(parsed.path))
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise UsageError(
            f"unsupported location scheme {scheme!r} in {text}",
            hint="use a local path, file://PATH or s3://BUCKET/PREFIX",
        )
    return LocalLocation(Path(text))


__all__ = ["Listing", "LocalLocation", "Location", "ObjectInfo", "OutputFile", "S3Location",
           "S3Options", "atomic_write", "hostile_reason", "make_s3_client", "open_location",
           "safe_key"]
