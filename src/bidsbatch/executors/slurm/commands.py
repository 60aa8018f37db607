"""The Slurm client commands bidsbatch uses, as argv lists through one injected runner.

Every call to the cluster goes through :class:`SlurmCommands`, which builds
the argv (never a shell line) and parses the fixed output format asked for.
The runner is injected so that tests and the benchmark can count the calls
(one ``squeue`` per poll, one ``sbatch`` per chunk) against a real cluster.
The default runner strips AWS keys from the environment sbatch exports to
the job (``--export=ALL`` is Slurm's default), so no key reaches a job.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import BidsbatchError
from ...pipelines import CREDENTIAL_VARIABLES


@dataclass(frozen=True)
class Completed:
    """What a command did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str]], Completed]

#: squeue's fields, in order, separated by "|": array job id, task id, job id (the
#: task's own, once it started), state, reason, start, end, CPUs, name.
SQUEUE_FORMAT = "%F|%K|%A|%T|%r|%S|%e|%C|%j"
#: sacct's fields for the same (accounting clusters only), with exit code and CPU time.
SACCT_FIELDS = "JobID,JobIDRaw,JobName,State,ExitCode,Start,End,AllocCPUS,TotalCPU"


def subprocess_runner(*, timeout: float = 120.0) -> Runner:
    """Run commands for real, without AWS keys in their environment."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in CREDENTIAL_VARIABLES}

    def run(argv: Sequence[str]) -> Completed:
        exe = shutil.which(argv[0])
        if exe is None:
            raise BidsbatchError(f"{argv[0]} not found: is this a Slurm login node?",
                                 hint="run bidsbatch where sbatch and squeue are on PATH")
        try:
            proc = subprocess.run([exe, *argv[1:]], capture_output=True, text=True,
                                  env=env, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BidsbatchError(f"{argv[0]} did not answer in {timeout:.0f} s",
                                 hint="is slurmctld up? try: sinfo") from None
        return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    return run


@dataclass(frozen=True)
class TaskRow:
    """One array task (or plain job) as squeue or sacct sees it."""

    array_id: str  # the array's job id (a plain job: its own id)
    task: int | None  # the array task id; None for a plain job (the group step)
    job_id: str  # the task's own job id once it started (the array id before)
    state: str  # Slurm's, e.g. PENDING, RUNNING, COMPLETED, FAILED, CANCELLED
    reason: str
    start: str | None
    end: str | None
    cpus: int
    name: str
    exit_code: int | None = None
    cpu_seconds: float | None = None

    @property
    def key(self) -> str:
        """``A_i`` for an array task, ``A`` for a plain job: what names its log."""
        return self.array_id if self.task is None else f"{self.array_id}_{self.task}"


def _time(text: str) -> str | None:
    text = text.strip()
    return None if text.upper() in ("", "N/A", "UNKNOWN", "NONE") else text


def parse_squeue(text: str) -> list[TaskRow]:
    """Rows of ``squeue -h -r -o SQUEUE_FORMAT``; a pending array's range is expanded by -r."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 9:
            continue
        array_id, task, job_id, state, reason, start, end, cpus, name = parts[:9]
        task_n = int(task) if task.strip().isdigit() else None
        rows.append(TaskRow(
            array_id=array_id.strip(), task=task_n, job_id=job_id.strip(),
            state=state.strip().split()[0] if state.strip() else "UNKNOWN",
            reason=reason.strip(), start=_time(start), end=_time(end),
            cpus=int(cpus) if cpus.strip().isdigit() else 1, name=name.strip()))
    return rows


def _cpu_time(text: str) -> float | None:
    """sacct's ``[D-]HH:MM:SS[.mmm]`` or ``MM:SS.mmm`` as seconds."""
    text = text.strip()
    if not text:
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return days * 86400 + seconds


