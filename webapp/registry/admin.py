"""Django admin for the registry; its actions call the same services as the web UI and the API."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from webapp.registry import services
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "family", "release", "is_active", "builtin"]
    list_filter = ["family", "is_active"]
    search_fields = ["name", "slug"]
    readonly_fields = ["builtin", "created_at"]
    actions = ["train_head"]

    def save_model(self, request: HttpRequest, obj: Generator, form: ModelForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        if change:
            original = Generator.objects.get(pk=obj.pk)
            services.generator_update(actor=request.user, generator=original, **fields)
        else:
            created = services.generator_create(actor=request.user, **form.cleaned_data)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Generator) -> None:
        services.generator_delete(actor=request.user, generator=obj)

    def has_delete_permission(self, request: HttpRequest, obj: Generator | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.builtin)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletion goes through the service, one at a time
        return actions

    @admin.action(description="Train a new head on every active generator")
    def train_head(self, request: HttpRequest, queryset: QuerySet[Generator]) -> None:
        try:
            job = services.training_job_start(requested_by=request.user)
        except services.RegistryError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, f"Training job {job.pk} queued.")


@admin.register(ReferenceImage)
class ReferenceImageAdmin(admin.ModelAdmin):
    list_display = ["original_name", "generator", "sha256", "width", "height", "created_at"]
    list_filter = ["generator"]
    search_fields = ["sha256", "original_name"]
    readonly_fields = [f.name for f in ReferenceImage._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # uploads go through the registry page or the API, with the upload checks

    def delete_model(self, request: HttpRequest, obj: ReferenceImage) -> None:
        services.reference_image_delete(actor=request.user, reference=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ReferenceImage]) -> None:
        for reference in queryset:
            services.reference_image_delete(actor=request.user, reference=reference)


@admin.register(HeadVersion)
class HeadVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "status", "head_kind", "backbone", "pretrained", "threshold", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in HeadVersion._meta.fields]
    actions = ["activate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: HeadVersion | None = None) -> bool:
        return False  # verdicts point at their head version

    @admin.action(description="Activate the selected head version (an older one is a rollback)")
    def activate(self, request: HttpRequest, queryset: QuerySet[HeadVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one head version to activate.", messages.ERROR)
            return
        head = services.head_version_activate(head_version=queryset.get(), actor=request.user)
        self.message_user(request, f"Head v{head.version} is active.")


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "step", "progress", "requested_by", "head_version", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in TrainingJob._meta.fields]
    actions = ["cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel the selected training jobs")
    def cancel(self, request: HttpRequest, queryset: QuerySet[TrainingJob]) -> None:
        for job in queryset:
            try:
                services.training_job_cancel(job=job, actor=request.user)
            except services.RegistryError as error:
                self.message_user(request, str(error), messages.WARNING)
