"""What the Slurm executor needs to know: partition, account, QOS, throttle, extra options.

All optional: with none given, jobs go to the cluster's default partition
under the user's default account. Saved with the run (the ledger), so that
``status``, ``logs``, ``retry`` and ``cancel`` rebuild the same executor
without flags. ``extra`` is validated here, once: only ``--option`` or
``--option=value`` items, nothing a shell would act on, none of the options
bidsbatch sets itself.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import UsageError

#: Slurm's own default when a cluster sets none (``MaxArraySize=1001``).
DEFAULT_MAX_ARRAY_SIZE = 1001
#: Admins ask for no more than one squeue/sacct round every 30 s or so per user.
DEFAULT_POLL_SECONDS = 30.0

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
_EXTRA = re.compile(r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/@%+=-]*)?$")
#: Options bidsbatch writes itself: given twice, which wins would be Slurm's choice.
_OURS = frozenset({
    "array", "job-name", "output", "error", "open-mode", "cpus-per-task", "mem", "time",
    "gres", "partition", "account", "qos", "requeue", "no-requeue", "dependency", "parsable",
    "wrap", "chdir", "export",
})


def parse_extra(text: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``--slurm-extra "--constraint=avx2 --nice=10"`` as checked sbatch options."""
    if not text:
        return ()
    if isinstance(text, str):
        try:
            items = shlex.split(text)
        except ValueError as exc:
            raise UsageError(f"--slurm-extra: {exc}") from None
    else:
        items = list(text)
    for item in items:
        if not _EXTRA.match(item):
            raise UsageError(
                f"--slurm-extra: {item!r} is not an sbatch option of the form --name or "
                "--name=value (letters, digits and _.,:/@%+=- only)",
                hint='e.g. --slurm-extra "--constraint=avx2 --nice=10"')
        name = item[2:].split("=", 1)[0]
        if name in _OURS:
            raise UsageError(f"--slurm-extra: {item} is set by bidsbatch itself",
                             hint="use the matching --slurm-* option, or the pipeline's "
                                  "[resources]")
    return tuple(items)


def _name(value: Any, what: str) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if not _NAME.match(text):
        raise UsageError(f"--slurm-{what} {text!r} is not a Slurm {what} name")
    return text


@dataclass(frozen=True)
class SlurmSettings:
    """The executor's settings. Build with :meth:`from_options`."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: At most this many tasks of each array run at once (``--array=…%T``).
    max_running: int | None = None
    extra: tuple[str, ...] = ()
    #: Seconds between two looks at the cluster (squeue, sacct); tests lower it.
    poll_seconds: float = DEFAULT_POLL_SECONDS
    #: Tasks per array; None: the cluster's ``MaxArraySize`` (read once per submit).
    array_size: int | None = None
    #: Extra variables for every job (never AWS keys).
    job_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SlurmSettings:
        def get(name: str) -> Any:
            value = options.get(f"slurm_{name}")
            return options.get(name) if value is None else value

        max_running = get("max_running")
        if max_running is not None and int(max_running) < 1:
            raise UsageError("--slurm-max-running must be at least 1")
        raw_poll = get("poll_seconds")
        poll = DEFAULT_POLL_SECONDS if raw_poll is None else float(raw_poll)
        if poll < 0:
            raise UsageError("--slurm-poll-seconds cannot be negative")
        size = get("array_size")
        if size is not None and int(size) < 1:
            raise UsageError("--slurm-array-size must be at least 1")
        from ...pipelines import check_no_credentials

        job_env = dict(get("job_env") or {})
        check_no_credentials(job_env, where="the job environment")
        return cls(
            partition=_name(get("partition"), "partition"),
            account=_name(get("account"), "account"),
            qos=_name(get("qos"), "qos"),
            max_running=int(max_running) if max_running is not None else None,
            extra=parse_extra(get("extra")),
            poll_seconds=poll,
            array_size=int(size) if size is not None else None,
            job_env=job_env,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the ledger (what :meth:`from_options` reads back)."""
        data = asdict(self)
        data["extra"] = list(self.extra)
        return data
