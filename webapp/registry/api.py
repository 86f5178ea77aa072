"""REST API of the registry: generators, reference images, head versions, training jobs, re-attribution.

Every team member (and registry admin) reads; only registry admins write (members get 403).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.cases.models import Case
from webapp.core.permissions import RegistryAdmin, TeamMember, request_team
from webapp.registry import selectors, services
from webapp.registry.models import Generator, HeadVersion, ReferenceImage, TrainingJob
from webapp.submissions.api import error_responses
from webapp.submissions.validation import UploadRejected
from webapp.teams.selectors import team_for_user, user_is_registry_admin


class RegistryReadAdminWrite(BasePermission):
    """Reads for team members and registry admins; writes for registry admins only."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            self.message = TeamMember.message
            return team_for_user(user=request.user) is not None or user_is_registry_admin(user=request.user)
        self.message = RegistryAdmin.message
        return user_is_registry_admin(user=request.user)


class Reattributor(BasePermission):
    message = "Only team admins and registry admins may re-attribute submissions."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return selectors.user_may_reattribute(user=request.user)


CONFLICT = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Conflicts with the current state: `detail` says how"
)
QUEUED = inline_serializer("ReattributeQueued", {"queued": serializers.IntegerField()})


def _django_errors(error: DjangoValidationError) -> ValidationError:
    return ValidationError(error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages})


# --- generators and reference images ----------------------------------------------------------------


