"""Typed errors, each with one clear line for the user and an exit code.

The CLI maps these to exit codes in one place (``cli.main``); nothing else
prints tracebacks. ``UsageError`` (exit 2) is for what the user typed or
named; ``BidsbatchError`` (exit 1) is for failures of the world.
"""

from __future__ import annotations


class BidsbatchError(Exception):
    """A failure with a one-line message and an optional hint (what to do)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(BidsbatchError):
    """The user's input is wrong: bad option, unknown label, bad pipeline file."""

    exit_code = 2


class DatasetError(UsageError):
    """The dataset named by the user is not a usable BIDS dataset."""


class PipelineError(UsageError):
    """A pipeline file or preset is invalid."""


class SelectionError(UsageError):
    """A participant or session label that the dataset does not have."""


class StorageError(BidsbatchError):
    """A storage location could not be read or written."""


class TransientStorageError(StorageError):
    """A storage fault that may pass (throttling, 5xx, connection reset).

    The worker exits with EX_TEMPFAIL (75) on these once its own retries are
    spent, so that the executor's retry strategy can try again.
    """


class HostileKeyError(StorageError):
    """A key or path that would escape the directory it is downloaded into."""

    exit_code = 1


class CredentialsInJobError(UsageError):
    """AWS access keys were given for a job environment: jobs use IAM roles."""


class RunNotFoundError(UsageError):
    """The run named by the user does not exist."""


class MissingOutputsError(BidsbatchError):
    """The app exited 0 but did not write what the pipeline says a scan produces."""