def parse_sacct(text: str) -> list[TaskRow]:
    """Rows of ``sacct -X -n -P -o SACCT_FIELDS``."""
    rows = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 9:
            continue
        jobid, raw, name, state, exit_code, start, end, cpus, total_cpu = parts[:9]
        array_id, _, task = jobid.partition("_")
        code = exit_code.split(":", 1)[0]
        rows.append(TaskRow(
            array_id=array_id, task=int(task) if task.isdigit() else None, job_id=raw,
            state=state.split()[0] if state else "UNKNOWN", reason="", start=_time(start),
            end=_time(end), cpus=int(cpus) if cpus.isdigit() else 1, name=name,
            exit_code=int(code) if code.isdigit() else None,
            cpu_seconds=_cpu_time(total_cpu)))
    return rows


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` as name -> value."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and " " not in name.strip():
            out[name.strip()] = value.strip()
    return out


class SlurmCommands:
    """sbatch, squeue, scontrol, scancel and sacct, each one argv through ``runner``."""

    def __init__(self, runner: Runner | None = None) -> None:
        self.runner = runner or subprocess_runner()

    def _run(self, argv: list[str], what: str) -> Completed:
        res = self.runner(argv)
        if res.returncode != 0:
            detail = (res.stderr.strip() or res.stdout.strip()).splitlines()
            last = detail[-1] if detail else f"exit {res.returncode}"
            raise BidsbatchError(f"{what} failed: {last}",
                                 hint=f"the command was: {' '.join(argv[:6])}"
                                 + (" …" if len(argv) > 6 else ""))
        return res

    def max_array_size(self) -> int | None:
        """The cluster's ``MaxArraySize`` (array indexes run from 0 to it minus 1)."""
        res = self._run(["scontrol", "show", "config"], "scontrol show config")
        value = parse_config(res.stdout).get("MaxArraySize", "")
        return int(value) if value.isdigit() else None

    def sbatch(self, script: Path, *, options: Iterable[str] = (),
               args: Iterable[str] = ()) -> str:
        """Submit ``script`` (with ``args``) with ``options``; the new job's id."""
        res = self._run(["sbatch", "--parsable", *options, str(script), *args], "sbatch")
        # --parsable prints "jobid" or "jobid;cluster".
        job_id = res.stdout.strip().splitlines()[-1].split(";", 1)[0] if res.stdout.strip() else ""
        if not job_id.isdigit():
            raise BidsbatchError(f"sbatch printed no job id: {res.stdout.strip()[:200]!r}")
        return job_id

    def squeue(self, *, name: str) -> list[TaskRow]:
        """Every task of every job called ``name``, in any state Slurm still remembers."""
        res = self._run(["squeue", "-h", "-r", "-t", "all", "--name", name,
                         "-o", SQUEUE_FORMAT], "squeue")
        return parse_squeue(res.stdout)

    def sacct(self, job_ids: Sequence[str], *, since: str) -> list[TaskRow] | None:
        """Every task of ``job_ids`` from accounting in one call; None without accounting."""
        if not job_ids:
            return []
        res = self.runner(["sacct", "-X", "-n", "-P", "--starttime", since,
                           "-j", ",".join(job_ids), "-o", SACCT_FIELDS])
        if res.returncode != 0:
            text = (res.stderr + res.stdout).lower()
            if "accounting storage is disabled" in text or "slurmdbd" in text:
                return None
            raise BidsbatchError(f"sacct failed: {res.stderr.strip()[:200]}")
        return parse_sacct(res.stdout)

    def scancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs (an array id cancels all its tasks); ids already gone are fine."""
        if job_ids:
            res = self.runner(["scancel", *job_ids])
            if res.returncode != 0 and "invalid job id" not in res.stderr.lower():
                raise BidsbatchError(f"scancel failed: {res.stderr.strip()[:200]}")

    def release(self, job_ids: Sequence[str]) -> None:
        """``scontrol release`` held jobs."""
        if job_ids:
            self._run(["scontrol", "release", ",".join(job_ids)], "scontrol release")
