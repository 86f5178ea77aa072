from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from webapp.cases.models import Case
from webapp.core.permissions import TeamMember, request_team
from webapp.reports.services import case_report_export
from webapp.reports.views import report_response


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
