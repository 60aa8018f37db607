"""What the Slurm executor needs to know: partition, account, QOS, throttle, extra options.

All optional: with none given, jobs go to the cluster's default partition
under the user's default account. Each option-bearing field is a
``--slurm-*`` option of ``run``; all are saved with the run (the ledger), so
that ``status``, ``logs``, ``retry`` and ``cancel`` rebuild the same executor
without flags. ``--slurm-extra`` is checked here, once: only ``--option`` or
``--option=value`` items, nothing a shell would act on, none of the options
bidsbatch sets itself.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace

from ...errors import UsageError
from ..settings import ExecutorSettings, option

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


def _name(value: str | None, what: str) -> str | None:
    if not value:
        return None
    if not _NAME.match(value):
        raise UsageError(f"--slurm-{what} {value!r} is not a Slurm {what} name")
    return value


@dataclass(frozen=True)
class SlurmSettings(ExecutorSettings):
    """Settings of ``--executor slurm``; :meth:`resolved` checks them."""

    slurm_partition: str | None = option(help="Slurm: the partition (default: the "
                                         "cluster's default).")
    slurm_account: str | None = option(help="Slurm: the account to charge.")
    slurm_qos: str | None = option(help="Slurm: the quality of service.")
    slurm_max_running: int | None = option(
        help="Slurm: tasks of an array running at once (--array=…%T).")
    slurm_extra: str | None = option(
        help='Slurm: more sbatch options, e.g. "--constraint=avx2 --nice=10" '
             "(--name or --name=value items only).")
    slurm_poll_seconds: float = option(
        DEFAULT_POLL_SECONDS, hidden=True,
        help="Slurm: seconds between two looks at the queue (squeue, sacct).")
    slurm_array_size: int | None = option(
        hidden=True, help="Slurm: tasks per array (default: the cluster's MaxArraySize).")
    #: Extra variables for every job (never AWS keys).
    job_env: dict[str, str] = field(default_factory=dict)

    def resolved(self) -> SlurmSettings:
        """These settings checked; UsageError for what Slurm (or safety) refuses."""
        from ...pipelines import check_no_credentials

        if self.slurm_max_running is not None and self.slurm_max_running < 1:
            raise UsageError("--slurm-max-running must be at least 1")
        if self.slurm_poll_seconds < 0:
            raise UsageError("--slurm-poll-seconds cannot be negative")
        if self.slurm_array_size is not None and self.slurm_array_size < 1:
            raise UsageError("--slurm-array-size must be at least 1")
        check_no_credentials(dict(self.job_env), where="the job environment")
        extra = parse_extra(self.slurm_extra)
        return replace(
            self, slurm_partition=_name(self.slurm_partition, "partition"),
            slurm_account=_name(self.slurm_account, "account"),
            slurm_qos=_name(self.slurm_qos, "qos"),
            # items are checked to hold no space nor quote: joined, they split back the same
            slurm_extra=" ".join(extra) or None, slurm_poll_seconds=float(
                self.slurm_poll_seconds))

    @property
    def extra(self) -> tuple[str, ...]:
        """The checked extra sbatch options, one item each."""
        return parse_extra(self.slurm_extra)
