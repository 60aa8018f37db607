"""The report's inline style and script: one palette, light and dark, print-friendly.

The state colours follow the terminal's (``progress.STATE_STYLE``): green
succeeded, red failed, blue running, cyan queued, yellow cancelled, dim green
skipped, grey planned; violet marks attempts lost to Spot reclaims (the
infrastructure's doing, not the pipeline's). Charts use
the same CSS classes, so dark mode and print restyle them too.
"""

from __future__ import annotations

CSS = """
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1d2433; --muted: #5f6b7a; --faint: #8a94a3;
  --line: #e3e7ee; --panel: #f6f8fb; --accent: #3b5bdb;
  --succeeded: #2f9e44; --failed: #e03131; --running: #1c7ed6; --submitted: #0c8599;
  --cancelled: #f59f00; --skipped: #8fc79b; --planned: #adb5bd; --reclaimed: #9c36b5;
  --busy: #4c6ef5;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #12161d; --fg: #e6e9ef; --muted: #a3acb9; --faint: #6e7886;
    --line: #262d38; --panel: #1a2029; --accent: #91a7ff;
    --succeeded: #51cf66; --failed: #ff6b6b; --running: #4dabf7; --submitted: #3bc9db;
    --cancelled: #fcc419; --skipped: #5c8f68; --planned: #5c636e; --reclaimed: #da77f2;
    --busy: #748ffc;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        sans-serif;
}
main { max-width: 1120px; margin: 0 auto; padding: 32px 24px 48px; }
h1 { font-size: 26px; line-height: 1.2; margin: 0 0 4px; letter-spacing: -0.01em;
     word-break: break-all; }
h2 { font-size: 17px; margin: 0 0 12px; letter-spacing: -0.005em; }
h2 .note { font-weight: 400; color: var(--muted); font-size: 13px; margin-left: 8px; }
section { margin-top: 36px; }
a { color: var(--accent); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
                   "Liberation Mono", monospace; font-size: 12.5px; }
.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
.sub { color: var(--muted); margin: 0; }
.sub b { color: var(--fg); font-weight: 600; }
.eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 11.5px;
           color: var(--muted); font-weight: 600; margin: 0 0 6px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr));
         gap: 12px; margin-top: 24px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
        padding: 12px 14px; break-inside: avoid; }
.card .label { font-size: 12.5px; color: var(--muted); }
.card .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums;
               line-height: 1.25; margin-top: 2px; white-space: nowrap; }
.card .detail { font-size: 12.5px; color: var(--muted); margin-top: 2px; }
.card.bad .value { color: var(--failed); }
.card.good .value { color: var(--succeeded); }
.statebar { display: flex; height: 12px; border-radius: 6px; overflow: hidden;
            background: var(--line); margin-top: 20px; }
.statebar span { display: block; height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 10px 0 0; padding: 0;
          list-style: none; font-size: 13px; color: var(--muted); }
.legend li { display: flex; align-items: center; gap: 6px; }
.legend i { width: 10px; height: 10px; border-radius: 3px; display: inline-block; }
.legend b { color: var(--fg); font-weight: 600; font-variant-numeric: tabular-nums; }
.bg-succeeded { background: var(--succeeded); } .bg-failed { background: var(--failed); }
.bg-running { background: var(--running); } .bg-submitted { background: var(--submitted); }
.bg-cancelled { background: var(--cancelled); } .bg-skipped { background: var(--skipped); }
.bg-planned { background: var(--planned); } .bg-reclaimed { background: var(--reclaimed); }
.bg-busy { background: var(--busy); }
.grid2 { display: grid; grid-template-columns: 3fr 2fr; gap: 32px; }
@media (max-width: 820px) { .grid2 { grid-template-columns: 1fr; } }
.chart { width: 100%; height: auto; display: block; overflow: visible; }
.chart text { fill: var(--muted); font-size: 11px; font-family: inherit; }
.chart .title { fill: var(--fg); font-weight: 600; }
.chart .grid { stroke: var(--line); stroke-width: 1; shape-rendering: crispEdges; }
.chart .axis { stroke: var(--faint); stroke-width: 1; shape-rendering: crispEdges; }
.chart .mark { stroke: var(--fg); stroke-width: 1; stroke-dasharray: 3 3; opacity: .55; }
.chart .area { fill: var(--busy); opacity: .28; }
.chart .areaLine { fill: none; stroke: var(--busy); stroke-width: 1.5; }
.o-succeeded { fill: var(--succeeded); } .o-failed { fill: var(--failed); }
.o-reclaimed { fill: var(--reclaimed); } .o-cancelled { fill: var(--cancelled); }
.o-running { fill: var(--running); }
.chart .bars rect { shape-rendering: crispEdges; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0;
      font-size: 14px; }
.kv dt { color: var(--muted); } .kv dd { margin: 0; font-variant-numeric: tabular-nums; }
.big { font-size: 34px; font-weight: 700; letter-spacing: -0.02em; line-height: 1.1;
       font-variant-numeric: tabular-nums; }
.meter { display: flex; height: 10px; border-radius: 5px; overflow: hidden;
         background: var(--line); margin: 10px 0 14px; }
.meter span { display: block; height: 100%; }
.assume { font-size: 12.5px; color: var(--muted); margin: 12px 0 0; padding-left: 18px; }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center;
            margin-bottom: 10px; }
.controls input, .controls select, .pager button {
  font: inherit; font-size: 13.5px; color: var(--fg); background: var(--bg);
  border: 1px solid var(--line); border-radius: 7px; padding: 5px 10px; }
.controls input { min-width: 220px; flex: 1 1 220px; max-width: 360px; }
.pager { display: flex; gap: 8px; align-items: center; justify-content: flex-end;
         margin-top: 10px; font-size: 13px; color: var(--muted); }
.pager button { cursor: pointer; padding: 3px 10px; }
.pager button:disabled { opacity: .4; cursor: default; }
.tablewrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 10px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: baseline; }
tbody tr:last-child td { border-bottom: 0; }
thead th { position: sticky; top: 0; background: var(--panel); font-size: 12.5px;
           font-weight: 600; color: var(--muted); white-space: nowrap; user-select: none; }
thead th[data-col] { cursor: pointer; }
thead th[data-col]:hover { color: var(--fg); }
thead th[aria-sort="ascending"]::after { content: " ▲"; font-size: 9px; }
thead th[aria-sort="descending"]::after { content: " ▼"; font-size: 9px; }
th.num { text-align: right; }
tbody tr:hover { background: var(--panel); }
td.scan { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
          font-size: 12.5px; white-space: nowrap; }
td.reason { color: var(--muted); max-width: 380px; overflow: hidden; text-overflow: ellipsis;
            white-space: nowrap; }
.badge { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.badge::before { content: ""; width: 8px; height: 8px; border-radius: 50%;
                 background: var(--planned); }
.s-succeeded::before { background: var(--succeeded); }
.s-failed::before { background: var(--failed); } .s-failed { color: var(--failed); }
.s-running::before { background: var(--running); }
.s-submitted::before { background: var(--submitted); }
.s-cancelled::before { background: var(--cancelled); }
.s-skipped::before { background: var(--skipped); }
details.failure { border: 1px solid var(--line); border-left: 3px solid var(--failed);
                  border-radius: 8px; margin: 0 0 10px; background: var(--panel);
                  break-inside: avoid; }
details.failure summary { cursor: pointer; padding: 8px 12px; display: flex; gap: 12px;
                          flex-wrap: wrap; align-items: baseline; }
details.failure summary .mono { font-weight: 600; }
details.failure summary .why { color: var(--muted); font-size: 13px; flex: 1 1 300px; }
details.failure pre { margin: 0; padding: 10px 12px; border-top: 1px solid var(--line);
                      overflow-x: auto; white-space: pre-wrap; word-break: break-word;
                      background: var(--bg); border-radius: 0 0 8px 8px; max-height: 420px; }
.muted { color: var(--muted); }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 48px; padding-top: 16px; border-top: 1px solid var(--line);
         font-size: 12.5px; color: var(--muted); }
footer .kv { font-size: 12.5px; }
footer .kv dd { word-break: break-all; }
@media print {
  :root { --bg: #fff; --fg: #000; --panel: #fff; --line: #ccc; --muted: #444; }
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  .controls, .pager, .noprint { display: none !important; }
  section { break-inside: auto; margin-top: 20px; }
  .chart, .card, .statebar, .meter { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  thead th { position: static; }
  details.failure pre { max-height: none; }
  a { color: inherit; text-decoration: none; }
}
"""

