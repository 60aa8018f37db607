"""What each succeeded scan used and wrote, from its completion marker, kept in the ledger.

The worker records the app's peak memory and CPU time in the marker
(:mod:`bidsbatch.usage`), with the outputs it uploaded. ``cost RUN``,
``cost suggest`` and the report read them; a marker is read once (one GET on
S3, in parallel) and its figures are kept in the ledger's meta table, read
again only when the scan ran again since.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from .cost_actual import S3Requests, s3_requests
from .errors import BidsbatchError
from .ledger import Ledger
from .markers import read_marker
from .runs import RunDir
from .states import ScanState
from .usage import AppUsage

USAGE_KEY = "scan_usage"


@dataclass(frozen=True)
class ScanUsage:
    """One succeeded scan: what its app used, what its worker uploaded."""

    scan_id: str
    attempts: int  # the ledger's attempts when the marker was read
    usage: AppUsage | None
    output_sizes: tuple[int, ...]

    def to_json(self) -> dict[str, object]:
        return {"attempts": self.attempts, "output_sizes": list(self.output_sizes),
                "usage": asdict(self.usage) if self.usage else None}

    @classmethod
    def from_json(cls, scan_id: str, data: dict[str, object]) -> ScanUsage:
        raw = data.get("usage")
        sizes = data.get("output_sizes") or []
        return cls(scan_id=scan_id, attempts=int(str(data.get("attempts") or 0)),
                   usage=AppUsage.from_dict(raw) if isinstance(raw, dict) else None,
                   output_sizes=tuple(int(n) for n in sizes) if isinstance(sizes, list)
                   else ())


def succeeded_usage(run: RunDir, ledger: Ledger, *, max_workers: int = 32,
                    sample: int | None = None) -> dict[str, ScanUsage]:
    """scan -> its :class:`ScanUsage`, for the succeeded scans with a marker.

    ``sample``: read at most that many markers not read before, evenly spread over
    the scans (percentiles need no 10,000 GETs at the end of a run); None reads all.
    """
    cached = {k: ScanUsage.from_json(k, v)
              for k, v in (ledger.get_meta(USAGE_KEY) or {}).items()}
    done = {r.scan_id: r.attempts for r in ledger.scans(states=(ScanState.SUCCEEDED,))}
    todo = [s for s, n in done.items() if s not in cached or cached[s].attempts != n]
    if sample is not None and len(todo) > sample:
        step = len(todo) / sample
        todo = [todo[int(i * step)] for i in range(sample)]
    if todo:
        output = run.info().open_output()

        def read(scan_id: str) -> ScanUsage | None:
            marker = read_marker(output, scan_id)
            if marker is None:
                return None
            return ScanUsage(scan_id=scan_id, attempts=done[scan_id], usage=marker.usage,
                             output_sizes=tuple(o.size for o in marker.outputs))

        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo)))) as pool:
            for item in pool.map(read, todo):
                if item is not None:
                    cached[item.scan_id] = item
        ledger.set_meta(USAGE_KEY, {k: v.to_json() for k, v in sorted(cached.items())})
    return {k: v for k, v in cached.items() if k in done}


def s3_requests_of(run: RunDir, ledger: Ledger, usage: dict[str, ScanUsage],
                   scan_ids: Iterable[str]) -> dict[str, S3Requests]:
    """Each scan's S3 requests: its inputs from its spec, its outputs from its marker."""
    info = run.info()
    dataset_s3 = info.dataset.startswith("s3://")
    output_s3 = info.output.startswith("s3://")
    if not dataset_s3 and not output_s3:
        return {}
    attempts = {r.scan_id: r.attempts for r in ledger.scans()}
    succeeded = {r.scan_id for r in ledger.scans(states=(ScanState.SUCCEEDED,))}
    typical = _typical_outputs(usage)
    out: dict[str, S3Requests] = {}
    for sid in scan_ids:
        n = attempts.get(sid, 0)
        if not n:
            continue
        try:
            spec = run.spec(sid)
        except BidsbatchError:
            continue  # no spec to count from (a rebuilt or hand-made run): not priced
        done = usage.get(sid)
        # A succeeded scan whose marker was not read wrote about what the others did.
        outputs = done.output_sizes if done else (typical if sid in succeeded else None)
        out[sid] = s3_requests(input_sizes=[f.size for f in spec.inputs],
                               output_sizes=outputs,
                               dataset_on_s3=dataset_s3, output_on_s3=output_s3, attempts=n)
    return out


def _typical_outputs(usage: dict[str, ScanUsage]) -> tuple[int, ...] | None:
    """The outputs of an average read scan: its mean count of files of the mean size."""
    if not usage:
        return None
    files = sum(len(u.output_sizes) for u in usage.values())
    count = round(files / len(usage))
    if not count:
        return ()
    mean = sum(sum(u.output_sizes) for u in usage.values()) // max(1, files)
    return (int(mean),) * count
