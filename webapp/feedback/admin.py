from django.contrib import admin

from webapp.feedback.models import FieldPrediction, ReferencePromotion, UnknownCluster


@admin.register(UnknownCluster)
class UnknownClusterAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "size", "nearest_known", "first_seen", "last_seen", "generator"]
    list_filter = ["status"]
    readonly_fields = ["feature_space", "size", "nearest_known", "nearest_known_share", "first_seen", "last_seen"]


@admin.register(FieldPrediction)
class FieldPredictionAdmin(admin.ModelAdmin):
    list_display = ["head_version", "submission", "decision", "label", "score"]
    readonly_fields = ["head_version", "submission", "label", "decision", "score"]


@admin.register(ReferencePromotion)
class ReferencePromotionAdmin(admin.ModelAdmin):
    list_display = ["reference", "submission", "source", "cluster", "promoted_by", "created_at"]
    readonly_fields = ["reference", "submission", "source", "cluster", "promoted_by"]
