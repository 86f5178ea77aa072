"""REST API of the registry: generators, reference images, head versions, training jobs.

Every team member (and registry admin) reads; only registry admins write (members get 403).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.common.permissions import RegistryAdmin, RegistryReadAdminWrite
from webapp.common.schema import error_responses
from webapp.common.uploads import UploadRejected
from webapp.registry import selectors, services
from webapp.registry.models import Generator, HeadVersion, ImportJob, ReferenceImage, TrainingJob

CONFLICT = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Conflicts with the current state: `detail` says how"
)


def _django_errors(error: DjangoValidationError) -> ValidationError:
    return ValidationError(error.message_dict if hasattr(error, "error_dict") else {"detail": error.messages})


# --- generators and reference images ----------------------------------------------------------------


class GeneratorSerializer(serializers.ModelSerializer):
    reference_count = serializers.IntegerField(read_only=True)
    aliases = serializers.ListField(
        child=serializers.CharField(max_length=200, allow_blank=True),
        max_length=50,
        required=False,
        help_text=(
            "Other names it goes by in a file's provenance: a product (Adobe Firefly), a checkpoint "
            "(sd_xl_base_1.0), a model hash"
        ),
    )

    class Meta:
        model = Generator
        fields = [
            "name", "slug", "family", "description", "release", "is_active", "aliases", "builtin",
            "reference_count", "created_at",
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
    generator: serializers.SlugRelatedField[Generator] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
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
        return selectors.reference_image_list(generator=self.generator(), user=self.request.user)

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


# --- bulk import -----------------------------------------------------------------------------------


class ImportJobSerializer(serializers.ModelSerializer):
    requested_by = serializers.SerializerMethodField()
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = ImportJob
        fields = [
            "id", "status", "original_name", "per_class", "create_generators", "processed", "total", "progress",
            "summary", "error", "requested_by", "created_at", "started_at", "finished_at",
        ]  # fmt: skip

    def get_requested_by(self, job: ImportJob) -> str | None:
        return str(job.requested_by) if job.requested_by is not None else None


class ImportUploadSerializer(serializers.Serializer):
    archive = serializers.FileField()
    per_class = serializers.IntegerField(required=False, min_value=1, allow_null=True, default=None)
    create_generators = serializers.BooleanField(required=False, default=False)


class ImportJobCreateApi(APIView):
    """`POST` multipart `archive` (a zip or tar of an ImageFolder: `<generator slug>/**`, optionally under
    one top folder)[, `per_class`, `create_generators`] (admins): 202 with the import job, which a worker
    runs; poll `GET /api/v1/generators/import/{id}/`."""

    permission_classes = [RegistryAdmin]
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = ImportJobSerializer

    @extend_schema(
        request={"multipart/form-data": ImportUploadSerializer},
        responses={202: ImportJobSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = ImportUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            job = services.import_job_create(requested_by=request.user, **data.validated_data)
        except services.RegistryError as error:
            raise ValidationError({"archive": [str(error)]}) from None
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(responses={200: ImportJobSerializer, **error_responses(404)})
class ImportJobDetailApi(generics.RetrieveAPIView):
    """An import job's `status`, `processed` / `total` archive entries, `progress` (0 to 1) and `summary`
    (per class: added, already present, refused with reasons)."""

    permission_classes = [RegistryAdmin]
    serializer_class = ImportJobSerializer

    def get_queryset(self) -> QuerySet[ImportJob]:
        return ImportJob.objects.select_related("requested_by")


# --- head versions ----------------------------------------------------------------------------------


class HeadMethodSerializer(serializers.Serializer):
    blocks = serializers.ListField(child=serializers.IntegerField(), help_text="0-based blocks the head reads")
    feature_join = serializers.CharField(help_text="concat, or l2 (each block L2-normalised, then joined)")
    blocks_chosen_by_training = serializers.BooleanField()
    score_method = serializers.CharField(help_text="The open-set score: msp, log_msp, max_logit, energy, ...")
    score_comparison = serializers.DictField(help_text="Held-out AUROC and OSCR of each score measured")
    C = serializers.FloatField(allow_null=True, help_text="Inverse regularisation of the linear probe")
    k = serializers.IntegerField(allow_null=True, help_text="Neighbours of a kNN head")
    select_by = serializers.CharField(allow_null=True, help_text="logo, accuracy or paper")
    criterion = serializers.CharField(allow_null=True)
    class_weight = serializers.CharField(allow_null=True)
    robust_training = serializers.BooleanField()


class HeadVersionSerializer(serializers.ModelSerializer):
    created_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField(allow_null=True)
    metrics = serializers.SerializerMethodField()
    method = serializers.SerializerMethodField()

    class Meta:
        model = HeadVersion
        fields = [
            "version", "status", "head_kind", "classes", "blocks", "backbone", "pretrained", "threshold",
            "method", "metrics", "created_by", "created_at", "activated_at",
        ]  # fmt: skip

    @extend_schema_field(HeadMethodSerializer)
    def get_method(self, head: HeadVersion) -> dict[str, Any]:
        return selectors.head_version_method(head_version=head)

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
    requested_by: serializers.StringRelatedField[Any] = serializers.StringRelatedField(allow_null=True)

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
        request=None, responses={202: TrainingJobSerializer, 409: CONFLICT, **error_responses(400, 503)}
    )
    def post(self, request: Request) -> Response:
        try:
            job = services.training_job_start(requested_by=request.user)
        except services.TrainingAlreadyRunning as running:
            return Response({"detail": str(running), "job": running.job.pk}, status=status.HTTP_409_CONFLICT)
        except services.TrainingNotQueued as unsent:
            return Response(
                {"detail": str(unsent), "job": unsent.job.pk},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(unsent.retry_after_s)},
            )
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
