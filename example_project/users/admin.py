"""Users in the admin, to see what ``users.update_all`` wrote."""

from __future__ import annotations

from django.contrib import admin

from .models import DemoUser


@admin.register(DemoUser)
class DemoUserAdmin(admin.ModelAdmin):
    list_display = ["username", "display_name", "logins", "last_seen", "score", "scored_at"]
    search_fields = ["username", "email"]
    readonly_fields = ["score", "display_name", "scored_at"]
