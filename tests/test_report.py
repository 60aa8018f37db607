"""The HTML report (written by `run` and `report`), looked at by a real headless Chromium,
and the live progress display of `run` and `status --watch`.

Chromium is Debian's (tests/browser.py finds it, or installs it when root with CI set);
the browser tests skip with the reason when it cannot be had. A screenshot of a
300-scan Batch-style report lands in test-artifacts/report.png (and -dark, -local).
"""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from browser import Browser, dump_dom, find_chromium
from conftest import REPO, run_cli
from rich.console import Console

from bidsbatch.ledger import Ledger, ScanRecord
from bidsbatch.pipelines import load_pipeline
from bidsbatch.report import REPORT_FILE, collect, render, write_report
from bidsbatch.runner import Snapshot
from bidsbatch.runs import RunDir
from bidsbatch.specs import RunInfo
from bidsbatch.synth import make_dataset
from bidsbatch.timestamps import iso

sys.path.insert(0, str(REPO / "bench"))
from bench_report import synthetic_run  # the benchmark's run maker

ARTIFACTS = REPO / "test-artifacts"
#: A reference that makes a browser fetch something: src=, url(), @import, <link href>.
RESOURCE_REF = re.compile(
    r"""(?:\bsrc\s*=\s*["']?|url\(\s*["']?|@import\s+["']?|<link\b[^>]*\bhref\s*=\s*["']?)"""
    r"""\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="session")
def chromium() -> str:
    path, why = find_chromium()
    if not path:
        pytest.skip(f"no headless Chromium: {why}")
    return path


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> tuple[RunDir, str]:  # type: ignore[no-untyped-def]
    """A real local run of the demo pipeline: 6 scans, participant 02's two fail."""
    base = tmp_path_factory.mktemp("local-run")
    ds = make_dataset(base / "ds", subjects=3, sessions=("1", "2"), shape=(12, 12, 8),
                      n_volumes=8)
    res = run_cli("run", "--pipeline", "demo", str(ds), str(base / "out"), "--json",
                  env={"BIDSBATCH_DEMO_FAIL": "02", "BIDSBATCH_HOME": str(base / "home"),
                       "BIDSBATCH_CONFIG_DIR": str(base / "config")})
    assert res.returncode == 1, res.stderr  # two scans failed
    return RunDir(Path(json.loads(res.stdout)["run_dir"])), res.stderr


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory) -> RunDir:  # type: ignore[no-untyped-def]
    """A made-up AWS Batch run of 300 scans (Spot and On-Demand, reclaims, failures)."""
    run = synthetic_run(tmp_path_factory.mktemp("batch-run"), scans=300, seed=7)
    write_report(run)
    return run


def test_run_writes_the_report_and_prints_its_path(local_run: tuple[RunDir, str]) -> None:
    run, stderr = local_run
    path = run.path / REPORT_FILE
    assert f"report: {path}" in stderr
    text = path.read_text()
    for scan in run.info().scans:
        assert scan in text
    assert "<svg" in text and "Timeline" in text and "Run time per attempt" in text
    assert "CPU time" in text and "no dollars" in text  # local: no prices
    # failures: the tail of each failed scan's log, escaped
    assert text.count('<details class="failure"') == 2
    assert "injected failure (sub-02 is in BIDSBATCH_DEMO_FAIL)" in text
    # log links are relative to the report and point at the files
    links = re.findall(r'href="(logs/[^"]+)"', text)
    assert links and all((run.path / link).is_file() for link in links)
    assert not RESOURCE_REF.search(text)
    assert "http://" not in text and "https://" not in text  # nothing on the network at all


