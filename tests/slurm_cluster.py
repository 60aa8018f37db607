"""A real one-node Slurm cluster on 127.0.0.1 for the tests: munged, slurmctld, slurmd.

Everything lives in one private state folder (config, munge key and socket,
spool, logs, pid files); nothing in /etc is read or written and no systemd is
needed. Ports are picked free at start, so several clusters (other test
sessions) can run side by side. No accounting: there is no slurmdbd (its
22.05 version listens on 0.0.0.0 whatever its config says), so ``sacct``
says "accounting storage is disabled" — the path bidsbatch must handle.

The facts this rests on (each cost a failed start once):

- the node is named ``localhost`` (``slurmd -N localhost``) so the config does
  not depend on the machine's hostname, and ``CommunicationParameters=
  NoCtldInAddrAny,NoInAddrAny`` makes every daemon bind 127.0.0.1 only;
- munged as root with its files outside /etc/munge needs ``--force``; its
  socket folder must be 0755 for clients;
- no cgroups: ``proctrack/linuxproc`` and ``task/none`` (so ``--mem`` only
  schedules, it is not enforced);
- a node declared with more CPUs than the machine has needs
  ``SlurmdParameters=config_overrides``; Slurm starts about one task per slot a
  second, so no-op tests declare more slots (``SLURM_NODE_CPUS``);
- every wait has a wall-clock deadline (a client call against a dead
  slurmctld waits ``MessageTimeout`` and retries);
- daemons are started detached (their own session, no inherited stdout);
- ``slurmctld -c`` forgets older jobs: job ids restart at 1.

Start with :func:`start_cluster`, stop with :meth:`SlurmCluster.stop` (by the
pid files, never by name). A session killed before its fixture's teardown
(``kill -9``, a CI timeout) would leave its daemons running, so every cluster
is also recorded in :data:`REGISTRY` with its daemons' pids and the pid of the
process that started it; :func:`reap_stale` (called by each start) stops the
daemons of clusters whose starter is gone, after checking that each pid still
names a daemon of that cluster (its command line or ``SLURM_CONF`` mentions the
cluster's state folder), so a reused pid is never signalled.
:func:`ensure_slurm` apt-installs the packages when ``CI`` is set and we are
root, else says why the tests must skip.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REGISTRY = Path(tempfile.gettempdir()) / "bidsbatch-test-slurm"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
_DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol",
            "scancel")

_CONF = """\
ClusterName=bbtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={state}/munge/munge.socket
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge={min_job_age}
MaxArraySize={max_array_size}
MaxJobCount=30000
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={cpus} \
  RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def missing_tools() -> list[str]:
    return [t for t in _DAEMONS if shutil.which(t) is None
            and not Path("/usr/sbin", t).exists()]


def ensure_slurm() -> str | None:
    """None when Slurm can run here (installing it under CI as root), else why not."""
    if not missing_tools():
        return None
    if os.environ.get("CI") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, check=False, capture_output=True)
        res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                              *PACKAGES], env=env, capture_output=True, text=True)
        if res.returncode != 0:
            return f"apt-get install {' '.join(PACKAGES)} failed: {res.stderr[-300:]}"
        return None if not missing_tools() else f"still missing: {missing_tools()}"
    return (f"Slurm is not installed ({', '.join(missing_tools())} missing); "
            f"apt-get install {' '.join(PACKAGES)}, or set CI=1 and run as root")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _real_memory_mib() -> int:
    out = subprocess.run([_tool("slurmd"), "-C"], capture_output=True, text=True,
                         timeout=30).stdout
    m = re.search(r"RealMemory=(\d+)", out)
    return int(m.group(1)) if m else 2048


@dataclass
class SlurmCluster:
    """A running one-node cluster; ``env`` points clients (and bidsbatch) at it."""

    state: Path
    conf: Path
    cpus: int

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster."""
        return subprocess.run([_tool(argv[0]), *argv[1:]], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=timeout)

    def wait_idle(self, deadline_s: float = 60) -> bool:
        """Wait until no job of this cluster is pending or running (and the node is idle)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            q = self.run("squeue", "-h", "-t", "pending,running,completing", "-o", "%i",
                         timeout=20)
            if q.returncode == 0 and not q.stdout.strip():
                return True
            time.sleep(0.5)
        return False

    def log_tail(self, n: int = 40) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            path = self.state / "log" / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-n:]
                out.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(out)

    def pids(self) -> list[int]:
        """The daemons' pids, from their pid files (slurmd, slurmctld, munged)."""
        out = []
        for pidfile in (self.state / "slurmd.pid", self.state / "slurmctld.pid",
                        self.state / "munge" / "munged.pid"):
            with contextlib.suppress(OSError, ValueError):
                out.append(int(pidfile.read_text().strip()))
        return out

    @property
    def record(self) -> Path:
        digest = hashlib.sha1(str(self.state).encode()).hexdigest()[:16]
        return REGISTRY / f"{digest}.json"

    def stop(self) -> None:
        """Stop the daemons by their pids (TERM, then KILL after 5 s)."""
        for pid in self.pids():
            _end(pid)
        for pidfile in (self.state / "slurmd.pid", self.state / "slurmctld.pid",
                        self.state / "munge" / "munged.pid"):
            pidfile.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)


