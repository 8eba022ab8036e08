from __future__ import annotations

from django.apps import AppConfig


class LingMessageConfig(AppConfig):
    """The LingMessage mailbox channel: writes the discussions the hub accepts into the shared mailbox and picks
    up what members post there (``HUB_LINGMESSAGE_DIR``; off when unset)."""

    name = "hub.lingmessage"
    label = "lingmessage"
    verbose_name = "LingMessage mailbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from foundation.signals import message_accepted
        from hub.lingmessage import writer

        message_accepted.connect(writer.on_message_accepted, dispatch_uid="lingmessage.mailbox_writer")