#: Sorting, filtering and paging of the scan table over the JSON blob; formats as report.py.
JS = r"""
(function () {
  "use strict";
  var blob = document.getElementById("scan-data");
  if (!blob) return;
  var data = JSON.parse(blob.textContent);
  var cols = data.columns, rows = data.rows, PER = data.perPage;
  var table = document.getElementById("scans");
  var tbody = table.tBodies[0];
  var q = document.getElementById("q"), st = document.getElementById("state-filter");
  var info = document.getElementById("pager-info");
  var prev = document.getElementById("prev"), next = document.getElementById("next");
  var view = rows, sortCol = -1, sortDir = 1, page = 0;

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function dur(s) {
    if (s === null || s === undefined) return "";
    if (s < 9.95) return s.toFixed(1) + "s";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + pad(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d" + pad(Math.floor(s % 86400 / 3600)) + "h";
  }
  function money(v) {
    if (v === null || v === undefined) return "";
    var a = Math.abs(v), p = a >= 10 ? 2 : a >= 0.1 ? 3 : 4;
    return "$" + v.toLocaleString("en-US", {minimumFractionDigits: p, maximumFractionDigits: p});
  }
  function text(c, v) {
    if (c.type === "duration") return dur(v);
    if (c.type === "money") return money(v);
    return v === null || v === undefined ? "" : String(v);
  }
  function cell(tr, c, v, r) {
    var td = document.createElement("td");
    if (c.cls) td.className = c.cls;
    if (c.type === "state") {
      var b = document.createElement("span");
      b.className = "badge s-" + v; b.textContent = v; td.appendChild(b);
    } else if (c.type === "link") {
      if (v) {
        var a = document.createElement("a");
        v = data.linkPrefix + v; a.href = v; a.textContent = "log";
        if (/^https?:/.test(v)) { a.target = "_blank"; a.rel = "noopener noreferrer"; }
        td.appendChild(a);
      }
    } else {
      td.textContent = text(c, v);
      if (c.type === "text" && v) td.title = v;
    }
    tr.appendChild(td);
  }
  function render(all) {
    var start = all ? 0 : page * PER, end = all ? view.length : Math.min(view.length, start + PER);
    var frag = document.createDocumentFragment();
    for (var i = start; i < end; i++) {
      var r = view[i], tr = document.createElement("tr");
      for (var j = 0; j < cols.length; j++) cell(tr, cols[j], r[j], r);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    var pages = Math.max(1, Math.ceil(view.length / PER));
    info.textContent = view.length ? (start + 1) + "–" + end + " of " + view.length +
      (view.length !== rows.length ? " (of " + rows.length + ")" : "") : "no scans match";
    prev.disabled = page <= 0; next.disabled = page >= pages - 1;
    var ths = table.tHead.rows[0].cells;
    for (var k = 0; k < ths.length; k++) {
      if (k === sortCol) ths[k].setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else ths[k].removeAttribute("aria-sort");
    }
  }
  function cmp(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined || a === "") return 1;
    if (b === null || b === undefined || b === "") return -1;
    return a < b ? -1 : 1;
  }
  function apply() {
    var needle = (q.value || "").toLowerCase(), state = st.value;
    view = rows.filter(function (r) {
      if (state && r[1] !== state) return false;
      return !needle || r[0].toLowerCase().indexOf(needle) >= 0 ||
        String(r[r.length - 1] || "").toLowerCase().indexOf(needle) >= 0;
    });
    if (sortCol >= 0) {
      var c = sortCol;
      view.sort(function (a, b) {
        var x = cmp(a[c], b[c]);
        if (x === 0) return a[0] < b[0] ? -1 : 1;
        return (a[c] === null || a[c] === "" || b[c] === null || b[c] === "") ? x : x * sortDir;
      });
    }
    var pages = Math.max(1, Math.ceil(view.length / PER));
    if (page >= pages) page = pages - 1;
    render(false);
  }
  var ths = table.tHead.rows[0].cells;
  for (var k = 0; k < ths.length; k++) {
    (function (idx) {
      ths[idx].addEventListener("click", function () {
        if (sortCol === idx) sortDir = -sortDir; else { sortCol = idx; sortDir = 1; }
        page = 0; apply();
      });
    })(k);
  }
  q.addEventListener("input", function () { page = 0; apply(); });
  st.addEventListener("change", function () { page = 0; apply(); });
  prev.addEventListener("click", function () { if (page > 0) { page--; render(false); } });
  next.addEventListener("click", function () { page++; render(false); });
  window.addEventListener("beforeprint", function () { render(true); });
  window.addEventListener("afterprint", function () { render(false); });
  apply();
  table.setAttribute("data-ready", String(rows.length));
})();
"""