def _end(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _names_cluster(pid: int, state: str) -> bool:
    """Whether ``pid`` is a daemon of the cluster in ``state`` (cmdline or SLURM_CONF)."""
    for part in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            if state.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                return True
    return False


def _register(cluster: SlurmCluster) -> None:
    REGISTRY.mkdir(parents=True, exist_ok=True)
    cluster.record.write_text(json.dumps({
        "owner": os.getpid(), "owner_start": _start_time(os.getpid()),
        "state": str(cluster.state), "pids": cluster.pids()}))


def reap_stale() -> list[int]:
    """Stop the daemons of recorded clusters whose starting process is gone.

    Returns the pids that were signalled."""
    ended: list[int] = []
    if not REGISTRY.is_dir():
        return ended
    for record in sorted(REGISTRY.glob("*.json")):
        try:
            info = json.loads(record.read_text())
        except (OSError, ValueError):
            record.unlink(missing_ok=True)
            continue
        if _alive(info["owner"]) and _start_time(info["owner"]) == info["owner_start"]:
            continue  # another session's cluster, still in use
        for pid in info["pids"]:
            if _alive(pid) and _names_cluster(pid, info["state"]):
                _end(pid)
                ended.append(pid)
        record.unlink(missing_ok=True)
    return ended


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _detached(argv: list[str], env: dict[str, str]) -> None:
    """Run a daemon that forks itself away; it must not hold our stdout."""
    subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True, check=True, timeout=60)


def start_cluster(state: Path, *, cpus: int | None = None, max_array_size: int = 10001,
                  min_job_age: int = 300, deadline_s: float = 30) -> SlurmCluster:
    """Start munged, slurmctld and slurmd with everything under ``state``."""
    state.mkdir(parents=True, exist_ok=True)
    state = state.resolve()
    state.chmod(0o755)  # job output files of non-root users would need it too
    for sub in ("munge", "ctld", "slurmd", "log"):
        (state / sub).mkdir(exist_ok=True)
    (state / "munge").chmod(0o755)
    key = state / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    _detached([_tool("munged"), "--force", f"--socket={state}/munge/munge.socket",
               f"--key-file={key}", f"--pid-file={state}/munge/munged.pid",
               f"--log-file={state}/log/munged.log", f"--seed-file={state}/munge/munged.seed"],
              env)
    real_cpus = os.cpu_count() or 1
    cpus = cpus or int(os.environ.get("SLURM_NODE_CPUS") or real_cpus)
    conf = state / "slurm.conf"
    text = _CONF.format(state=state, ctld_port=free_port(), slurmd_port=free_port(),
                        cpus=cpus, mem=_real_memory_mib() * 9 // 10,
                        max_array_size=max_array_size, min_job_age=min_job_age)
    if cpus != real_cpus:
        text += "SlurmdParameters=config_overrides\n"
    conf.write_text(text)
    (state / "plugstack.conf").write_text("")  # looked for next to slurm.conf
    env["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(state=state, conf=conf, cpus=cpus)
    reap_stale()
    try:
        _detached([_tool("slurmctld"), "-c", "-i"], env)
        _detached([_tool("slurmd"), "-N", "localhost"], env)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            res = subprocess.run([_tool("sinfo"), "-h", "-n", "localhost", "-o", "%T"],
                                 capture_output=True, text=True, env=env, timeout=30)
            if res.stdout.strip() == "idle":
                _register(cluster)
                return cluster
            time.sleep(0.05)
        raise RuntimeError(f"slurm did not come up in {deadline_s} s\n{cluster.log_tail()}")
    except BaseException:
        cluster.stop()
        raise


# --------------------------------------------------------------------------- fixtures

try:
    import pytest
except ImportError:  # imported by bench/ outside a test session
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def slurm(tmp_path_factory):  # type: ignore[no-untyped-def]
        """One cluster for the session (16 slots declared: the test apps mostly sleep)."""
        why = ensure_slurm()
        if why:
            pytest.skip(why)
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"),
                                cpus=int(os.environ.get("SLURM_NODE_CPUS") or 16))
        try:
            yield cluster
        finally:
            cluster.stop()
