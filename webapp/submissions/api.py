"""REST API of submissions: upload (one or many), read with the verdict, list with filters, progress."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle
from rest_framework.views import APIView

from webapp.cases.models import Case
from webapp.cases.selectors import case_get
from webapp.core.permissions import TeamMember, request_team
from webapp.submissions.forms import SubmissionFilterSerializer, selector_kwargs, submission_filters
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.selectors import (
    MAX_ID,
    generator_names,
    submission_get,
    submission_list,
    submission_progress,
    verdict_sentence,
    verdicts_attach,
)
from webapp.submissions.services import submission_create, submission_create_batch
from webapp.submissions.validation import UploadRejected
from webapp.teams.models import Team

MAX_PROGRESS_IDS = 1000

_ERRORS = {
    400: OpenApiResponse(
        OpenApiTypes.OBJECT, description="Invalid request: the body names each problem by field"
    ),
    401: OpenApiResponse(OpenApiTypes.OBJECT, description="Not authenticated"),
    403: OpenApiResponse(OpenApiTypes.OBJECT, description="Not a member of any team"),
    404: OpenApiResponse(OpenApiTypes.OBJECT, description="No such object in your team"),
    429: OpenApiResponse(
        OpenApiTypes.OBJECT, description="Too many uploads for now: retry after the delay given"
    ),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an endpoint (always 401 and 403)."""
    return {code: _ERRORS[code] for code in sorted({401, 403, *codes})}


class NearestReferenceOutput(serializers.Serializer):
    sha256 = serializers.CharField()
    label = serializers.CharField(help_text="The reference image's generator (slug)")
    similarity = serializers.FloatField(help_text="Cosine similarity of the features")


class VerdictOutput(serializers.Serializer):
    label = serializers.CharField(help_text="The most likely class (generator slug, or real)")
    decision = serializers.ChoiceField(choices=Verdict.Decision.choices)
    summary = serializers.SerializerMethodField(help_text="The decision in words")
    score = serializers.FloatField(help_text="Open-set score; under the threshold means unknown generator")
    threshold = serializers.FloatField()
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Class -> probability")
    head_version = serializers.IntegerField(source="head_version.version")
    backbone = serializers.CharField()
    pretrained = serializers.BooleanField(help_text="False: a demonstration backbone, not evidence")
    nearest_references = NearestReferenceOutput(many=True)
    elapsed_ms = serializers.FloatField()
    created_at = serializers.DateTimeField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_summary(self, verdict: Verdict) -> str:
        if "generator_names" not in self.context:
            self.context["generator_names"] = generator_names()
        return verdict_sentence(verdict=verdict, names=self.context["generator_names"])


class SubmissionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Submission.Status.choices, source="current_status")
    sha256 = serializers.CharField()
    case = serializers.IntegerField(source="case_id", allow_null=True)
    created_at = serializers.DateTimeField()
    error = serializers.CharField(source="current_error", help_text="Why it failed (empty unless failed)")
    original_name = serializers.CharField()
    submitted_by = serializers.CharField(source="submitted_by.username")
    duplicate_of = serializers.IntegerField(
        source="duplicate_of_id",
        allow_null=True,
        help_text="The earlier upload of the same image, whose verdict this shows",
    )
    image_format = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    verdict = VerdictOutput(
        source="current_verdict", allow_null=True, help_text="Null until the status is done"
    )


class SubmissionCreateInput(serializers.Serializer):
    image = serializers.FileField(allow_empty_file=True, help_text="JPEG, PNG, WebP, GIF, BMP or TIFF")
    case = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Id of one of your cases"
    )


class SubmissionBatchInput(serializers.Serializer):
    images = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        allow_empty=False,
        help_text="One or more image files",
    )
    case = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Id of one of your cases"
    )


class UploadResultOutput(serializers.Serializer):
    name = serializers.CharField()
    accepted = serializers.BooleanField()
    error = serializers.CharField(help_text="Why the file was refused (empty when accepted)")
    id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(allow_null=True)
    sha256 = serializers.CharField(allow_null=True)
    duplicate_of = serializers.IntegerField(allow_null=True)


class SubmissionBatchOutput(serializers.Serializer):
    case = serializers.IntegerField(allow_null=True)
    accepted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = UploadResultOutput(many=True)


def _case_from(team: Team, case_id: int | None) -> Case | None:
    if case_id is None:
        return None
    case = case_get(team=team, case_id=case_id)
    if case is None:
        raise ValidationError({"case": [f"no case with id {case_id} in your team"]})
    return case


class UploadThrottled:
    """Upload requests count against the `upload` throttle scope; reads do not."""

    throttle_scope = "upload"

    def get_throttles(self) -> list[BaseThrottle]:
        request: Request = self.request  # type: ignore[attr-defined]
        return [ScopedRateThrottle()] if request.method == "POST" else []


