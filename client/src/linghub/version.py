"""The library's version (read by the package build too: ``client/pyproject.toml``)."""

from __future__ import annotations

__version__ = "0.1.0"
