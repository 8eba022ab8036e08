from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import admin
from django.utils import timezone

from feishu.activity import group_mark_active
from feishu.models import ActiveGroup, CardAction, ReceivedEvent, SeenMessage


@admin.register(ActiveGroup)
class ActiveGroupAdmin(admin.ModelAdmin):
    list_display = [
        "chat_id", "name", "active", "always_on", "last_activity_at", "expires_at", "cursor",
        "bots", "last_polled_at", "lease_owner", "deactivated_at",
    ]  # fmt: skip
    list_filter = ["always_on", ("deactivated_at", admin.EmptyFieldListFilter)]
    list_editable = ["always_on"]
    search_fields = ["chat_id", "name"]
    readonly_fields = [
        "last_activity_at", "expires_at", "cursor_ms", "cursor", "known_bots", "next_poll_at", "last_polled_at",
        "lease_owner", "lease_expires_at", "deactivated_at", "last_error", "created_at",
    ]  # fmt: skip
    actions = ["mark_active"]

    @admin.display(boolean=True)
    def active(self, group: ActiveGroup) -> bool:
        return group.is_active()

    @admin.display(description="cursor (newest message seen)")
    def cursor(self, group: ActiveGroup) -> datetime | None:
        return datetime.fromtimestamp(group.cursor_ms / 1000, tz=UTC) if group.cursor_ms else None

    @admin.display(description="known bots")
    def bots(self, group: ActiveGroup) -> str:
        return ", ".join(sorted(group.known_bots or {})) or "—"

    @admin.action(description="Mark active now (and clear a deactivation)")
    def mark_active(self, request, queryset) -> None:
        now = timezone.now()
        for group in queryset:
            group_mark_active(chat_id=group.chat_id, now=now)
        self.message_user(request, f"{queryset.count()} group(s) marked active.")


@admin.register(SeenMessage)
class SeenMessageAdmin(admin.ModelAdmin):
    list_display = ["message_id", "chat_id", "create_time_ms", "relayed_to", "seen_at"]
    search_fields = ["message_id", "chat_id"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ReceivedEvent)
class ReceivedEventAdmin(admin.ModelAdmin):
    list_display = ["key", "event_type", "received_at"]
    search_fields = ["key"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CardAction)
class CardActionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "card_sender", "state", "operator_id", "original_message_id", "answered_at"]
    list_filter = ["state"]
    search_fields = ["key", "card_sender", "original_message_id", "message_id", "feishu_message_id"]
    readonly_fields = [f.name for f in CardAction._meta.fields]

    @admin.display(description="operator")
    def operator_id(self, action: CardAction) -> str:
        return (action.operator or {}).get("open_id", "")

    def has_add_permission(self, request) -> bool:
        return False
