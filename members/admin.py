from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from members import policy
from members.apprise_urls import apprise_private
from members.models import Channel, Member, masked_headers, unmask_headers
from members.services import member_rotate_token, member_set_enabled

NOTIFY_FIELDS = ["endpoint_ca", "endpoint_insecure", "endpoint_headers", "signature_style", "notify_event"]


class MemberForm(forms.ModelForm):
    """The send policy's lists as tick boxes of the message types and formats the hub knows."""

    allowed_message_types = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every type."
    )
    allowed_formats = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every format."
    )

    class Meta:
        model = Member
        fields = ["allowed_message_types", "allowed_formats"]  # the admin's fieldsets add the others

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["allowed_message_types"].choices = [(t, t) for t in policy.MESSAGE_TYPES]
        self.fields["allowed_formats"].choices = [(f, f) for f in policy.FORMATS]
        if "priority" in self.fields:  # left empty (a form posted by a script made before it existed): the default
            self.fields["priority"].required = False

    def clean_priority(self) -> int:
        return self.cleaned_data.get("priority") or Member._meta.get_field("priority").default


class ChannelForm(forms.ModelForm):
    """A channel's form: the extra headers and an Apprise URL are shown masked, and a value left masked keeps the
    stored secret."""

    class Meta:
        model = Channel
        fields = ["member", "kind", "address", "app_id", "secret", "enabled", "rate_per_minute", *NOTIFY_FIELDS]
        widgets = {
            "endpoint_headers": forms.Textarea(attrs={"rows": 2, "cols": 60}),
            "endpoint_ca": forms.Textarea(attrs={"rows": 2, "cols": 60}),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.endpoint_headers and "endpoint_headers" in self.fields:
            self.initial["endpoint_headers"] = masked_headers(self.instance.endpoint_headers)
        if self.instance.pk and self.instance.kind == Channel.Kind.APPRISE and "address" in self.fields:
            self.initial["address"] = self.instance.shown_address

    def clean_address(self) -> str:
        """The submitted address; an Apprise URL left as shown (masked) keeps the stored one."""
        submitted = self.cleaned_data.get("address", "")
        stored = Channel.objects.filter(pk=self.instance.pk).values_list("kind", "address").first()
        if stored and stored[0] == Channel.Kind.APPRISE and stored[1] and submitted == apprise_private(stored[1]):
            return stored[1]
        return submitted

    def clean_endpoint_headers(self) -> str:
        stored = Channel.objects.filter(pk=self.instance.pk).values_list("endpoint_headers", flat=True).first() or ""
        return unmask_headers(self.cleaned_data.get("endpoint_headers", ""), stored)


class ChannelInline(admin.StackedInline):
    model = Channel
    form = ChannelForm
    extra = 0
    fieldsets = [
        (None, {"fields": [("kind", "enabled"), "address", ("app_id", "secret"), "rate_per_minute", "state"]}),
        (
            "HTTP endpoint (LingMessage, OpenClaw): how the hub talks to it",
            {"classes": ["collapse"], "fields": NOTIFY_FIELDS},
        ),
        ("Health", {"fields": [("last_seen", "last_ok"), "last_error"]}),
    ]
    readonly_fields = ["state", "last_seen", "last_ok", "last_error"]

    @admin.display(description="state")
    def state(self, channel: Channel) -> str:
        if not channel.pk:
            return "-"
        if not channel.enabled:
            return "disabled"
        if channel.is_live():
            return "live"
        return f"refusing: {channel.last_error[:80]}" if channel.refused and channel.last_error else "down"


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = [
        "member_id",
        "name",
        "kind",
        "status",
        "last_seen_at",
        "preferred_channel",
        "channel_kinds",
        "enabled",
    ]
    list_filter = ["kind", "enabled", "preferred_channel", "trust_loopback", "channels__kind"]
    search_fields = ["member_id", "name", "channels__address", "channels__app_id"]
    readonly_fields = ["token_hint", "token_rotated_at", "last_online", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["member_id", "name", "kind", "enabled"]}),
        ("Routing", {"fields": ["preferred_channel", "send_rate_per_minute", "trust_loopback"]}),
        (
            "Send policy",
            {
                "fields": ["priority", "allowed_message_types", "allowed_formats", "dedupe_seconds", "daily_cap"],
                "description": "What this member may send (docs/gateway.md); the send rate is above.",
            },
        ),
        ("Credentials", {"fields": ["token_hint", "token_rotated_at", "notify_secret"]}),
        ("Audit", {"fields": ["last_online", "created_at", "updated_at"]}),
    ]
    form = MemberForm
    inlines = [ChannelInline]
    actions = ["rotate_tokens", "enable_members", "disable_members"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Member]:
        return super().get_queryset(request).prefetch_related("channels")

    def get_readonly_fields(self, request: HttpRequest, obj: Member | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "member_id"] if obj else fields

    @admin.display(description="status")
    def status(self, member: Member) -> str:
        if not member.enabled:
            return format_html('<span class="hub-state hub-disabled">{}</span>', "disabled")
        state = "online" if member.is_online(timezone.now()) else "offline"
        return format_html('<span class="hub-state hub-{}">{}</span>', state, state)

    @admin.display(description="last seen")
    def last_seen_at(self, member: Member):
        return member.last_seen()

    @admin.display(description="channels")
    def channel_kinds(self, member: Member) -> str:
        return ", ".join(sorted({c.kind for c in member.channels.all()})) or "-"

    def save_model(self, request: HttpRequest, obj: Member, form, change: bool) -> None:
        token = None if change else obj.set_new_token()
        super().save_model(request, obj, form, change)
        if token:
            self.message_user(
                request, f"Token for {obj.member_id} (shown only now, copy it): {token}", messages.WARNING
            )

    @admin.action(description="Rotate the token of the selected members")
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        for member in queryset:
            token = member_rotate_token(member=member)
            self.message_user(
                request, f"New token for {member.member_id} (shown only now, copy it): {token}", messages.WARNING
            )

    @admin.action(description="Enable the selected members")
    def enable_members(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        count = queryset.update(enabled=True, updated_at=timezone.now())
        self.message_user(request, f"Enabled {count} member(s).")

    @admin.action(description="Disable the selected members")
    def disable_members(self, request: HttpRequest, queryset: QuerySet[Member]) -> None:
        count = 0
        for member in queryset.filter(enabled=True):
            member_set_enabled(member=member, enabled=False)  # one by one: each one's sockets close
            count += 1
        self.message_user(request, f"Disabled {count} member(s).")


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["member", "kind", "shown_address", "enabled", "headers", "last_seen", "last_ok", "last_error_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["member__member_id", "address", "app_id"]
    list_select_related = ["member"]
    readonly_fields = ["live_connection", "last_seen", "last_ok", "last_error", "last_error_at", "created_at"]
    actions = ["enable_channels", "disable_channels"]

    @admin.display(description="address", ordering="address")
    def shown_address(self, channel: Channel) -> str:
        return channel.shown_address

    @admin.display(description="extra headers")
    def headers(self, channel: Channel) -> str:
        return masked_headers(channel.endpoint_headers) if channel.endpoint_headers else "-"

    @admin.action(description="Enable the selected channels")
    def enable_channels(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        self.message_user(request, f"Enabled {queryset.update(enabled=True)} channel(s).")

    @admin.action(description="Disable the selected channels")
    def disable_channels(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        self.message_user(request, f"Disabled {queryset.update(enabled=False)} channel(s).")