class SubmissionListCreateApi(UploadThrottled, GenericAPIView):
    permission_classes = [IsAuthenticated, TeamMember]
    parser_classes = [MultiPartParser, FormParser]
    pagination_class = PageNumberPagination
    serializer_class = SubmissionOutput

    @extend_schema(
        operation_id="submissions_list",
        parameters=[SubmissionFilterSerializer],
        responses={200: SubmissionOutput(many=True), **error_responses(400, 404)},
        summary="The team's submissions, newest first, with the history filters",
    )
    def get(self, request: Request) -> Response:
        filters = submission_filters(request.query_params)
        filters.is_valid(raise_exception=True)
        submissions = submission_list(team=request_team(request), **selector_kwargs(filters.validated_data))
        page = self.paginate_queryset(submissions)
        return self.get_paginated_response(SubmissionOutput(verdicts_attach(page or []), many=True).data)

    @extend_schema(
        operation_id="submissions_create",
        request={"multipart/form-data": SubmissionCreateInput},
        responses={201: SubmissionOutput, **error_responses(400, 429)},
        summary="Upload one image: it is queued, or linked to the team's earlier upload of it",
    )
    def post(self, request: Request) -> Response:
        data = SubmissionCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        team = request_team(request)
        try:
            submission = submission_create(
                team=team,
                user=request.user,
                uploaded_file=data.validated_data["image"],
                case=_case_from(team, data.validated_data.get("case")),
            )
        except UploadRejected as rejected:
            raise ValidationError({"image": [str(rejected)]}) from None
        created = submission_get(team=team, submission_id=submission.pk)
        return Response(SubmissionOutput(created).data, status=status.HTTP_201_CREATED)


class SubmissionBatchCreateApi(UploadThrottled, APIView):
    permission_classes = [IsAuthenticated, TeamMember]
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="submissions_batch_create",
        request={"multipart/form-data": SubmissionBatchInput},
        responses={200: SubmissionBatchOutput, **error_responses(400, 429)},
        summary="Upload many images at once: each is accepted or refused with its reason",
    )
    def post(self, request: Request) -> Response:
        data = SubmissionBatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        team = request_team(request)
        case = _case_from(team, data.validated_data.get("case"))
        try:
            outcomes = submission_create_batch(
                team=team, user=request.user, uploaded_files=data.validated_data["images"], case=case
            )
        except UploadRejected as rejected:
            raise ValidationError({"images": [str(rejected)]}) from None
        results: list[dict[str, Any]] = [
            {
                "name": o.name,
                "accepted": o.submission is not None,
                "error": o.error,
                "id": o.submission.pk if o.submission else None,
                "status": (o.submission.duplicate_of or o.submission).status if o.submission else None,
                "sha256": o.submission.sha256 if o.submission else None,
                "duplicate_of": o.submission.duplicate_of_id if o.submission else None,
            }
            for o in outcomes
        ]
        accepted = sum(r["accepted"] for r in results)
        body = {"case": case.pk if case else None, "accepted": accepted, "rejected": len(results) - accepted}
        return Response(SubmissionBatchOutput({**body, "results": results}).data)


class SubmissionDetailApi(APIView):
    permission_classes = [IsAuthenticated, TeamMember]

    @extend_schema(
        operation_id="submissions_retrieve", responses={200: SubmissionOutput, **error_responses(404)}
    )
    def get(self, request: Request, pk: int) -> Response:
        submission = submission_get(team=request_team(request), submission_id=pk)
        if submission is None:
            raise NotFound("no such submission")
        return Response(SubmissionOutput(submission).data)


class ProgressInput(serializers.Serializer):
    ids = serializers.CharField(help_text="Comma-separated submission ids")

    def validate_ids(self, value: str) -> list[int]:
        try:
            ids = {int(part) for part in value.split(",") if part.strip()}
        except ValueError:
            raise serializers.ValidationError("ids must be comma-separated integers") from None
        if len(ids) > MAX_PROGRESS_IDS:
            raise serializers.ValidationError(f"at most {MAX_PROGRESS_IDS} ids at a time")
        return sorted(pk for pk in ids if 0 < pk <= MAX_ID)  # others name no submission


class ProgressRowOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Submission.Status.choices)
    error = serializers.CharField()
    url = serializers.CharField(help_text="The submission's verdict page")
    decision = serializers.CharField(allow_null=True)
    summary = serializers.CharField(help_text="The verdict in words, when done")


class SubmissionProgressApi(APIView):
    permission_classes = [IsAuthenticated, TeamMember]

    @extend_schema(
        operation_id="submissions_progress",
        parameters=[
            OpenApiParameter("ids", str, required=True, description="Comma-separated submission ids")
        ],
        responses={
            200: inline_serializer(
                "SubmissionProgress",
                {
                    "counts": serializers.DictField(
                        child=serializers.IntegerField(), help_text="Status -> count"
                    ),
                    "submissions": ProgressRowOutput(many=True),
                },
            ),
            **error_responses(400),
        },
        summary="Status of many submissions at once (the upload page polls it)",
    )
    def get(self, request: Request) -> Response:
        data = ProgressInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        rows = submission_progress(team=request_team(request), submission_ids=data.validated_data["ids"])
        counts = {status: 0 for status in Submission.Status.values}
        for row in rows:
            counts[row["status"]] += 1
        return Response({"counts": counts, "submissions": ProgressRowOutput(rows, many=True).data})
