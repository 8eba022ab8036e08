"""Test clients that behave like the family's real members (written from their behaviour, not their code).

- ``lingyi_backend.LingYiBackend``: LingYi's bridge client (a backend that never acks, reconnects forever);
- ``lingyi_webapp.LingYiWebApp``: LingYi's web app (HTTPS, self-signed, loopback-only notify, discussion lookup);
- ``lingclaude_receiver.LingClaudeReceiver``: LingClaude's notify (``X-API-Key`` or 401; HEAD 405);
- ``lingzhi_receiver.LingzhiReceiver``: lingzhi's notify (``from_id`` only, acts only on ``new_message``);
- ``mailbox_reader``: open the id a notify names in the shared mailbox directory, as the members do.

Each module's docstring names the member's code it follows and what that code does on the wire.
"""
