from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from webapp.submissions.models import Confirmation, Submission, Verdict
from webapp.submissions.services import submissions_requeue


class VerdictInline(admin.TabularInline):
    model = Verdict
    extra = 0
    can_delete = False
    fields = [
        "head_version",
        "label",
        "decision",
        "score",
        "threshold",
        "backbone",
        "pretrained",
        "created_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]


class ConfirmationInline(admin.StackedInline):
    """What an analyst said of the verdict: read only here (the verdict page and the API record it, with the
    audit event and the submission's `confirmation_status`)."""

    model = Confirmation
    extra = 0
    can_delete = False
    fields = ["status", "label", "generator", "note", "verdict", "confirmed_by", "created_at", "updated_at"]
    readonly_fields = fields  # type: ignore[assignment]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ["id", "original_name", "team", "case", "status", "attempts", "submitted_by", "created_at"]
    list_filter = ["status", "team", "image_format"]
    search_fields = ["original_name", "sha256"]
    readonly_fields = [f.name for f in Submission._meta.fields]
    inlines = [VerdictInline, ConfirmationInline]
    actions = ["requeue"]

    @admin.action(description="Queue the selected submissions again (attempts reset)")
    def requeue(self, request: HttpRequest, queryset: QuerySet[Submission]) -> None:
        queued = submissions_requeue(
            submission_ids=queryset.values_list("id", flat=True), reset_attempts=True
        )
        self.message_user(request, f"{len(queued)} submissions queued again.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "submission",
        "head_version",
        "label",
        "decision",
        "score",
        "pretrained",
        "created_at",
    ]
    list_filter = ["decision", "pretrained", "head_version"]
    readonly_fields = [f.name for f in Verdict._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
