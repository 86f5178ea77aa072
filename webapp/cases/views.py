"""HTML pages of cases: list, create, edit (the case page and its exports are the reports app's)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.cases.forms import CaseCreateForm, CaseEditForm
from webapp.cases.models import Case
from webapp.cases.selectors import case_get, case_list
from webapp.cases.services import case_create, case_update
from webapp.common.permissions import request_user, team_required
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
        case = case_create(team=team, user=request_user(request), **form.cleaned_data)
        messages.success(request, f"Case “{case.title}” created.")
        return redirect("cases:detail", pk=case.pk)
    return render(request, "cases/create.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
@team_required
def case_edit_view(request: HttpRequest, team: Team, pk: int) -> HttpResponse:
    case = _case_or_404(team, pk)
    form = CaseEditForm(request.POST, instance=Case.objects.get(pk=case.pk))
    if not form.is_valid():
        return render(request, "cases/edit.html", {"case": case, "form": form}, status=400)
    case_update(case=case, user=request_user(request), **form.cleaned_data)
    messages.success(request, "Case saved.")
    return redirect("cases:detail", pk=case.pk)
