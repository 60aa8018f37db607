"""Which scans of a dataset to process: participant and session labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .bids import Scan
from .errors import SelectionError, UsageError
from .safety import read_utf8


def _strip(label: str, prefix: str) -> str:
    label = label.strip()
    return label[len(prefix):] if label.startswith(prefix) else label


@dataclass(frozen=True)
class Selection:
    """Labels to keep or drop. Empty means everything. Labels without ``sub-``/``ses-``."""

    participants: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    scans: tuple[str, ...] = ()  # exact scan ids, from a labels file

    @classmethod
    def build(
        cls,
        *,
        participants: list[str] | tuple[str, ...] = (),
        sessions: list[str] | tuple[str, ...] = (),
        exclude: list[str] | tuple[str, ...] = (),
        labels_file: Path | None = None,
    ) -> Selection:
        """From CLI values: labels with or without ``sub-``, several per option or
        comma-separated; plus a labels file (see :func:`read_labels_file`)."""

        def split(values: list[str] | tuple[str, ...], prefix: str) -> list[str]:
            for v in values:
                if not v.strip(", \t") or _strip(v, prefix) == "":
                    # An empty label would silently mean "every scan": refuse it.
                    option = {"sub-": "--participant-label", "ses-": "--session-label"}[prefix]
                    raise UsageError(f"{option} {v!r} names no label",
                                     hint=f"give a label such as {prefix}01, or leave the "
                                          "option out to process every scan")
            return [_strip(x, prefix) for v in values for x in v.split(",") if x.strip()]

        parts = split(participants, "sub-")
        scans: list[str] = []
        if labels_file is not None:
            file_parts, file_scans = read_labels_file(labels_file)
            parts += file_parts
            scans += file_scans
        return cls(
            participants=tuple(sorted(set(parts))),
            sessions=tuple(sorted(set(split(sessions, "ses-")))),
            exclude=tuple(sorted(set(split(exclude, "sub-")))),
            scans=tuple(sorted(set(scans))),
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "participants": list(self.participants),
            "sessions": list(self.sessions),
            "exclude": list(self.exclude),
            "scans": list(self.scans),
        }

    def apply(self, scans: list[Scan]) -> list[Scan]:
        """The selected scans; SelectionError naming a few available labels for unknown ones."""
        have_parts = sorted({s.participant for s in scans})
        have_sessions = sorted({s.session for s in scans if s.session})
        have_scans = {s.id for s in scans}
        _check_known(self.participants, have_parts, "participant", "sub-")
        _check_known(self.exclude, have_parts, "participant", "sub-")
        _check_known(self.sessions, have_sessions, "session", "ses-")
        unknown_scans = sorted(set(self.scans) - have_scans)
        if unknown_scans:
            raise SelectionError(
                f"unknown scan {unknown_scans[0]} in the labels file",
                hint=f"available: {_few(sorted(have_scans))}",
            )
        out = []
        for s in scans:
            wanted = not (self.participants or self.scans) or (
                s.participant in self.participants or s.id in self.scans
            )
            if not wanted or s.participant in self.exclude:
                continue
            if self.sessions and s.session not in self.sessions:
                continue
            out.append(s)
        if not out:
            raise SelectionError("the selection leaves no scan to process")
        return out


def _few(values: list[str], n: int = 6) -> str:
    shown = ", ".join(values[:n])
    return shown + (f", … ({len(values)} in all)" if len(values) > n else "")


def _check_known(wanted: tuple[str, ...], have: list[str], what: str, prefix: str) -> None:
    unknown = [w for w in wanted if w not in have]
    if not unknown:
        return
    if not have:
        raise SelectionError(f"the dataset has no {what} labels, but {prefix}{unknown[0]} asked")
    raise SelectionError(
        f"unknown {what} label {prefix}{unknown[0]}"
        + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
        hint=f"available: {_few([prefix + h for h in have])}",
    )


def read_labels_file(path: Path) -> tuple[list[str], list[str]]:
    """Read participant labels and scan ids from a file.

    Accepted: one label a line (``01`` or ``sub-01``), or a scan id a line
    (``sub-01_ses-2``), ``#`` comments; or a TSV with a ``participant_id``
    column (and an optional ``session_id`` column) like ``participants.tsv``.
    """
    try:
        text = read_utf8(Path(path), what="labels file")
    except OSError as exc:
        raise UsageError(f"cannot read labels file {path}: {exc.strerror}") from None
    numbered = [(n, ln) for n, ln in enumerate(text.splitlines(), 1)
                if ln.strip() and not ln.lstrip().startswith("#")]
    if not numbered:
        raise UsageError(f"labels file {path} names no participant or scan",
                         hint="one label a line, or a TSV with participant_id; an empty "
                              "file would select every scan")
    lines = [ln for _n, ln in numbered]
    parts: list[str] = []
    scans: list[str] = []
    if lines and "participant_id" in lines[0].split("\t"):
        header = lines[0].split("\t")
        pi = header.index("participant_id")
        si = header.index("session_id") if "session_id" in header else None
        for number, ln in numbered[1:]:
            cols = ln.split("\t")
            if len(cols) <= pi or not cols[pi].strip():
                raise UsageError(
                    f"labels file {path}, line {number}: no participant_id (the row has "
                    f"{len(cols)} column(s), participant_id is column {pi + 1})",
                    hint="separate the columns with tabs, as in participants.tsv",
                )
            p = _strip(cols[pi], "sub-")
            if si is not None and len(cols) > si and cols[si].strip() not in ("", "n/a"):
                scans.append(f"sub-{p}_ses-{_strip(cols[si], 'ses-')}")
            else:
                parts.append(p)
        return parts, scans
    for ln in lines:
        token = ln.split()[0]
        if "_ses-" in token:
            p, s = token.split("_ses-", 1)
            scans.append(f"sub-{_strip(p, 'sub-')}_ses-{s}")
        else:
            parts.append(_strip(token, "sub-"))
    return parts, scans
