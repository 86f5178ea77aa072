from __future__ import annotations

from django.contrib import admin

from webapp.cases.models import Case


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "reference", "team", "status", "created_by", "created_at"]
    list_filter = ["status", "team"]
    search_fields = ["title", "reference"]
    readonly_fields = ["team", "created_by", "created_at"]
