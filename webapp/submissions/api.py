"""REST API of submissions: upload (one or many), read with the verdict, list with filters, progress, and the
analyst's confirmation of a verdict."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle
from rest_framework.views import APIView

from webapp.cases.models import Case
from webapp.cases.selectors import case_get
from webapp.common.permissions import Reattributor, TeamMember, request_team, request_user
from webapp.common.schema import error_responses
from webapp.common.uploads import UploadRejected
from webapp.submissions.forms import (
    ConfirmationInput,
    ReattributionScopeSerializer,
    SubmissionFilterSerializer,
    selector_kwargs,
    submission_filters,
)
from webapp.submissions.models import Confirmation, Submission, Verdict
from webapp.submissions.selectors import (
    MAX_ID,
    ConfirmationReading,
    VerdictChange,
    VerdictReading,
    confirmation_reading,
    generator_names,
    submission_confirmation,
    submission_get,
    submission_list,
    submission_progress,
    submission_provenance,
    verdict_changes,
    verdict_label,
    verdict_reading,
    verdicts_attach,
)
from webapp.submissions.services import (
    ConfirmationRefused,
    ReattributionRefused,
    submission_confirm,
    submission_confirmation_clear,
    submission_create,
    submission_create_batch,
    submissions_reattribute,
)
from webapp.teams.models import Team

MAX_PROGRESS_IDS = 1000

class NearestReferenceOutput(serializers.Serializer):
    sha256 = serializers.CharField()
    label = serializers.CharField(help_text="The reference image's generator (slug)")  # type: ignore[assignment]
    similarity = serializers.FloatField(help_text="Cosine similarity of the features")


class VerdictOutput(serializers.Serializer):
    label = serializers.SerializerMethodField(  # type: ignore[assignment]
        help_text="The attributed class (generator slug, or real); empty for an unrecognised image"
    )
    closest_known = serializers.CharField(
        source="label", help_text="The most likely class the head knows (for an unrecognised image too)"
    )
    decision = serializers.ChoiceField(choices=Verdict.Decision.choices)
    summary = serializers.SerializerMethodField(help_text="The decision in words")
    confidence = serializers.SerializerMethodField(help_text="high, medium or low (docs/architecture.md)")
    score = serializers.FloatField(help_text="Open-set score; under the threshold means unknown generator")
    threshold = serializers.FloatField()
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="Class -> probability")
    head_version = serializers.IntegerField(source="head_version.version")
    backbone = serializers.CharField()
    pretrained = serializers.BooleanField(help_text="False: a demonstration backbone, not evidence")
    nearest_references = NearestReferenceOutput(many=True)
    elapsed_ms = serializers.FloatField()
    created_at = serializers.DateTimeField()

    def _reading(self, verdict: Verdict) -> VerdictReading:
        context = cast(dict[str, Any], self.context)  # the serializer's own context dict, shared by its fields
        if "generator_names" not in context:
            context["generator_names"] = generator_names()
        return verdict_reading(verdict=verdict, names=context["generator_names"])

    @extend_schema_field(OpenApiTypes.STR)
    def get_label(self, verdict: Verdict) -> str:
        return verdict_label(verdict=verdict)

    @extend_schema_field(OpenApiTypes.STR)
    def get_summary(self, verdict: Verdict) -> str:
        return self._reading(verdict).sentence

    @extend_schema_field(OpenApiTypes.STR)
    def get_confidence(self, verdict: Verdict) -> str:
        return self._reading(verdict).band


class ConfirmationOutput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Confirmation.Status.choices, help_text="confirmed: the verdict is right; disputed: it is wrong"
    )
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="What the analyst says the image is: a registered class's slug (or real), another generator in "
        "words, or empty (confirmed: an unregistered source, as the unrecognised verdict says; disputed: not said)"
    )
    generator = serializers.CharField(
        allow_null=True, help_text="The registered generator the label names (slug); null for words or no label"
    )
    note = serializers.CharField()
    confirmed_by = serializers.CharField(help_text="Username of the analyst (empty if since deleted)")
    confirmed_at = serializers.DateTimeField(help_text="When the analyst last said it")
    verdict_head_version = serializers.IntegerField(
        allow_null=True,
        help_text="The head version of the verdict the analyst judged: older than the latest verdict's when the "
        "image was judged again since",
    )


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
    confirmation = serializers.SerializerMethodField(
        help_text="What an analyst of the team says of the verdict; null until someone confirms or disputes it"
    )

    @extend_schema_field(ConfirmationOutput(allow_null=True))
    def get_confirmation(self, submission: Submission) -> dict[str, Any] | None:
        if getattr(submission, "current_confirmation", None) is None:
            return None
        context = cast(dict[str, Any], self.context)  # the serializer's own context dict, shared by its rows
        if "generator_names" not in context:
            context["generator_names"] = generator_names()
        reading = submission_confirmation(submission=submission, names=context["generator_names"])
        return _confirmation_data(reading) if reading is not None else None


def _confirmation_data(reading: ConfirmationReading) -> dict[str, Any]:
    return dict(ConfirmationOutput(reading.as_dict()).data)


class ProvenanceClaimOutput(serializers.Serializer):
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=["c2pa", "xmp", "png-text", "exif"], help_text="Where in the file the claim was found"
    )
    says = serializers.ChoiceField(choices=["generated", "edited with AI", "camera capture", "edited"])
    generator = serializers.CharField(
        allow_null=True, help_text="The generator it names, as found: a product, a checkpoint name or a model hash"
    )
    strength = serializers.ChoiceField(
        choices=["strong", "medium", "weak"],
        help_text="strong: a C2PA manifest signed by a trusted signer; medium: validly signed, untrusted signer; "
        "weak: anything else, text any tool can write or remove",
    )
    detail = serializers.DictField(help_text="The raw evidence (size-capped): settings, model hash, camera, ...")


class C2paSignerOutput(serializers.Serializer):
    issuer = serializers.CharField(allow_null=True)
    common_name = serializers.CharField(allow_null=True)


class C2paOutput(serializers.Serializer):
    claim_generator = serializers.CharField(
        allow_null=True, help_text="The tool that made the manifest, and its version"
    )
    digital_source_type = serializers.CharField(
        allow_null=True, help_text="The IPTC digital source type, e.g. trainedAlgorithmicMedia"
    )
    signer = C2paSignerOutput(allow_null=True)
    validation = serializers.ChoiceField(
        choices=["valid", "untrusted", "invalid_signature", "hash_mismatch", "malformed"],
        help_text="valid: signature, chain to a trust anchor (C2PA_TRUST_ANCHORS) and hash binding check; untrusted: "
        "all check but the signer is not trusted; hash_mismatch: the pixels changed after signing",
    )
    codes = serializers.ListField(child=serializers.CharField(), help_text="The C2PA validation codes, failures first")


class ProvenanceOutput(serializers.Serializer):
    claims = ProvenanceClaimOutput(many=True)
    c2pa = C2paOutput(allow_null=True, help_text="The active C2PA manifest; null when the file has none")
    agreement = serializers.ChoiceField(
        choices=["agrees", "conflicts", "none"],
        help_text="How the strongest claims stand to the latest verdict; none: nothing to compare (no claims, "
        "no verdict yet, or claims that say nothing about origin)",
    )
    reason = serializers.CharField(help_text="Why, in one sentence")


class SubmissionDetailOutput(SubmissionOutput):
    provenance = serializers.SerializerMethodField(
        help_text="What the file itself says about its origin, beside the pixels' verdict. Metadata can be stripped "
        "and weak claims forged: a missing claim proves nothing."
    )

    @extend_schema_field(ProvenanceOutput)
    def get_provenance(self, submission: Submission) -> dict[str, Any]:
        return submission_provenance(submission=submission)


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


class SubmissionCursorPagination(CursorPagination):
    """Newest first, by cursor: a page costs the same at the millionth row as at the first, and no count of
    every match is made (`next` and `previous` are links; there are no page numbers)."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class SubmissionListCreateApi(UploadThrottled, GenericAPIView):
    permission_classes = [IsAuthenticated, TeamMember]
    parser_classes = [MultiPartParser, FormParser]
    pagination_class = SubmissionCursorPagination
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
                user=request_user(request),
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
                team=team, user=request_user(request), uploaded_files=data.validated_data["images"], case=case
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
        operation_id="submissions_retrieve", responses={200: SubmissionDetailOutput, **error_responses(404)}
    )
    def get(self, request: Request, pk: int) -> Response:
        submission = submission_get(team=request_team(request), submission_id=pk)
        if submission is None:
            raise NotFound("no such submission")
        return Response(SubmissionDetailOutput(submission).data)


