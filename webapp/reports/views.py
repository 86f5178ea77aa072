from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from webapp.cases.models import Case
from webapp.core.permissions import team_required
from webapp.reports.services import ReportFormat, case_report_export
from webapp.teams.models import Team


def report_response(report: bytes, *, case: Case, report_format: ReportFormat) -> HttpResponse:
    """The HTML opens in the browser (to read or print); the PDF downloads."""
    if report_format == "pdf":
        response = HttpResponse(report, content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="case-{case.pk}-report.pdf"'
    else:
        response = HttpResponse(report, content_type="text/html; charset=utf-8")
        # The document is self-contained: inline styles and data: images, nothing else may load.
        response["Content-Security-Policy"] = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


def _case_report(request: HttpRequest, case_id: int, team: Team, report_format: ReportFormat) -> HttpResponse:
    case = get_object_or_404(Case, pk=case_id, team=team)
    report = case_report_export(case=case, actor=request.user, report_format=report_format)
    return report_response(report, case=case, report_format=report_format)


@require_GET
@team_required
def case_html(request: HttpRequest, case_id: int, *, team: Team) -> HttpResponse:
    return _case_report(request, case_id, team, "html")


@require_GET
@team_required
def case_pdf(request: HttpRequest, case_id: int, *, team: Team) -> HttpResponse:
    return _case_report(request, case_id, team, "pdf")
