"""What the mailbox channel keeps in the database: where its scans of the mailbox stopped."""

from __future__ import annotations

from django.db import models


class MailboxCursor(models.Model):
    """The durable cursor of one scan of the mailbox (``threads`` or ``discussions``): a small JSON text
    (``hub.lingmessage.scan.Cursor``), saved after every pass, so a restart resumes where the last pass stopped."""

    name = models.CharField(max_length=32, unique=True)
    position = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} cursor"
