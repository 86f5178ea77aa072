"""HTML pages that read a case's submissions: the case page with its summary, its exports and its report."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from webapp.cases.forms import CaseEditForm
from webapp.cases.models import Case
from webapp.cases.selectors import case_get
from webapp.common.pagination import CappedPaginator
from webapp.common.permissions import request_user, team_required
from webapp.reports.forms import SelectionForm
from webapp.reports.selectors import case_summary
from webapp.reports.services import (
    EXPORT_FORMATS,
    CaseRefused,
    ReportFormat,
    case_export,
    case_report_export,
    case_submissions_add,
    submissions_export,
)
from webapp.submissions.selectors import submission_list, verdicts_attach
from webapp.teams.models import Team

CASE_PAGE_SIZE = 50


def _case_or_404(team: Team, pk: int) -> Case:
    case = case_get(team=team, case_id=pk)
    if case is None:
        raise Http404("No such case")
    return case


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


@require_GET
@team_required
def case_detail_view(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    case = _case_or_404(team, pk)
    page = CappedPaginator(submission_list(team=team, case_id=case.pk), CASE_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = verdicts_attach(page.object_list)
    summary = case_summary(case=case)
    return render(
        request,
        "cases/detail.html",
        {
            "case": case,
            "summary": summary,
            "summary_rows": [
                (key, label, count, round(100 * count / summary.total, 1) if summary.total else 0)
                for key, label, count in summary.rows()
            ],
            "page": page,
            "rows": rows,
            "form": CaseEditForm(instance=case),
            "export_formats": EXPORT_FORMATS,
        },
    )


@require_GET
@team_required
def case_export_view(request: HttpRequest, team: Team, pk: int, export_format: str) -> HttpResponse:
    case = _case_or_404(team, pk)
    if export_format not in EXPORT_FORMATS:
        raise Http404("No such export format")
    export = case_export(case=case, user=request_user(request), export_format=export_format)
    response = HttpResponse(export.content, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _back(request: HttpRequest, form: SelectionForm, default: str) -> HttpResponse:
    """Back to the page the selection was made on (a path of this site only)."""
    target = form.data.get("next", "")
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False)
    return redirect(target if target and safe else default)


@require_POST
@team_required
def case_add_submissions_view(request: HttpRequest, team: Team) -> HttpResponse:
    """The history's "add selected to case" and the verdict page's "add to case"."""
    form = SelectionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return _back(request, form, "submissions:history")
    case = case_get(team=team, case_id=form.cleaned_data["case"] or 0)
    if case is None:
        messages.error(request, "Choose one of your team's open cases.")
        return _back(request, form, "submissions:history")
    try:
        added = case_submissions_add(
            case=case, user=request_user(request), submission_ids=form.cleaned_data["submission_ids"]
        )
    except CaseRefused as refused:
        messages.error(request, str(refused))
        return _back(request, form, "submissions:history")
    messages.success(request, f"{added} image{'s' if added != 1 else ''} added to the case “{case.title}”.")
    return _back(request, form, f"/cases/{case.pk}/")


@require_POST
@team_required
def selection_export_view(request: HttpRequest, team: Team) -> HttpResponse:
    """The history's "export selected": the chosen submissions as CSV, with the columns of a case export."""
    form = SelectionForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return _back(request, form, "submissions:history")
    export = submissions_export(
        team=team, user=request_user(request), submission_ids=form.cleaned_data["submission_ids"]
    )
    response = HttpResponse(export.content, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
