"""The SDK's version, sent in `User-Agent` (the installed distribution's, if any)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("genq")
except metadata.PackageNotFoundError:  # vendored or run from a source tree
    __version__ = "0.0.0+unknown"
