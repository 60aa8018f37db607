"""The run ledger: a SQLite record of what was submitted and what happened.

One file per run (``ledger.sqlite`` in the run directory). Per scan: state,
attempts, executor job id, start/end, exit code, reason, log location; per
attempt: its own times and outcome (for cost); the executor's jobs; and a
small key/value table for run-level facts (executor, supervisor pid, group
step). It is a record, not the truth of "done": that is the completion
marker (``markers.py``). Several processes may use it at once (the local
supervisor writes, ``status`` reads), so it runs in WAL mode with a busy
timeout.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import BidsbatchError
from .states import STATES, GroupState, ScanState
from .timestamps import Clock, iso, utcnow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scans (
    scan_id     TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    job_id      TEXT,
    started_at  TEXT,
    finished_at TEXT,
    exit_code   INTEGER,
    reason      TEXT,
    log         TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    scan_id     TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    job_id      TEXT,
    started_at  TEXT,
    finished_at TEXT,
    exit_code   INTEGER,
    reason      TEXT,
    cpu_seconds REAL,
    market      TEXT,
    instance_type TEXT,
    host        TEXT,
    zone        TEXT,
    spot_price  REAL,
    PRIMARY KEY (scan_id, attempt)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id       TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    executor     TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    scans        TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS scans_by_update ON scans (updated_at);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
"""


@dataclass(frozen=True)
class ScanRecord:
    scan_id: str
    state: ScanState
    attempts: int
    job_id: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    reason: str | None
    log: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", ScanState(self.state))

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at or not self.finished_at:
            return None
        a = datetime.fromisoformat(self.started_at)
        b = datetime.fromisoformat(self.finished_at)
        return max(0.0, (b - a).total_seconds())


@dataclass(frozen=True)
class AttemptRecord:
    scan_id: str
    attempt: int
    job_id: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    reason: str | None
    cpu_seconds: float | None
    market: str | None
    instance_type: str | None
    #: The machine it ran on (an EC2 instance id), its zone, and the Spot price it paid
    #: (USD an hour), where the engine reports them.
    host: str | None = None
    zone: str | None = None
    spot_price: float | None = None


#: Columns added to the attempts table after the first ledgers (added to older files).
_ATTEMPT_COLUMNS_ADDED = {"host": "TEXT", "zone": "TEXT", "spot_price": "REAL"}


@dataclass(frozen=True)
class GroupRecord:
    """The run's group step, as the ledger knows it (``state`` None: the run has none)."""

    state: GroupState | None = None
    reason: str | None = None
    job_id: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


#: Where :class:`GroupRecord`'s fields live in the meta table (names kept from the first
#: ledgers, so older run directories read the same).
_GROUP_META = {"state": "group_state", "reason": "group_reason", "job_id": "group_job_id",
               "exit_code": "group_exit_code", "started_at": "group_started_at",
               "finished_at": "group_finished_at"}
_UNSET: Any = object()


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    kind: str
    executor: str
    submitted_at: str
    scans: list[str]
    details: dict[str, Any]


class LedgerDamagedError(BidsbatchError):
    """The ledger file cannot be read as a SQLite database (damaged, truncated, a folder)."""

    def __init__(self, path: Path, detail: str) -> None:
        run = path.parent
        super().__init__(
            f"the run ledger {path} is damaged ({detail})",
            hint=f"rebuild it from the completion markers: bidsbatch status {run} --rebuild",
        )