def test_report_command_writes_elsewhere_with_relative_links(local_run: tuple[RunDir, str],
                                                             tmp_path: Path) -> None:
    run, _ = local_run
    out = tmp_path / "share" / "r.html"
    res = run_cli("report", str(run.path), "-o", str(out), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["report"] == str(out)
    text = out.read_text()
    links = re.findall(r'href="([^"#]+\.log)"', text)
    assert links and all((out.parent / link).resolve().is_file() for link in links)
    blob = json.loads(re.search(r'id="scan-data">(.*?)</script>', text).group(1))
    assert {r[0] for r in blob["rows"]} == set(run.info().scans)
    assert all((out.parent / (blob["linkPrefix"] + r[6])).resolve().is_file()
               for r in blob["rows"])


def test_batch_report_prices_and_links_to_cloudwatch(batch_run: RunDir) -> None:
    text = (batch_run.path / REPORT_FILE).read_text()
    data = collect(batch_run)
    assert data.cost.priced and data.cost.dollars and "Spot reclaimed" in text
    assert f"${data.cost.dollars:,.2f}" in text
    blob = json.loads(re.search(r'id="scan-data">(.*?)</script>', text).group(1))
    assert blob["linkPrefix"].startswith(
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        "#logsV2:log-groups/log-group/$252Fbidsbatch$252Fdefault/log-events/m2g$252Fdefault")
    assert "The log is in CloudWatch Logs" in text
    assert not RESOURCE_REF.search(text)  # console links are anchors, never loaded


def test_everything_from_the_run_is_escaped(tmp_path: Path) -> None:
    hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)> & more"
    run = RunDir(tmp_path / "run")
    run.logs_dir.mkdir(parents=True)
    info = RunInfo(run_id="demo-<b>x</b>", dataset="/data/<ds>", dataset_name="<i>name</i>",
                   output="/out", pipeline=load_pipeline("demo").to_dict(),
                   pipeline_source="preset demo", selection={}, scans=["sub-01"],
                   bidsbatch_version="0.1.0")
    run.run_json.write_text(info.to_json())
    (run.logs_dir / "sub-01.log").write_text("line one\n" + hostile + "\n")
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(["sub-01"])
        ledger.set_meta("executor", "local")
        ledger.start_attempt("sub-01", started_at=iso(datetime(2026, 1, 1, tzinfo=UTC)))
        ledger.finish_attempt("sub-01", state="failed", exit_code=2, reason=hostile,
                              cpu_seconds=1.0,
                              finished_at=iso(datetime(2026, 1, 1, 0, 1, tzinfo=UTC)))
    text = write_report(run).read_text()
    assert hostile not in text and "<script>alert" not in text and "<img" not in text
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in text  # the reason and the log tail
    assert "<b>x</b>" not in text and "&lt;i&gt;name&lt;/i&gt;" in text
    blob = re.search(r'id="scan-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in blob and json.loads(blob)["rows"][0][7] == hostile


def test_a_large_run_is_binned_and_stays_small(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path, scans=3000, seed=3)
    text = render(collect(run), out_dir=run.path)
    timeline = text[text.index("<h2>Timeline"):text.index("Run time per attempt")]
    assert "binned: each row is 30 scans" in timeline
    assert timeline.count("<rect") <= 2500  # vs 3,000+ attempts
    for scan in run.info().scans:
        assert scan in text
    assert len(text.encode()) < 1_000_000


# --------------------------------------------------------------------------- in Chromium


def test_report_in_chromium_local_run(chromium: str, local_run: tuple[RunDir, str]) -> None:
    run, _ = local_run
    with Browser(chromium) as browser:
        page = browser.load((run.path / REPORT_FILE).as_uri())
        assert page.requests == [page.url], "the report asked for something else"
        assert page.errors == []
        assert browser.evaluate("document.getElementById('scans').dataset.ready") == "6"
        assert browser.evaluate("document.querySelectorAll('svg.chart').length") == 2
        assert browser.evaluate("document.querySelectorAll('#scans tbody tr').length") == 6
        # click "Scan" twice: descending scan ids
        first = ("document.querySelector('#scans tbody tr td').textContent")
        browser.evaluate("document.querySelector('th[data-col=\"0\"]').click()")
        browser.evaluate("document.querySelector('th[data-col=\"0\"]').click()")
        assert browser.evaluate(first) == "sub-03_ses-2"
        # filter by state
        browser.evaluate("var s = document.getElementById('state-filter'); s.value = 'failed';"
                         " s.dispatchEvent(new Event('change'))")
        failed = browser.evaluate("Array.from(document.querySelectorAll('#scans tbody tr'))"
                                  ".map(r => r.cells[0].textContent)")
        assert failed == ["sub-02_ses-2", "sub-02_ses-1"]
        browser.screenshot(ARTIFACTS / "report-local.png")
        assert len(browser.pdf()) > 10_000  # prints


def test_report_in_chromium_batch_run(chromium: str, batch_run: RunDir) -> None:
    path = batch_run.path / REPORT_FILE
    with Browser(chromium) as browser:
        page = browser.load(path.as_uri())
        assert page.requests == [page.url] and page.errors == []
        assert browser.evaluate("document.getElementById('scans').dataset.ready") == "300"
        rows = "document.querySelectorAll('#scans tbody tr').length"
        assert browser.evaluate(rows) == 100  # paged
        browser.evaluate("document.getElementById('next').click()")
        assert browser.evaluate("document.getElementById('pager-info').textContent") \
            == "101–200 of 300"
        # sort by duration: the shortest scan first
        shortest = min((r for r in collect(batch_run).scans if r.duration_seconds is not None),
                       key=lambda r: (r.duration_seconds, r.scan_id))
        browser.evaluate("document.querySelector('th[data-col=\"3\"]').click()")
        assert browser.evaluate("document.querySelector('#scans tbody tr td').textContent") \
            == shortest.scan_id
        browser.evaluate("window.scrollTo(0, 0); document.querySelector('th[data-col=\"0\"]')"
                         ".click()")
        browser.screenshot(ARTIFACTS / "report.png")
        browser.load(path.as_uri(), dark=True)
        assert browser.evaluate("getComputedStyle(document.body).backgroundColor") \
            == "rgb(18, 22, 29)"
        browser.screenshot(ARTIFACTS / "report-dark.png", full_page=False)
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_dump_dom_through_a_dead_proxy(chromium: str, batch_run: RunDir) -> None:
    """With every request sent to a proxy nothing listens on, the page is still whole."""
    dom = dump_dom(chromium, (batch_run.path / REPORT_FILE).as_uri())
    assert 'data-ready="300"' in dom  # the script ran over the JSON blob
    assert dom.count('<svg class="chart"') == 2 and "Timeline" in dom
    assert "Succeeded" in dom and "Cost" in dom and "Failures" in dom
    assert len(re.findall(r"<tr>", dom)) >= 100


# --------------------------------------------------------------------------- live progress


def _rec(scan: str, state: str, *, start: float | None = None, end: float | None = None,
         attempts: int = 1, reason: str | None = None) -> ScanRecord:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def t(m: float | None) -> str | None:
        return None if m is None else iso(t0 + timedelta(minutes=m))

    return ScanRecord(scan, state, attempts, None, t(start), t(end), None, reason, None)


def _snap(records: list[ScanRecord], elapsed: float, *, busy: bool = True) -> Snapshot:
    counts = {s: 0 for s in ("planned", "submitted", "running", "succeeded", "failed",
                             "cancelled", "skipped")}
    for r in records:
        counts[r.state] += 1
    return Snapshot(counts=counts, records=records, group_state=None, elapsed=elapsed,
                    busy=busy)


def test_live_progress_in_a_log(tmp_path: Path) -> None:
    from bidsbatch.progress import LiveProgress, throughput

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=10)
    progress = LiveProgress(title="run-x", total=10, console=console, clock=lambda: now,
                            log_every=0)
    # 10 scans started at minute 0; 4 finished by minute 10: 0.4 scans/min, 6 left: ETA 15 min.
    first = ([_rec(f"s{i}", "succeeded", start=0, end=2 + 2 * i) for i in range(3)]
             + [_rec("s3", "failed", start=0, end=9, reason="exit 3: boom")]
             + [_rec(f"s{i}", "running", start=0) for i in range(4, 10)])
    assert throughput(first, now=now) == pytest.approx(0.4)
    with progress:
        progress.update(_snap(first, 600))
        progress.update(_snap(first, 601))  # the failure is reported once
        again = [*first[:3], _rec("s3", "running", start=9.5, attempts=2), *first[4:]]
        progress.update(_snap(again, 605))
        done = [_rec(f"s{i}", "succeeded", start=0, end=10) for i in range(10)]
        progress.update(_snap(done, 700, busy=False))
    text = out.getvalue()
    assert text.count("✗ failed s3: exit 3: boom") == 1
    assert "↻ retrying s3 (attempt 2)" in text
    assert "4/10 40%" in text and "0.4 scans/min" in text and "ETA 15m00s" in text
    assert "10/10 100%" in text
    assert "finished in 11m40s: 10 succeeded" in text and "median scan 10m00s" in text
