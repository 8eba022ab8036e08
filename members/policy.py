"""The words of a member's send policy: which message types and formats exist.

They are defined above the member registry (message types by the message store, formats by the delivery
core), so the registry is told them at start-up (``hub.apps`` calls ``declare``) rather than importing them;
the admin form and the ``member`` command offer and check exactly these. ``delivery.policy`` applies the
policy to each send.
"""

from __future__ import annotations

# The Member fields of the policy (with ``send_rate_per_minute``, the rate the hub counts first).
FIELDS = ("priority", "allowed_message_types", "allowed_formats", "dedupe_seconds", "daily_cap")
MESSAGE_TYPES: list[str] = []
FORMATS: list[str] = []


def declare(*, message_types: list[str], formats: list[str]) -> None:
    """Set the message types and formats a policy may name (called once the apps are ready)."""
    MESSAGE_TYPES[:] = list(message_types)
    FORMATS[:] = list(formats)


def policy_list_problem(what: str, values: object) -> str | None:
    """Why ``values`` is not a list of known ``what`` ("message_types" or "formats"), or None when it is."""
    known = MESSAGE_TYPES if what == "message_types" else FORMATS
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return f"{what} must be a list of names"
    unknown = sorted(set(values) - set(known)) if known else []
    if unknown:
        return f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
    return None
