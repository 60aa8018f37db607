"""The AWS credential variables no job, container or spec may be handed, and the check."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import CredentialsInJobError

#: Environment variable names that must never be handed to a job.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def check_no_credentials(env: Mapping[str, str], *, where: str) -> None:
    """Refuse AWS access keys in an environment meant for a job: jobs use IAM roles."""
    found = sorted(k for k in env if k.upper() in CREDENTIAL_VARIABLES)
    if found:
        raise CredentialsInJobError(
            f"{where}: refusing to pass {', '.join(found)} to jobs",
            hint="jobs get AWS access from their IAM job role; remove the keys "
            "(bidsbatch aws setup creates a least-privilege job role)",
        )