class Ledger:
    """The SQLite record of one run. Open with :meth:`open`; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, *, clock: Clock = utcnow) -> None:
        self._conn = conn
        self._clock = clock

    @classmethod
    def open(cls, path: Path | str, *, clock: Clock = utcnow) -> Ledger:
        """Open (or create) the ledger; a damaged one is a :class:`LedgerDamagedError`."""
        conn = None
        try:
            conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            # A truncated file opens fine and fails at some later query: find out now.
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check and check[0] != "ok":
                raise sqlite3.DatabaseError(check[0])
            conn.executescript(_SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(attempts)")}
            for name, kind in _ATTEMPT_COLUMNS_ADDED.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE attempts ADD COLUMN {name} {kind}")
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise LedgerDamagedError(Path(path), str(exc)) from None
        return cls(conn, clock=clock)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: one commit (and one fsync) for many updates.

        Nested in another transaction it joins that one (a batch of start_attempt and
        finish_attempt calls is then one commit, all or nothing).
        """
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def now(self) -> str:
        return iso(self._clock())

    # -- scans

    def add_scans(self, scan_ids: Iterable[str]) -> None:
        """Record scans as planned (those already known keep their state)."""
        now = self.now()
        with self.transaction():
            self._conn.executemany(
                "INSERT OR IGNORE INTO scans (scan_id, state, updated_at) VALUES (?, ?, ?)",
                [(s, ScanState.PLANNED, now) for s in scan_ids],
            )

    def update(self, scan_id: str, **fields: Any) -> None:
        """Set columns of one scan (state, job_id, exit_code, reason, log, times...)."""
        if not fields:
            return
        fields["updated_at"] = self.now()
        cols = ", ".join(f"{k} = ?" for k in fields)
        cur = self._conn.execute(
            f"UPDATE scans SET {cols} WHERE scan_id = ?", [*fields.values(), scan_id]
        )
        if cur.rowcount == 0:
            raise KeyError(f"no scan {scan_id} in the ledger")

    def update_many(self, scan_ids: Iterable[str], **fields: Any) -> None:
        with self.transaction():
            for scan_id in scan_ids:
                self.update(scan_id, **fields)

    def start_attempt(self, scan_id: str, *, job_id: str | None = None,
                      started_at: str | None = None) -> int:
        """A new attempt begins: count it, mark the scan running. Returns its number."""
        started = started_at or self.now()
        with self.transaction():
            row = self._conn.execute(
                "SELECT attempts FROM scans WHERE scan_id = ?", (scan_id,)
            ).fetchone()
            attempt = (row[0] if row else 0) + 1
            self.update(scan_id, state=ScanState.RUNNING, attempts=attempt, started_at=started,
                        finished_at=None, exit_code=None, reason=None,
                        **({"job_id": job_id} if job_id else {}))
            self._conn.execute(
                "INSERT OR REPLACE INTO attempts (scan_id, attempt, job_id, started_at) "
                "VALUES (?, ?, ?, ?)",
                (scan_id, attempt, job_id, started),
            )
        return attempt

    def finish_attempt(self, scan_id: str, *, state: ScanState, exit_code: int | None,
                       reason: str | None = None, cpu_seconds: float | None = None,
                       finished_at: str | None = None) -> None:
        """The current attempt ended: record its outcome and the scan's state."""
        finished = finished_at or self.now()
        with self.transaction():
            row = self._conn.execute(
                "SELECT attempts FROM scans WHERE scan_id = ?", (scan_id,)
            ).fetchone()
            self.update(scan_id, state=state, exit_code=exit_code, reason=reason,
                        finished_at=finished)
            if row and row[0]:
                self._conn.execute(
                    "UPDATE attempts SET finished_at = ?, exit_code = ?, reason = ?, "
                    "cpu_seconds = ? WHERE scan_id = ? AND attempt = ?",
                    (finished, exit_code, reason, cpu_seconds, scan_id, row[0]),
                )

    def record_attempt(self, record: AttemptRecord) -> None:
        """Insert or replace one attempt as an executor reports it (Batch attempts)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO attempts (scan_id, attempt, job_id, started_at, "
            "finished_at, exit_code, reason, cpu_seconds, market, instance_type, host, zone, "
            "spot_price) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.scan_id, record.attempt, record.job_id, record.started_at,
             record.finished_at, record.exit_code, record.reason, record.cpu_seconds,
             record.market, record.instance_type, record.host, record.zone,
             record.spot_price),
        )

    def scan(self, scan_id: str) -> ScanRecord | None:
        row = self._conn.execute(
            "SELECT scan_id, state, attempts, job_id, started_at, finished_at, exit_code, "
            "reason, log FROM scans WHERE scan_id = ?", (scan_id,)
        ).fetchone()
        return ScanRecord(*row) if row else None

    def scans(self, *, states: Iterable[ScanState] | None = None) -> list[ScanRecord]:
        sql = ("SELECT scan_id, state, attempts, job_id, started_at, finished_at, exit_code, "
               "reason, log FROM scans")
        args: list[str] = []
        if states is not None:
            states = list(states)
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            args = states
        return [ScanRecord(*r) for r in self._conn.execute(sql + " ORDER BY scan_id", args)]

    def scan_ids(self, state: ScanState, *, after: str = "", limit: int = 1000) -> list[str]:
        """Up to ``limit`` ids of scans in ``state`` after ``after``, in order: a page."""
        return [r[0] for r in self._conn.execute(
            "SELECT scan_id FROM scans WHERE state = ? AND scan_id > ? ORDER BY scan_id "
            "LIMIT ?", (state, after, limit))]

    def attempt_count(self, scan_id: str) -> int:
        """How many attempts of the scan began (0: none yet)."""
        row = self._conn.execute("SELECT attempts FROM scans WHERE scan_id = ?",
                                 (scan_id,)).fetchone()
        return row[0] if row else 0

    def scans_updated_since(self, stamp: str | None) -> list[ScanRecord]:
        """The scans whose row changed at or after ``stamp`` (an ``updated_at``); None: all.

        What a progress check reads instead of the whole ledger (``runner.wait``).
        """
        if stamp is None:
            return self.scans()
        return [ScanRecord(*r) for r in self._conn.execute(
            "SELECT scan_id, state, attempts, job_id, started_at, finished_at, exit_code, "
            "reason, log FROM scans WHERE updated_at >= ? ORDER BY scan_id", (stamp,))]

    def last_update(self) -> str | None:
        """The newest ``updated_at`` of any scan (None: no scans)."""
        row = self._conn.execute("SELECT MAX(updated_at) FROM scans").fetchone()
        return row[0] if row else None

    def attempts(self, scan_id: str | None = None) -> list[AttemptRecord]:
        sql = ("SELECT scan_id, attempt, job_id, started_at, finished_at, exit_code, reason, "
               "cpu_seconds, market, instance_type, host, zone, spot_price FROM attempts")
        args: tuple[str, ...] = ()
        if scan_id:
            sql += " WHERE scan_id = ?"
            args = (scan_id,)
        rows = self._conn.execute(sql + " ORDER BY scan_id, attempt", args)
        return [AttemptRecord(*r) for r in rows]

    def counts(self) -> dict[ScanState, int]:
        out = dict.fromkeys(STATES, 0)
        for state, n in self._conn.execute("SELECT state, COUNT(*) FROM scans GROUP BY state"):
            out[ScanState(state)] = n
        return out

    # -- jobs

    def add_job(self, job_id: str, *, kind: str, executor: str, scans: list[str],
                details: dict[str, Any] | None = None) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, kind, executor, self.now(), json.dumps(scans),
             json.dumps(details or {}, sort_keys=True)),
        )

    def jobs(self, *, kind: str | None = None) -> list[JobRecord]:
        sql = "SELECT * FROM jobs"
        args: tuple[str, ...] = ()
        if kind:
            sql += " WHERE kind = ?"
            args = (kind,)
        return [
            JobRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]))
            for r in self._conn.execute(sql + " ORDER BY submitted_at, job_id", args)
        ]

    # -- run-level facts

    def set_meta(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- typed run-level facts

    def group(self) -> GroupRecord:
        """The group step's state and details."""
        values = {f: self.get_meta(key) for f, key in _GROUP_META.items()}
        state = values.pop("state")
        return GroupRecord(state=GroupState(state) if state else None, **values)

    def set_group(self, state: GroupState | None = _UNSET, *, reason: str | None = _UNSET,
                  job_id: str | None = _UNSET, exit_code: int | None = _UNSET,
                  started_at: str | None = _UNSET, finished_at: str | None = _UNSET) -> None:
        """Set the group step's facts: only the fields given change."""
        given = {"state": state, "reason": reason, "job_id": job_id, "exit_code": exit_code,
                 "started_at": started_at, "finished_at": finished_at}
        for name, value in given.items():
            if value is not _UNSET:
                self.set_meta(_GROUP_META[name], value)

    @property
    def executor_name(self) -> str | None:
        """The executor the run was submitted to (None: planned, never submitted)."""
        return self.get_meta("executor")

    @property
    def executor_settings(self) -> dict[str, Any]:
        """The executor's saved settings, as JSON values (``ExecutorSettings.to_json``)."""
        return dict(self.get_meta("executor_settings") or {})

    def record_executor(self, name: str, settings: dict[str, Any]) -> None:
        """Remember which executor runs this run, and its settings (never secrets)."""
        self.set_meta("executor", name)
        self.set_meta("executor_settings", settings)
