from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from offline_queue import selectors
from offline_queue.actions import ActionTally, messages_discard, messages_retry_now
from offline_queue.models import DeliveryAttempt, DeliveryLease, Message
from offline_queue.policy import RetryPolicy


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["started_at", "channel", "outcome", "latency_ms", "error"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "message_id",
        "sender_id",
        "recipient",
        "message_type",
        "status",
        "retry_count",
        "next_retry_at",
        "delivered_via",
        "created_at",
        "last_error_short",
    ]
    list_filter = ["status", "message_type", "delivered_via", "source", "recipient"]
    search_fields = ["message_id", "sender_id", "recipient__member_id", "topic", "content", "last_error"]
    date_hierarchy = "created_at"
    list_select_related = ["recipient"]
    readonly_fields = [
        "message_id",
        "sender_id",
        "recipient",
        "sequence",
        "source",
        "idempotency_key",
        "accepted_channel",
        "delivered_via",
        "created_at",
        "delivered_at",
        "expires_at",
        "retry_count",
        "last_attempt_at",
        "next_retry_at",
        "lease_owner",
        "lease_expires_at",
        "last_error",
        "status",
    ]
    fieldsets = [
        (None, {"fields": ["message_id", "sender_id", "recipient", "message_type", "topic", "content"]}),
        ("Thread", {"fields": ["thread_id", "reply_to", "sequence", "source", "idempotency_key", "metadata"]}),
        (
            "Delivery",
            {
                "fields": [
                    "status",
                    "accepted_channel",
                    "delivered_via",
                    "created_at",
                    "delivered_at",
                    "expires_at",
                    "retry_count",
                    "max_retries",
                    "last_attempt_at",
                    "next_retry_at",
                    "last_error",
                    "lease_owner",
                    "lease_expires_at",
                ]
            },
        ),
    ]
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now", "discard"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # messages enter through the API, the bridge and Feishu, which persist them first

    @admin.display(description="last error")
    def last_error_short(self, message: Message) -> str:
        return (message.last_error[:80] + "…") if len(message.last_error) > 80 else message.last_error

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        policy = RetryPolicy.current()
        extra_context = {
            **(extra_context or {}),
            "retry_policy": policy,
            "retry_schedule": ", ".join(f"{s} s" for s in policy.schedule()),
            "queue_totals": selectors.queue_totals(),
        }
        return super().changelist_view(request, extra_context=extra_context)

    @admin.action(description="Retry now (waiting ones at once; expired or failed ones back in the queue)")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        tally = messages_retry_now(messages=queryset, user=request.user.get_username())
        self._report(request, tally, f"{tally.done} message(s) will be retried on the next pass of the scheduler.")

    @admin.action(description="Discard (stop delivering; closed ones are marked as looked at)")
    def discard(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        tally = messages_discard(messages=queryset, user=request.user.get_username())
        self._report(request, tally, f"{tally.done} message(s) discarded.", level=messages.WARNING)

    def _report(self, request: HttpRequest, tally: ActionTally, done: str, level: int = messages.INFO) -> None:
        self.message_user(request, done, level)
        for refusal in tally.refused:
            self.message_user(request, refusal, messages.ERROR)


@admin.register(DeliveryLease)
class DeliveryLeaseAdmin(admin.ModelAdmin):
    list_display = ["sender_id", "recipient", "owner", "expires_at"]
    readonly_fields = ["sender_id", "recipient", "owner", "expires_at"]
    list_select_related = ["recipient"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