class GeneratorSerializer(serializers.ModelSerializer):
    reference_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Generator
        fields = [
            "name", "slug", "family", "description", "release", "is_active", "builtin", "reference_count",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["builtin", "created_at"]
        extra_kwargs = {"family": {"required": True}}  # generator_create needs it: 400, not a server error


@extend_schema_view(
    get=extend_schema(responses={200: GeneratorSerializer(many=True), **error_responses()}),
    post=extend_schema(responses={201: GeneratorSerializer, **error_responses(400)}),
)
class GeneratorListApi(generics.ListCreateAPIView):
    """`GET` every generator; `POST` JSON `name`, `slug`, `family`, `description`[, `release`] (admins)."""

    permission_classes = [RegistryReadAdminWrite]
    serializer_class = GeneratorSerializer

    def get_queryset(self) -> QuerySet[Generator]:
        return selectors.generator_list()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = GeneratorSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            generator = services.generator_create(actor=request.user, **data.validated_data)
        except DjangoValidationError as error:
            raise _django_errors(error) from None
        return Response(GeneratorSerializer(selectors.generator_list().get(pk=generator.pk)).data, status=201)


@extend_schema_view(
    get=extend_schema(responses={200: GeneratorSerializer, **error_responses(404)}),
    patch=extend_schema(responses={200: GeneratorSerializer, **error_responses(400, 404)}),
    delete=extend_schema(responses={204: None, **error_responses(400, 404)}),
)
class GeneratorDetailApi(generics.RetrieveUpdateDestroyAPIView):
    """`GET`, `PATCH` (admins) and `DELETE` (admins) one generator by slug; "real" is built in."""

    permission_classes = [RegistryReadAdminWrite]
    serializer_class = GeneratorSerializer
    lookup_field = "slug"
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Generator]:
        return selectors.generator_list()

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        generator = self.get_object()
        data = GeneratorSerializer(generator, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            services.generator_update(actor=request.user, generator=generator, **data.validated_data)
        except services.RegistryError as error:
            raise ValidationError({"detail": str(error)}) from None
        except DjangoValidationError as error:
            raise _django_errors(error) from None
        return Response(GeneratorSerializer(self.get_queryset().get(pk=generator.pk)).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            services.generator_delete(actor=request.user, generator=self.get_object())
        except services.RegistryError as error:
            raise ValidationError({"detail": str(error)}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReferenceImageSerializer(serializers.ModelSerializer):
    generator = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = ReferenceImage
        fields = [
            "id", "generator", "original_name", "sha256", "size_bytes", "image_format", "width", "height",
            "url", "created_at",
        ]  # fmt: skip

    def get_url(self, reference: ReferenceImage) -> str:
        return f"/media/{reference.image.name}"


class ReferenceUploadSerializer(serializers.Serializer):
    image = serializers.FileField()


@extend_schema_view(
    get=extend_schema(responses={200: ReferenceImageSerializer(many=True), **error_responses(404)}),
    post=extend_schema(
        request={"multipart/form-data": ReferenceUploadSerializer},
        responses={201: ReferenceImageSerializer, 200: ReferenceImageSerializer, **error_responses(400, 404)},
    ),
)
class ReferenceImageListApi(generics.ListCreateAPIView):
    """`GET` a generator's reference images; `POST` multipart `image` adds one (admins): 201 when new,
    200 with `duplicate: true` when the generator already has that image, 400 naming why a file is refused."""

    permission_classes = [RegistryReadAdminWrite]
    serializer_class = ReferenceImageSerializer
    parser_classes = [MultiPartParser, FormParser]

    def generator(self) -> Generator:
        return get_object_or_404(Generator, slug=self.kwargs["slug"])

    def get_queryset(self) -> QuerySet[ReferenceImage]:
        return selectors.reference_image_list(generator=self.generator())

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ReferenceUploadSerializer if self.request.method == "POST" else ReferenceImageSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        generator = self.generator()
        data = ReferenceUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            reference, created = services.reference_image_create(
                generator=generator, upload=data.validated_data["image"], uploaded_by=request.user
            )
        except UploadRejected as rejected:
            raise ValidationError({"image": [str(rejected)]}) from None
        body = ReferenceImageSerializer(reference).data | {"duplicate": not created}
        return Response(body, status=201 if created else 200)


# --- head versions ----------------------------------------------------------------------------------


class HeadVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField(allow_null=True)
    metrics = serializers.SerializerMethodField()

    class Meta:
        model = HeadVersion
        fields = [
            "version", "status", "head_kind", "classes", "blocks", "backbone", "pretrained", "threshold",
            "metrics", "created_by", "created_at", "activated_at",
        ]  # fmt: skip

    def get_metrics(self, head: HeadVersion) -> dict[str, Any]:
        # The confusion matrix, per-class figures and misclassified samples are in the detail view.
        keys = ("accuracy", "macro_f1", "auroc", "oscr", "n_samples", "head", "threshold_source")
        return {key: head.metrics.get(key) for key in keys}


class HeadVersionDetailSerializer(HeadVersionSerializer):
    class Meta(HeadVersionSerializer.Meta):
        fields = [*HeadVersionSerializer.Meta.fields, "manifest"]

    def get_metrics(self, head: HeadVersion) -> dict[str, Any]:
        return dict(head.metrics)


@extend_schema(responses={200: HeadVersionSerializer(many=True), **error_responses()})
class HeadVersionListApi(generics.ListAPIView):
    permission_classes = [RegistryReadAdminWrite]
    serializer_class = HeadVersionSerializer

    def get_queryset(self) -> QuerySet[HeadVersion]:
        return selectors.head_version_list()


@extend_schema(responses={200: HeadVersionDetailSerializer, **error_responses(404)})
class HeadVersionDetailApi(generics.RetrieveAPIView):
    permission_classes = [RegistryReadAdminWrite]
    serializer_class = HeadVersionDetailSerializer
    lookup_field = "version"

    def get_queryset(self) -> QuerySet[HeadVersion]:
        return selectors.head_version_list()


class HeadVersionActivateApi(APIView):
    """`POST`: make this version the active head (an older one than the active head is a rollback)."""

    permission_classes = [RegistryAdmin]
    serializer_class = HeadVersionSerializer

    @extend_schema(request=None, responses={200: HeadVersionSerializer, **error_responses(404)})
    def post(self, request: Request, version: int) -> Response:
        head = get_object_or_404(selectors.head_version_list(), version=version)
        services.head_version_activate(head_version=head, actor=request.user)
        head.refresh_from_db()
        return Response(HeadVersionSerializer(head).data)


# --- training jobs ----------------------------------------------------------------------------------


class TrainingJobSerializer(serializers.ModelSerializer):
    head_version = serializers.SerializerMethodField()
    requested_by = serializers.StringRelatedField(allow_null=True)

    class Meta:
        model = TrainingJob
        fields = [
            "id", "status", "step", "progress", "log", "error", "cancel_requested", "head_version",
            "requested_by", "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_head_version(self, job: TrainingJob) -> int | None:
        return job.head_version.version if job.head_version is not None else None


class HeadTrainApi(APIView):
    """`POST`: start a training job on the `training` queue: 202 with its `id` and `status`; 409 while
    another job is queued or running; 400 when fewer than two generators have reference images."""

    permission_classes = [RegistryAdmin]
    serializer_class = TrainingJobSerializer

    @extend_schema(
        request=None, responses={202: TrainingJobSerializer, 409: CONFLICT, **error_responses(400)}
    )
    def post(self, request: Request) -> Response:
        try:
            job = services.training_job_start(requested_by=request.user)
        except services.TrainingAlreadyRunning as running:
            return Response({"detail": str(running), "job": running.job.pk}, status=status.HTTP_409_CONFLICT)
        except services.RegistryError as error:
            raise ValidationError({"detail": str(error)}) from None
        return Response(TrainingJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: TrainingJobSerializer(many=True), **error_responses()})
class TrainingJobListApi(generics.ListAPIView):
    permission_classes = [RegistryReadAdminWrite]
    serializer_class = TrainingJobSerializer

    def get_queryset(self) -> QuerySet[TrainingJob]:
        return selectors.training_job_list()


@extend_schema(responses={200: TrainingJobSerializer, **error_responses(404)})
class TrainingJobDetailApi(generics.RetrieveAPIView):
    """A job's `status`, `step`, `progress` (0 to 1), `log`, `error`, and the `head_version` it made."""

    permission_classes = [RegistryReadAdminWrite]
    serializer_class = TrainingJobSerializer

    def get_queryset(self) -> QuerySet[TrainingJob]:
        return selectors.training_job_list()


class TrainingJobCancelApi(APIView):
    """`POST`: cancel a queued job now, or ask a running one to stop at its next step (409 if finished)."""

    permission_classes = [RegistryAdmin]
    serializer_class = TrainingJobSerializer

    @extend_schema(
        request=None, responses={200: TrainingJobSerializer, 409: CONFLICT, **error_responses(404)}
    )
    def post(self, request: Request, pk: int) -> Response:
        job = get_object_or_404(selectors.training_job_list(), pk=pk)
        try:
            job = services.training_job_cancel(job=job, actor=request.user)
        except services.RegistryError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(TrainingJobSerializer(selectors.training_job_list().get(pk=job.pk)).data)


# --- re-attribution ---------------------------------------------------------------------------------


class ScopeSerializer(serializers.Serializer):
    case = serializers.IntegerField(required=False)
    since = serializers.DateTimeField(required=False)


def _scope(team_cases: QuerySet[Case], data: dict[str, Any]) -> Case | None:
    return get_object_or_404(team_cases, pk=data["case"]) if "case" in data else None


class ReattributeSerializer(ScopeSerializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "case" not in attrs and "since" not in attrs:
            raise ValidationError("Give a `case` id or a `since` date-time.")
        return attrs


class ReattributeApi(APIView):
    """`POST` JSON `case` (id) or `since` (ISO date-time): queue the team's submissions for a verdict by
    the active head; 202 with the number `queued`."""

    permission_classes = [TeamMember, Reattributor]
    serializer_class = ReattributeSerializer

    @extend_schema(request=ReattributeSerializer, responses={202: QUEUED, **error_responses(400, 404)})
    def post(self, request: Request) -> Response:
        team = request_team(request)
        data = ReattributeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        case = _scope(Case.objects.filter(team=team), data.validated_data)
        try:
            queued = services.submissions_reattribute(
                actor=request.user, team=team, case=case, since=data.validated_data.get("since")
            )
        except services.RegistryError as error:
            raise ValidationError({"detail": str(error)}) from None
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)


class VerdictSideSerializer(serializers.Serializer):
    head_version = serializers.IntegerField(source="head_version.version")
    label = serializers.CharField()
    decision = serializers.CharField()


class VerdictChangeSerializer(serializers.Serializer):
    submission = serializers.IntegerField(source="submission.pk")
    previous = VerdictSideSerializer()
    current = VerdictSideSerializer()


@extend_schema(
    parameters=[ScopeSerializer],
    responses={200: VerdictChangeSerializer(many=True), **error_responses(400, 404)},
)
class VerdictChangesApi(generics.ListAPIView):
    """`GET ?case=ID` or `?since=ISO date-time`: the team's submissions whose latest verdict changed the
    decision or the label of the one before it, newest first."""

    permission_classes = [TeamMember]
    serializer_class = VerdictChangeSerializer

    def get_queryset(self) -> list[selectors.VerdictChange]:  # type: ignore[override]
        team = request_team(self.request)
        query = ScopeSerializer(
            data={key: value for key, value in self.request.query_params.items() if value}
        )
        query.is_valid(raise_exception=True)
        case = _scope(Case.objects.filter(team=team), query.validated_data)
        return selectors.verdict_changes(team=team, case=case, since=query.validated_data.get("since"))
