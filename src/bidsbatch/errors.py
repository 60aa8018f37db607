"""Typed errors, each with one clear line for the user and an exit code.

The CLI maps these to exit codes in one place (``cli.main``); nothing else
prints tracebacks. ``UsageError`` (exit 2) is for what the user typed or
named; ``BidsbatchError`` (exit 1) is for failures of the world.
"""

from __future__ import annotations

# The one table of exit codes. A worker passes the app's own code through; these are
# bidsbatch's own (the CLI's and the worker's).
EX_OK = 0
EX_FAILURE = 1  # a failure of the world: bad spec, refused key, storage error that will not pass
EX_USAGE = 2  # what the user typed or named is wrong
EX_TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: a storage fault that outlived its retries; retry me
EX_TIMEOUT = 124  # the app ran past its timeout (as timeout(1) reports it)
EX_CANNOT_EXECUTE = 126  # the app exists but cannot be executed (as a shell reports it)
EX_NOT_FOUND = 127  # the app is not on PATH (as a shell reports it)
EX_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def aws_error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


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
