"""Signals that connect the parts of the hub without importing each other.

``member_online``: a member became reachable on ``channel_kind`` (a bridge backend registered, an endpoint
probe turned green). Sent with ``member_id`` and ``channel_kind`` from sync code (use ``asend`` from async
code); the offline queue listens and flushes what waits for the member.
"""

from __future__ import annotations

from django.dispatch import Signal

member_online = Signal()

# ``alert_raised``: an operator alert (expired or failed messages, …) with ``text``, sent from a worker. Each
# operator channel (the Feishu alert webhook, the alert member) is a receiver, so the part that raises alerts
# imports none of them; ``send_robust`` keeps one broken channel from silencing the others.
alert_raised = Signal()

# ``message_accepted``: a message's row was committed and its first delivery attempt is about to be made (or it
# waits behind an earlier one), with ``message``. Sent by ``delivery.services.message_send`` with
# ``send_robust`` (a failing receiver is logged, never stops the send); the LingMessage mailbox writes
# discussions into the shared mailbox here, before any notify about them goes out.
message_accepted = Signal()

# ``member_removing``: an operator is removing ``member`` (``force``: even though something still waits for it).
# Each receiver returns "" when nothing of its own stands in the way, else what does ("3 messages wait for
# it"), or with ``force`` what it did about it ("3 waiting messages expired with an alert"). Sent by
# ``members.services.member_remove`` inside its transaction, before the member is deleted.
member_removing = Signal()

# ``member_revoked``: a member's access ended (``member_id``, ``reason``: "disabled", "token rotated", "removed"). Sent
# by ``members`` once the change is committed (``members.revocation``); the bridge closes every open socket of the
# member, in every process, with 4001 (``hub.bridge.revocation``). A receiver returns False when it reached no
# running hub (the sockets stay open), True or None otherwise; ``members.revocation.revocations_reported`` collects
# that for the code that made the change.
member_revoked = Signal()