class SubmissionConfirmationApi(APIView):
    """`POST {"status": "confirmed" | "disputed", "label", "note"}`: what a member of the team says of the
    submission's latest verdict (replacing what was said before); `DELETE` withdraws it."""

    permission_classes = [IsAuthenticated, TeamMember]

    def _submission(self, request: Request, pk: int) -> Submission:
        submission = submission_get(team=request_team(request), submission_id=pk)
        if submission is None:
            raise NotFound("no such submission")
        return submission

    @extend_schema(
        operation_id="submissions_confirmation_create",
        request=ConfirmationInput,
        responses={200: ConfirmationOutput, 201: ConfirmationOutput, **error_responses(400, 404)},
        summary="Confirm or dispute the submission's latest verdict (201 the first time, 200 when it replaces "
        "an earlier word); 400 when it has no verdict yet or the label contradicts the status",
    )
    def post(self, request: Request, pk: int) -> Response:
        submission = self._submission(request, pk)
        data = ConfirmationInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            confirmation, created = submission_confirm(
                submission=submission,
                actor=request_user(request),
                status=data.validated_data["status"],
                label=data.validated_data.get("label", ""),
                note=data.validated_data.get("note", ""),
            )
        except ConfirmationRefused as refused:
            raise ValidationError({refused.field: [str(refused)]}) from None
        reading = confirmation_reading(confirmation=confirmation, latest_verdict_id=submission.verdict_id)
        return Response(_confirmation_data(reading), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="submissions_confirmation_destroy",
        request=None,
        responses={204: None, **error_responses(404)},
        summary="Withdraw the confirmation or dispute of the submission's verdict (204 also when there was none)",
    )
    def delete(self, request: Request, pk: int) -> Response:
        submission = self._submission(request, pk)
        try:
            submission_confirmation_clear(submission=submission, actor=request_user(request))
        except ConfirmationRefused as refused:
            raise ValidationError({refused.field: [str(refused)]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


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


# --- re-attribution with the active head --------------------------------------------------------------

QUEUED = inline_serializer("ReattributeQueued", {"queued": serializers.IntegerField()})


def _scope_case(team: Team, data: dict[str, Any]) -> Case | None:
    if "case" not in data:
        return None
    case = case_get(team=team, case_id=data["case"])
    if case is None:
        raise NotFound("No such case in your team.")
    return case


class ReattributeApi(APIView):
    """`POST` JSON `case` (id) or `since` (ISO date-time): queue the team's submissions for a verdict by
    the active head; 202 with the number `queued`."""

    permission_classes = [TeamMember, Reattributor]
    serializer_class = ReattributionScopeSerializer

    @extend_schema(request=ReattributionScopeSerializer, responses={202: QUEUED, **error_responses(400, 404)})
    def post(self, request: Request) -> Response:
        team = request_team(request)
        data = ReattributionScopeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            queued = submissions_reattribute(
                actor=request.user,
                team=team,
                case=_scope_case(team, data.validated_data),
                since=data.validated_data.get("since"),
            )
        except ReattributionRefused as error:
            raise ValidationError({"detail": str(error)}) from None
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)


class VerdictSideSerializer(serializers.Serializer):
    head_version = serializers.IntegerField(source="head_version.version")
    label = serializers.SerializerMethodField(help_text="Empty for an unrecognised image")  # type: ignore[assignment]
    closest_known = serializers.CharField(source="label")
    decision = serializers.CharField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_label(self, verdict: Verdict) -> str:
        return verdict_label(verdict=verdict)


class VerdictChangeSerializer(serializers.Serializer):
    submission = serializers.IntegerField(source="submission.pk")
    previous = VerdictSideSerializer()
    current = VerdictSideSerializer()


@extend_schema(
    parameters=[ReattributionScopeSerializer],
    responses={200: VerdictChangeSerializer(many=True), **error_responses(400, 404)},
)
class VerdictChangesApi(generics.ListAPIView):
    """`GET ?case=ID` or `?since=ISO date-time`: the team's submissions whose latest verdict changed the
    decision or the label of the one before it, newest first."""

    permission_classes = [TeamMember]
    serializer_class = VerdictChangeSerializer

    def get_queryset(self) -> list[VerdictChange]:  # type: ignore[override]
        team = request_team(self.request)
        query = ReattributionScopeSerializer(
            data={key: value for key, value in self.request.query_params.items() if value}
        )
        query.is_valid(raise_exception=True)
        return verdict_changes(
            team=team, case=_scope_case(team, query.validated_data), since=query.validated_data.get("since")
        )
