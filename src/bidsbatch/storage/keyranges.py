"""How many key ranges to list at once: from what the first requests measured, not a constant.

Listing many small subjects by key range (``S3Location.list_prefixes``)
costs about ``objects / 1000`` pages, plus one partial page per range. More
ranges in flight hide more latency; past the point where the slowest shared
stage is busy all the time (the client parsing pages under one GIL, or a
server that serves one page at a time, as moto does), they only add
requests. So the listing first reads one page of the whole range, and times
one request that returns (almost) nothing:

* ``small`` = the round trip and the per-request cost (latency);
* ``page - small`` = the work of a page that does not overlap with other
  pages' (parse, and on a serial server its own time);
* by Little's law, ``page / (page - small)`` requests in flight keep that work
  busy; twice that leaves room for noise. On loopback moto (page 300 ms,
  small 10 ms) that is 3 ranges; at 40 ms of latency in front of moto, 3; on
  S3 (page ~80 ms of which ~40 ms parse), 4; at 100 ms of latency, 7.

The page also says how dense the keys are (subjects per 1,000 keys), hence
how many pages are left: at least one range per ``PAGES_PER_RANGE`` pages
(a long range is a serial tail), never more ranges than pages, nor than
subjects, nor than ``max_ranges`` (the connection pool).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The longest run of pages one range reads in a row (see :func:`choose`).
PAGES_PER_RANGE = 3


@dataclass(frozen=True)
class Probe:
    """What the first requests of a listing measured."""

    small_seconds: float  # a request that returned (almost) nothing
    page_seconds: float  # the first full page
    page_keys: int  # keys on that page
    prefixes_covered: float  # prefixes that page read, the last one possibly in part


@dataclass(frozen=True)
class RangePlan:
    """The choice, kept on the location for benchmarks and ``--debug`` notes."""

    ranges: int
    pages_left: float
    in_flight: int
    probe: Probe | None


def pages_left(probe: Probe, prefixes_left: float) -> float:
    """Pages still to read, at the density of the first page."""
    per_prefix = probe.page_keys / max(probe.prefixes_covered, 1e-9)
    return prefixes_left * per_prefix / 1000


def choose(probe: Probe, *, prefixes_left: int, max_ranges: int) -> RangePlan:
    """How many ranges to split the ``prefixes_left`` prefixes into."""
    left = pages_left(probe, prefixes_left)
    page = max(probe.page_seconds, 1e-6)
    work = max(page - probe.small_seconds, 0.05 * page)
    in_flight = math.ceil(2 * page / work)
    # Each range reads its pages one after another: a range of many pages is a
    # serial tail that nothing else hides. At 1,000 subjects (21 pages) behind
    # 40 ms, 8 ranges took half the time of 2 even on moto (bench/RESULTS.md), so
    # at least one range per PAGES_PER_RANGE pages left, whatever the probe says.
    wanted = max(in_flight, math.ceil(left / PAGES_PER_RANGE))
    ranges = max(1, min(wanted, math.ceil(left), prefixes_left, max_ranges))
    return RangePlan(ranges=ranges, pages_left=left, in_flight=in_flight, probe=probe)
