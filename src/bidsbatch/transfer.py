"""Parallel, verified transfers between a Location and a local folder."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MiB = 1024 * 1024


@lru_cache(maxsize=1)
def transfer_config() -> Any:
    """The s3transfer settings for one file: multipart/ranged above 16 MiB."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=16 * MiB,
        multipart_chunksize=16 * MiB,
        max_concurrency=8,
        use_threads=True,
    )
