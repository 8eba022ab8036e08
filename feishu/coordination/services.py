"""Collision coordination lives in ``claims`` (the floor), ``detection`` (collisions and repairs), ``mirror``
(``OnIt`` reactions) and ``jitter``. ``jitter_seconds`` is still importable from here for existing callers."""

from __future__ import annotations

from feishu.coordination.jitter import jitter_seconds

__all__ = ["jitter_seconds"]
