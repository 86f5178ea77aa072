"""REST API of cases: list, create, read with its summary, edit."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.cases.models import Case
from webapp.cases.selectors import case_get, case_list, case_summary
from webapp.cases.services import case_create, case_update
from webapp.core.permissions import TeamMember, request_team
from webapp.submissions.api import error_responses


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
    case.summary = case_summary(case=case)
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
        case = case_create(team=team, user=request.user, **data.validated_data)
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
        case_update(case=case, user=request.user, **data.validated_data)
        return Response(_detail(case_get(team=team, case_id=pk)))
