from __future__ import annotations

from django.contrib import admin

from hub.models import ChannelKindSwitch


@admin.register(ChannelKindSwitch)
class ChannelKindSwitchAdmin(admin.ModelAdmin):
    list_display = ["kind", "enabled", "note", "updated_at"]
    list_editable = ["enabled", "note"]
