"""HTML pages of cases: list and create, detail with its summary and submissions, edit, export."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.cases.forms import CaseCreateForm, CaseEditForm
from webapp.cases.models import Case
from webapp.cases.selectors import case_get, case_list, case_summary
from webapp.cases.services import EXPORT_FORMATS, case_create, case_export, case_update
from webapp.core.permissions import team_required
from webapp.submissions.selectors import generator_names, submission_list, verdict_sentence, verdicts_attach
from webapp.teams.models import Team

CASE_PAGE_SIZE = 50


def _case_or_404(team: Team, pk: int) -> Case:
    case = case_get(team=team, case_id=pk)
    if case is None:
        raise Http404("No such case")
    return case


@require_GET
@team_required
def case_list_view(request: HttpRequest, team: Team) -> HttpResponse:
    status = request.GET.get("status", "")
    cases = case_list(team=team, status=status if status in Case.Status.values else "")
    page = Paginator(cases, CASE_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "cases/list.html",
        {
            "page": page,
            "form": CaseCreateForm(),
            "status": status,
            "statuses": Case.Status.choices,
            "query": urlencode({"status": status}) if status else "",
        },
    )


@require_http_methods(["GET", "POST"])
@team_required
def case_create_view(request: HttpRequest, team: Team) -> HttpResponse:
    form = CaseCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        case = case_create(team=team, user=request.user, **form.cleaned_data)
        messages.success(request, f"Case “{case.title}” created.")
        return redirect("cases:detail", pk=case.pk)
    return render(request, "cases/create.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
@team_required
def case_detail_view(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    case = _case_or_404(team, pk)
    page = Paginator(submission_list(team=team, case_id=case.pk), CASE_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    names = generator_names()
    rows = verdicts_attach(page.object_list)
    for row in rows:
        verdict = row.current_verdict
        row.summary = verdict_sentence(verdict=verdict, names=names) if verdict else ""
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


@require_POST
@team_required
def case_edit_view(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    case = _case_or_404(team, pk)
    form = CaseEditForm(request.POST, instance=Case.objects.get(pk=case.pk))
    if not form.is_valid():
        return render(request, "cases/edit.html", {"case": case, "form": form}, status=400)
    case_update(case=case, user=request.user, **form.cleaned_data)
    messages.success(request, "Case saved.")
    return redirect("cases:detail", pk=case.pk)


@require_GET
@team_required
def case_export_view(request: HttpRequest, team: Team, pk: int, export_format: str) -> HttpResponse:
    case = _case_or_404(team, pk)
    if export_format not in EXPORT_FORMATS:
        raise Http404("No such export format")
    export = case_export(case=case, user=request.user, export_format=export_format)
    response = HttpResponse(export.content, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
