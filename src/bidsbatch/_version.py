"""The version of bidsbatch: the one place it is written (pyproject.toml reads it from here).

Read without ``importlib.metadata``, which scans every installed distribution
(85 ms of a 158 ms ``bidsbatch --version``).
"""

__version__ = "0.1.0"
