"""REST API of the unknown pile's clusters (site staff only): list, read, register as a new generator, dismiss."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.common.permissions import SiteStaff
from webapp.common.schema import error_responses
from webapp.feedback.models import UnknownCluster
from webapp.feedback.selectors.clusters import (
    STATUS_FILTERS,
    ClusterSummary,
    unknown_cluster_get,
    unknown_cluster_queryset,
    unknown_clusters_summarise,
)
from webapp.feedback.services.clusters import ClusterRefused, unknown_cluster_dismiss, unknown_cluster_register
from webapp.registry.api import GeneratorSerializer
from webapp.registry.models import Generator
from webapp.registry.selectors import generator_list

MAX_EXCLUDE = 5000
BIGINT_MAX = 2**63 - 1
CONFLICT = OpenApiResponse(OpenApiTypes.OBJECT, description="The cluster is no longer open: `detail` says how")
FAMILIES = [(value, label) for value, label in Generator.Family.choices if value != Generator.Family.REAL]


class UnknownClusterSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="cluster.pk")
    status = serializers.ChoiceField(source="cluster.status", choices=UnknownCluster.Status.choices)
    size = serializers.IntegerField(source="cluster.size", help_text="Members (submissions)")
    submission_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="The members' submission ids, nearest the cluster's centre first"
    )
    nearest_known = serializers.CharField(
        source="cluster.nearest_known",
        help_text="The known class most members were closest to (their verdicts' `closest_known`)",
    )
    nearest_known_share = serializers.FloatField(
        source="cluster.nearest_known_share", help_text="Share of the members closest to `nearest_known` (0 to 1)"
    )
    first_seen = serializers.DateTimeField(source="cluster.first_seen", allow_null=True)
    last_seen = serializers.DateTimeField(source="cluster.last_seen", allow_null=True)
    teams = serializers.DictField(child=serializers.IntegerField(), help_text="Members per team name")
    feature_space = serializers.CharField(
        source="cluster.feature_space", help_text="Backbone identity and blocks the members were clustered in"
    )
    generator = serializers.SerializerMethodField(help_text="The generator it was registered as (its slug)")
    decided_at = serializers.DateTimeField(source="cluster.decided_at", allow_null=True)

    def get_generator(self, summary: ClusterSummary) -> str | None:
        generator = summary.cluster.generator
        return generator.slug if generator is not None else None


def _summary(pk: int) -> ClusterSummary:
    summary = unknown_cluster_get(cluster_id=pk)
    if summary is None:
        raise Http404("No such cluster")
    return summary


class UnknownClusterListApi(generics.ListAPIView):
    """`GET` the clusters of images rejected as unknown, largest first: the open ones (`status=open`, the
    default), the `registered` or `dismissed` ones, or `all`. Site staff only."""

    permission_classes = [SiteStaff]
    serializer_class = UnknownClusterSerializer

    def get_queryset(self) -> Any:
        wanted = self.request.query_params.get("status", "open")
        if wanted not in STATUS_FILTERS:
            raise ValidationError({"status": f"One of {', '.join(STATUS_FILTERS)}."})
        return unknown_cluster_queryset(status=wanted)

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=list(STATUS_FILTERS), description="Default: open")],
        responses={200: UnknownClusterSerializer(many=True), **error_responses(400)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        data = UnknownClusterSerializer(unknown_clusters_summarise(page or []), many=True).data
        return self.get_paginated_response(data)


class UnknownClusterDetailApi(APIView):
    """`GET` one cluster, of any status. Site staff only."""

    permission_classes = [SiteStaff]
    serializer_class = UnknownClusterSerializer

    @extend_schema(responses={200: UnknownClusterSerializer, **error_responses(404)})
    def get(self, request: Request, pk: int) -> Response:
        return Response(UnknownClusterSerializer(_summary(pk)).data)


class ClusterRegisterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.SlugField(max_length=100)
    family = serializers.ChoiceField(choices=FAMILIES, default=Generator.Family.OTHER)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=BIGINT_MAX),
        required=False,
        default=list,
        max_length=MAX_EXCLUDE,
        help_text="Members' submission ids to leave out (outliers): they return to the unknown pile",
    )


class ClusterRegistrationSerializer(serializers.Serializer):
    generator = GeneratorSerializer()
    reference_count = serializers.IntegerField(help_text="The generator's reference images now")
    references_added = serializers.IntegerField(help_text="Members whose image became a new reference")
    training_job = serializers.IntegerField(
        allow_null=True, help_text="The training job started for the new generator (its id), or null"
    )
    training_error = serializers.CharField(
        allow_null=True,
        help_text="Why no training was started (one already queued or running, the task queue down, too few "
        "reference images); null when one was. The generator is registered either way.",
    )
    cluster = UnknownClusterSerializer()


class UnknownClusterRegisterApi(APIView):
    """`POST` JSON `name`, `slug`[, `family`, `description`, `exclude`]: register the open cluster as a new
    generator. Its members' images (less `exclude`) become the generator's reference images, the cluster is
    marked registered, and a training job starts on every active generator's references: 201 with the
    generator, its reference count and the job's id (`training_job`), or null and the reason
    (`training_error`) when none could start. 409 when the cluster is no longer open. Site staff only."""

    permission_classes = [SiteStaff]
    serializer_class = ClusterRegistrationSerializer

    @extend_schema(
        request=ClusterRegisterSerializer,
        responses={201: ClusterRegistrationSerializer, 409: CONFLICT, **error_responses(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        cluster = _summary(pk).cluster
        data = ClusterRegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        if cluster.status != UnknownCluster.Status.OPEN:
            return _conflict(cluster)
        try:
            registration = unknown_cluster_register(
                cluster=cluster,
                name=fields["name"],
                slug=fields["slug"],
                family=fields["family"],
                description=fields["description"],
                exclude_submission_ids=fields["exclude"],
                actor=request.user,
            )
        except ClusterRefused as refused:
            if refused.field == "detail":
                return _conflict(cluster, str(refused))
            raise ValidationError({refused.field: [str(refused)]}) from None
        except DjangoValidationError as error:
            raise ValidationError(
                error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages}
            ) from None
        body = {
            "generator": generator_list().get(pk=registration.generator.pk),
            "reference_count": registration.reference_count,
            "references_added": sum(p.created for p in registration.promotions),
            "training_job": registration.training_job.pk if registration.training_job else None,
            "training_error": registration.training_error or None,
            "cluster": _summary(pk),
        }
        return Response(ClusterRegistrationSerializer(body).data, status=status.HTTP_201_CREATED)


class ClusterDismissSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class UnknownClusterDismissApi(APIView):
    """`POST` [JSON `reason`]: set the open cluster aside; its members stay out of later clusterings. 409 when
    it is no longer open. Site staff only."""

    permission_classes = [SiteStaff]
    serializer_class = UnknownClusterSerializer

    @extend_schema(
        request=ClusterDismissSerializer,
        responses={200: UnknownClusterSerializer, 409: CONFLICT, **error_responses(400, 404)},
    )
    def post(self, request: Request, pk: int) -> Response:
        cluster = _summary(pk).cluster
        data = ClusterDismissSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            unknown_cluster_dismiss(cluster=cluster, actor=request.user, reason=data.validated_data["reason"])
        except ClusterRefused as refused:
            return _conflict(cluster, str(refused))
        return Response(UnknownClusterSerializer(_summary(pk)).data)


def _conflict(cluster: UnknownCluster, detail: str = "") -> Response:
    return Response(
        {"detail": detail or f"Unknown cluster {cluster.pk} is already {cluster.get_status_display().lower()}."},
        status=status.HTTP_409_CONFLICT,
    )
