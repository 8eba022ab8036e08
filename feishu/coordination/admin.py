from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from feishu.coordination import selectors
from feishu.coordination.models import BotReply, Claim, CollisionLog


@admin.register(Claim)
class ClaimAdmin(admin.ModelAdmin):
    list_display = [
        "message_id",
        "chat_id",
        "holder",
        "holder_kind",
        "state",
        "claimed_at",
        "expires_at",
        "answered_by",
    ]
    list_filter = ["holder_kind"]
    search_fields = ["chat_id", "message_id", "holder", "answered_by"]
    readonly_fields = [f.name for f in Claim._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="state")
    def state(self, claim: Claim) -> str:
        if claim.answered_at:
            return "answered"
        if claim.released_at:
            return "released"
        return "held" if claim.is_fresh() else "expired"


@admin.register(CollisionLog)
class CollisionLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "chat_link", "kind", "describe", "repair_text"]
    list_filter = ["kind"]
    search_fields = ["chat_id", "message_id", "repair_text"]
    readonly_fields = ["chat_id", "message_id", "bots", "kind", "repair_text", "created_at"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="chat")
    def chat_link(self, row: CollisionLog):
        return format_html('<a href="{}">{}</a>', memory_url(row.chat_id), row.chat_id)

    @admin.display(description="memory")
    def describe(self, row: CollisionLog) -> str:
        return row.describe()

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("memory/", view(self.memory_view), name="coordination_collisionlog_memory_index"),
            # Older links; the admin's own links put the chat in the query (memory_url), which takes any string.
            path("memory/<str:chat_id>/", view(self.memory_view), name="coordination_collisionlog_memory"),
            *super().get_urls(),
        ]

    def memory_view(self, request: HttpRequest, chat_id: str | None = None) -> HttpResponse:
        """The collaboration memory per chat: every chat with entries, or one chat's recent entries."""
        chat_id = chat_id or request.GET.get("chat_id") or None
        chats = None if chat_id else [{**chat, "url": memory_url(chat["chat_id"])} for chat in self._chats()]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Collaboration memory of {chat_id}" if chat_id else "Collaboration memory per chat",
            "opts": self.model._meta,
            "chat_id": chat_id,
            "chats": chats,
            "entries": selectors.collaboration_memory(chat_id=chat_id, limit=100) if chat_id else None,
            "now": timezone.now(),
        }
        return TemplateResponse(request, "admin/coordination/memory.html", context)

    def _chats(self) -> list[dict]:
        return list(selectors.chats_with_memory()[:200])


def memory_url(chat_id: str) -> str:
    """The admin page of one chat's collaboration memory; the chat id (any stored string: '/', '?', spaces,
    newlines) travels in the query string, so no chat id can break the link."""
    return reverse("admin:coordination_collisionlog_memory_index") + "?" + urlencode({"chat_id": chat_id})


@admin.register(BotReply)
class BotReplyAdmin(admin.ModelAdmin):
    list_display = ["sent_at", "chat_id", "sender", "message_id", "target_id"]
    search_fields = ["chat_id", "sender", "message_id", "target_id"]
    readonly_fields = ["chat_id", "message_id", "target_id", "sender", "sent_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
