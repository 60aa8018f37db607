"""bidsbatch: run a BIDS App over every scan of a BIDS dataset, in parallel.

The Python API (``api.py``)::

    import bidsbatch

    ds = bidsbatch.crawl("s3://openneuro.org/ds000114", no_sign_request=True)
    plan = bidsbatch.plan(ds, "/data/derivatives/m2g", pipeline="m2g", participants=["01"])
    result = bidsbatch.run(plan, jobs=2)   # on this machine; waits; result.status.ok
    bidsbatch.status(result.run_id)

The functions are imported on first use, so ``import bidsbatch`` stays cheap.
"""

from __future__ import annotations

from ._version import __version__  # no importlib.metadata, no typing: --version stays quick

_API = ("crawl", "plan", "run", "status", "RunResult", "RunStatus")


def __getattr__(name: str) -> object:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bidsbatch' has no attribute {name!r}")


__all__ = ["RunResult", "RunStatus", "__version__", "crawl", "plan", "run", "status"]
