"""The Slurm executor: array jobs on an HPC cluster (see ``executor``)."""

from .executor import SlurmExecutor

__all__ = ["SlurmExecutor"]
