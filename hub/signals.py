"""Signals that connect the parts of the hub without importing each other.

``member_online``: a member became reachable on ``channel_kind`` (a bridge backend registered, an endpoint
probe turned green). Sent with ``member_id`` and ``channel_kind`` from sync code (use ``asend`` from async
code); the offline queue listens and flushes what waits for the member.
"""

from __future__ import annotations

from django.dispatch import Signal

member_online = Signal()
