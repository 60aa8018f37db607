"""A pipeline adjusted from the command line, without copying its file.

``--app-args "…"`` appends arguments to the app's command (split as a POSIX
shell would split them, with :func:`shlex.split`, but never run through a
shell: no globbing, no variables, no substitution); ``--vcpus`` and
``--memory`` replace the pipeline's resources. The result is the pipeline the
run records (``run.json``) and plans with: the app arguments are part of each
scan's argv, so of its spec and config hash (other arguments, other results);
resources are not (as for a pipeline file, unless the argv uses ``{n_cpus}``
or ``{mem_mib}``).
"""

from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass, replace

from .errors import UsageError
from .pipelines import PLACEHOLDERS, Pipeline

#: The pipeline files' own bounds (pipelines._parse_resources), so an override is no looser.
VCPU_RANGE = (0.25, 192.0)
MEMORY_MIB_RANGE = (128, 4_000_000)

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNIT_MIB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 ** 2}


@dataclass(frozen=True)
class PipelineOverrides:
    """What the command line changes in a pipeline; empty changes nothing."""

    app_args: tuple[str, ...] = ()
    vcpus: float | None = None
    memory_mib: int | None = None

    @classmethod
    def parse(cls, *, app_args: str | None = None, vcpus: float | None = None,
              memory: str | None = None) -> PipelineOverrides:
        """From the options' text; UsageError naming the option for a bad value."""
        return cls(app_args=split_app_args(app_args), vcpus=_vcpus(vcpus),
                   memory_mib=None if memory is None else parse_memory(memory))

    @property
    def empty(self) -> bool:
        return not self.app_args and self.vcpus is None and self.memory_mib is None

    def apply(self, pipeline: Pipeline) -> Pipeline:
        """``pipeline`` with the arguments appended and the resources replaced."""
        if self.empty:
            return pipeline
        res = pipeline.resources
        if self.vcpus is not None:
            res = replace(res, vcpus=self.vcpus)
        if self.memory_mib is not None:
            res = replace(res, memory_mib=self.memory_mib)
        return replace(pipeline, command=[*pipeline.command, *self.app_args], resources=res)


def split_app_args(text: str | None) -> tuple[str, ...]:
    """``--app-args`` as argv items: quotes group words, nothing is expanded."""
    if text is None:
        return ()
    try:
        items = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"--app-args {text!r}: {exc}",
                         hint="quote as in a shell: --app-args \"--fs-no-reconall "
                              "--output-spaces 'MNI152NLin2009cAsym:res-2'\"") from None
    if not items:
        raise UsageError("--app-args names no argument",
                         hint="leave the option out, or give the app's arguments")
    for item in items:
        _check_placeholders(item)
    return tuple(items)


def _check_placeholders(item: str) -> None:
    """An argument may use the pipeline's placeholders ({n_cpus}, {work_dir}…); no others."""
    try:
        names = [n for _l, n, _s, _c in string.Formatter().parse(item) if n is not None]
    except ValueError as exc:
        raise UsageError(f"--app-args: bad braces in {item!r}: {exc}",
                         hint="a literal brace is written {{ or }}") from None
    for name in names:
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
            raise UsageError(f"--app-args: unknown placeholder {{{name}}} in {item!r}",
                             hint=f"known: {known}")


def _vcpus(value: float | None) -> float | None:
    if value is None:
        return None
    lo, hi = VCPU_RANGE
    if not lo <= value <= hi:
        raise UsageError(f"--vcpus must be from {lo:g} to {hi:g}, not {value:g}")
    return float(value)


def parse_memory(text: str) -> int:
    """``8G``, ``8GB``, ``8GiB``, ``7500M``, or a plain number of MiB, as MiB.

    G and GB are read as GiB (1024 MiB), as schedulers and BIDS Apps' ``--mem`` do.
    """
    m = _MEMORY.match(text)
    if not m:
        raise UsageError(f"--memory {text!r} is not an amount of memory",
                         hint="e.g. 16G, 16GiB, 7500M or 8192 (MiB)")
    mib = round(float(m.group(1)) * _UNIT_MIB[m.group(2).lower()])
    lo, hi = MEMORY_MIB_RANGE
    if not lo <= mib <= hi:
        raise UsageError(f"--memory {text!r} is {mib} MiB: it must be from {lo} to {hi} MiB")
    return mib
