"""What a ``Member`` counts while it runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Stats:
    """Counters of one ``Member`` since it was created."""

    connections: int = 0  # sockets that registered (or, without a backend, opened)
    chats: int = 0
    replies: int = 0
    deliveries: int = 0  # message frames received, duplicates included
    duplicates: int = 0  # deliveries of a message already handled (acknowledged again, not handled again)
    acks: int = 0
    handler_errors: int = 0
