"""bidsbatch: run a BIDS App over every scan of a BIDS dataset, in parallel.

The Python API::

    import bidsbatch
    dataset = bidsbatch.crawl("s3://openneuro.org/ds000001", no_sign_request=True)
    plan = bidsbatch.plan(dataset, "s3://my-bucket/derivatives", pipeline="m2g")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bidsbatch")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
