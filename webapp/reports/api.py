"""REST API of cases and what they add up to: list, create, read with the summary of its submissions,
edit, and the case report as a PDF."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.cases.models import Case
from webapp.cases.selectors import case_get, case_list
from webapp.cases.services import case_create, case_update
from webapp.common.permissions import TeamMember, request_team, request_user
from webapp.common.schema import error_responses
from webapp.reports.forms import CaseSubmissionsInput
from webapp.reports.selectors import case_summary
from webapp.reports.services import CaseRefused, case_report_export, case_submissions_add
from webapp.reports.views import report_response


class CaseOutput(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    reference = serializers.CharField()
    notes = serializers.CharField()
    status = serializers.ChoiceField(choices=Case.Status.choices)
    created_by = serializers.CharField(source="created_by.username")
    created_at = serializers.DateTimeField()
    submission_count = serializers.IntegerField()


class CaseSummaryOutput(serializers.Serializer):
    real = serializers.IntegerField()
    known_generator = serializers.IntegerField()
    unknown_generator = serializers.IntegerField()
    pending = serializers.IntegerField(help_text="Queued or processing")
    failed = serializers.IntegerField()
    total = serializers.IntegerField()


class CaseDetailOutput(CaseOutput):
    summary = CaseSummaryOutput(help_text="Counts of the case's submissions per decision")


class CaseCreateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200)
    reference = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class CaseUpdateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False)
    reference = serializers.CharField(max_length=100, required=False, allow_blank=True)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    status = serializers.ChoiceField(choices=Case.Status.choices, required=False)


def _detail(case: Case | None) -> dict[str, object]:
    if case is None:
        raise NotFound("no such case")
    setattr(case, "summary", case_summary(case=case))  # noqa: B010  (read by CaseDetailOutput, not a column)
    return CaseDetailOutput(case).data


class CaseListCreateApi(GenericAPIView):
    permission_classes = [IsAuthenticated, TeamMember]
    pagination_class = PageNumberPagination
    serializer_class = CaseOutput

    @extend_schema(
        operation_id="cases_list",
        responses={200: CaseOutput(many=True), **error_responses(404)},
        summary="The team's cases, newest first",
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(case_list(team=request_team(request)))
        return self.get_paginated_response(CaseOutput(page or [], many=True).data)

    @extend_schema(
        operation_id="cases_create",
        request=CaseCreateInput,
        responses={201: CaseDetailOutput, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = CaseCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        team = request_team(request)
        case = case_create(team=team, user=request_user(request), **data.validated_data)
        return Response(_detail(case_get(team=team, case_id=case.pk)), status=status.HTTP_201_CREATED)


class CaseDetailApi(APIView):
    permission_classes = [IsAuthenticated, TeamMember]

    @extend_schema(operation_id="cases_retrieve", responses={200: CaseDetailOutput, **error_responses(404)})
    def get(self, request: Request, pk: int) -> Response:
        return Response(_detail(case_get(team=request_team(request), case_id=pk)))

    @extend_schema(
        operation_id="cases_partial_update",
        request=CaseUpdateInput,
        responses={200: CaseDetailOutput, **error_responses(400, 404)},
    )
    def patch(self, request: Request, pk: int) -> Response:
        team = request_team(request)
        case = case_get(team=team, case_id=pk)
        if case is None:
            raise NotFound("no such case")
        data = CaseUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        case_update(case=case, user=request_user(request), **data.validated_data)
        return Response(_detail(case_get(team=team, case_id=pk)))


class CaseSubmissionsAddApi(APIView):
    """`POST {"submission_ids": [...]}`: put the team's submissions into this open case (moving them from
    any other case); 200 with how many were `added` and the case with its summary."""

    permission_classes = [IsAuthenticated, TeamMember]

    @extend_schema(
        operation_id="cases_submissions_add",
        request=CaseSubmissionsInput,
        responses={
            200: inline_serializer(
                "CaseSubmissionsAdded", {"added": serializers.IntegerField(), "case": CaseDetailOutput()}
            ),
            **error_responses(400, 404),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        team = request_team(request)
        case = case_get(team=team, case_id=pk)
        if case is None:
            raise NotFound("no such case")
        data = CaseSubmissionsInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            added = case_submissions_add(
                case=case, user=request_user(request), submission_ids=data.validated_data["submission_ids"]
            )
        except CaseRefused as refused:
            raise ValidationError({"submission_ids": [str(refused)]}) from None
        return Response({"added": added, "case": _detail(case_get(team=team, case_id=pk))})


class CaseReportPdfApi(APIView):
    permission_classes = [IsAuthenticated, TeamMember]
    renderer_classes = [JSONRenderer]  # for errors; the report itself is a plain HttpResponse

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        # A client that asks for application/pdf still gets its errors, as JSON, instead of a 406.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="cases_report_pdf",
        tags=["cases"],
        summary="The case report as a PDF",
        responses={
            (200, "application/pdf"): OpenApiTypes.BINARY,
            404: OpenApiResponse(description="No such case in your team"),
        },
    )
    def get(self, request: Request, case_id: int, *args: Any, **kwargs: Any) -> HttpResponse:
        case = get_object_or_404(Case, pk=case_id, team=request_team(request))
        report = case_report_export(case=case, actor=request.user, report_format="pdf")
        return report_response(report, case=case, report_format="pdf")
