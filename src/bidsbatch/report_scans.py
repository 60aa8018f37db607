"""The report's per-scan details: what each scan wrote (linked) and the command that ran.

The command is the spec's argv (runtime placeholders such as ``{bids_dir}``
as planned: the worker fills them with the job's folders); the outputs are
the completion marker's list, linked as the scan's folder in the output (a
path relative to the report for a local output, the S3 console for
``s3://``). A failed scan shows its crash files instead (saved next to its
failure record, :mod:`bidsbatch.crashfiles`). Bounded: the first
:data:`MAX_DETAILS` scans (failed ones first), their markers read in
parallel, so a run of 10,000 scans costs 200 small reads, not 10,000.
"""

from __future__ import annotations

import html
import os
import posixpath
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from .crashfiles import FailureDebug, describe_crash, read_failure_debug
from .errors import BidsbatchError
from .markers import Marker, marker_key
from .states import ScanState
from .storage import Location

if TYPE_CHECKING:
    from .ledger import ScanRecord
    from .report import ReportData

MAX_DETAILS = 200
#: Crash files listed per failed scan in the report (their text is in ``bidsbatch logs``).
MAX_CRASH_LISTED = 5


@dataclass(frozen=True)
class ScanDetail:
    scan_id: str
    state: ScanState
    argv: tuple[str, ...] | None  # None: the spec cannot be read
    outputs: tuple[str, ...]  # output keys, from the completion marker
    debug: FailureDebug | None = None


def collect_details(data: ReportData) -> list[ScanDetail]:
    """The first :data:`MAX_DETAILS` scans' commands and outputs (failed scans first)."""
    chosen = sorted(data.scans, key=lambda r: r.state != ScanState.FAILED)[:MAX_DETAILS]
    try:
        output = data.info.open_output()
    except BidsbatchError:
        output = None

    def one(rec: ScanRecord) -> ScanDetail:
        try:
            argv: tuple[str, ...] | None = tuple(data.run.spec(rec.scan_id).argv)
        except BidsbatchError:
            argv = None
        outputs: tuple[str, ...] = ()
        debug = None
        if output is not None:
            if rec.state == ScanState.FAILED:
                debug = read_failure_debug(output, rec.scan_id)
            else:
                outputs = _outputs(output, rec.scan_id)
        return ScanDetail(scan_id=rec.scan_id, state=rec.state, argv=argv, outputs=outputs,
                          debug=debug)

    if not chosen:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(chosen))) as pool:
        return list(pool.map(one, chosen))


def _outputs(output: Location, scan_id: str) -> tuple[str, ...]:
    try:
        marker = Marker.from_json(output.read_bytes(marker_key(scan_id)))
    except (BidsbatchError, ValueError, TypeError, KeyError):
        return ()
    return tuple(o.key for o in marker.outputs)


def scan_folder(keys: tuple[str, ...], scan_id: str) -> str:
    """The scan's own folder among its outputs (``sub-01/ses-1``, else ``sub-01``), else the
    folder common to them all ('' when they are spread over the output)."""
    entities = scan_id.split("_")
    for n in range(len(entities), 0, -1):
        folder = "/".join(entities[:n])
        if any(k.startswith(folder + "/") for k in keys):
            return folder
    folders = [posixpath.dirname(k) for k in keys]
    return posixpath.commonpath(folders) if folders and all(folders) else ""


def output_link(output_uri: str, folder: str, *, out_dir: Path) -> str:
    """Where the scan's folder is, for a browser: relative to the report, or the S3 console."""
    if output_uri.startswith("s3://"):
        bucket, _, prefix = output_uri[len("s3://"):].partition("/")
        key = posixpath.join(prefix, folder) + "/" if prefix or folder else ""
        return (f"https://s3.console.aws.amazon.com/s3/buckets/{quote(bucket)}"
                f"?prefix={quote(key)}")
    target = Path(output_uri) / folder if folder else Path(output_uri)
    try:
        return quote(os.path.relpath(target, out_dir)) + "/"
    except ValueError:
        return target.absolute().as_uri()


def details_section(data: ReportData, *, out_dir: Path) -> str:
    """``<section>`` Outputs and commands: one row per scan (bounded)."""
    e = html.escape
    details = collect_details(data)
    if not details:
        return ""
    rows = []
    for d in details:
        if d.outputs:
            folder = scan_folder(d.outputs, d.scan_id)
            shown = (folder + "/") if folder else "the output"
            link = output_link(data.info.output, folder, out_dir=out_dir)
            inside = sum(k.startswith(folder + "/") for k in d.outputs) if folder else \
                len(d.outputs)
            rest = len(d.outputs) - inside
            where = (f'<a href="{e(link)}">{e(shown)}</a> '
                     f'<span class="muted">{inside} file(s)'
                     + (f", {rest} more elsewhere" if rest else "") + "</span>")
        elif d.debug is not None and d.debug.crash_files:
            where = f'<span class="muted">{len(d.debug.crash_files)} crash file(s)</span>'
        else:
            where = '<span class="muted">–</span>'
        command = shlex.join(d.argv) if d.argv is not None else "(spec not readable)"
        rows.append(f'<tr id="scan-{e(d.scan_id)}"><td class="scan">{e(d.scan_id)}</td>'
                    f"<td>{where}</td><td><code>{e(command)}</code></td></tr>")
    more = len(data.scans) - len(details)
    note = f"first {len(details):,} of {len(data.scans):,} (failed first)" if more > 0 \
        else f"{len(details):,}"
    return (f'<section><h2>Outputs and commands<span class="note">{note}</span></h2>'
            '<div class="tablewrap"><table id="scan-details"><thead><tr>'
            '<th scope="col">Scan</th><th scope="col">Outputs</th>'
            '<th scope="col">Command</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div></section>")


def failure_extras(data: ReportData, rec: ScanRecord) -> str:
    """A failed scan's crash files and kept scratch folder, for its Failures entry."""
    e = html.escape
    try:
        debug = read_failure_debug(data.info.open_output(), rec.scan_id)
    except BidsbatchError:
        return ""
    if debug is None:
        return ""
    items = [f"<li><code>{e(describe_crash(c))}</code></li>"
             for c in debug.crash_files[:MAX_CRASH_LISTED]]
    if len(debug.crash_files) > MAX_CRASH_LISTED:
        items.append(f"<li>{len(debug.crash_files) - MAX_CRASH_LISTED} more</li>")
    parts = []
    if items:
        parts.append(f'<p class="muted">crash files (bidsbatch logs RUN {e(rec.scan_id)} '
                     f"prints them):</p><ul>{''.join(items)}</ul>")
    if debug.kept_scratch:
        parts.append(f'<p class="muted">scratch kept: <code>{e(debug.kept_scratch)}</code>'
                     + (f" on {e(debug.host)}" if debug.host else "") + "</p>")
    return "".join(parts)
