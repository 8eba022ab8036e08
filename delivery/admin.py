from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from delivery.formats import FormatError
from delivery.models import ChannelKindSwitch, RouteRule
from delivery.routes import route_dry_run
from members.models import Member
from offline_queue.models import Message


@admin.register(ChannelKindSwitch)
class ChannelKindSwitchAdmin(admin.ModelAdmin):
    list_display = ["kind", "enabled", "note", "updated_at"]
    list_editable = ["enabled", "note"]


class DryRunForm(forms.Form):
    """A message to route without sending it: who sends what to whom."""

    sender = forms.ModelChoiceField(Member.objects.all(), to_field_name="member_id")
    recipient = forms.ModelChoiceField(Member.objects.all(), to_field_name="member_id")
    message_type = forms.ChoiceField(choices=Message.Type.choices, initial=Message.Type.NOTIFICATION)
    priority = forms.IntegerField(min_value=1, max_value=5, required=False, help_text="Empty: the sender's own.")
    topic = forms.CharField(required=False)


@admin.register(RouteRule)
class RouteRuleAdmin(admin.ModelAdmin):
    list_display = ["position", "name", "enabled", "rule", "target", "channel_kind", "updated_at"]
    list_display_links = ["name"]
    list_editable = ["position", "enabled"]
    list_filter = ["enabled", "mode", "message_type", "channel_kind"]
    list_select_related = ["target"]
    search_fields = ["name", "sender", "recipient", "topic_pattern", "target__member_id"]
    autocomplete_fields = ["target"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "position"]}),
        ("Messages matching", {"fields": ["sender", "recipient", "message_type", "min_priority", "topic_pattern"]}),
        ("Go", {"fields": ["mode", "target", "channel_kind"]}),
    ]
    change_list_template = "admin/hub/routerule/change_list.html"

    @admin.display(description="rule")
    def rule(self, rule: RouteRule) -> str:
        return rule.describe()

    def get_urls(self):
        dry_run = self.admin_site.admin_view(self.dry_run_view)
        return [path("dry-run/", dry_run, name="hub_routerule_dry_run"), *super().get_urls()]

    def dry_run_view(self, request: HttpRequest) -> HttpResponse:
        """Where would this message go? The rules as they are now, applied to a message that is not sent."""
        form = DryRunForm(request.GET or None)
        answer, error = None, ""
        if form.is_valid():
            data = form.cleaned_data
            send = {
                "recipient_id": data["recipient"].member_id,
                "message_type": data["message_type"],
                "priority": data["priority"],
                "topic": data["topic"],
                "content": "(dry run)",
            }
            try:
                answer = route_dry_run(member=data["sender"], request=send)
            except (FormatError, LookupError) as exc:
                error = str(exc)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Where would this message go?",
            "form": form,
            "answer": answer,
            "error": error,
        }
        return TemplateResponse(request, "admin/hub/routerule/dry_run.html", context)
