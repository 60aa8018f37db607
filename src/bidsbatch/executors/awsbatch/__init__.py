"""The AWS Batch executor: one array job per run, Spot-aware retries, IAM roles only.

``executor.py`` is the executor; ``submit.py``, ``poll.py``, ``states.py``
and ``logs.py`` what it does on Batch; ``jobdef.py`` the content-addressed
job definitions; ``runfiles.py`` the run's files on S3; ``cost.py`` what
attempts cost; ``settings.py`` its options; ``api.py`` the calls, with
backoff.
"""

from __future__ import annotations

from ..registry import Engine
from .settings import BatchSettings

ENGINE = Engine(
    name="aws-batch",
    description="AWS Batch array jobs (Spot-aware retries, IAM job roles)",
    settings=BatchSettings,
    executor="bidsbatch.executors.awsbatch.executor:AwsBatchExecutor",
)
