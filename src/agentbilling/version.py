"""The installed package's version, from its metadata (pyproject.toml's `version`): one source."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentbilling")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
