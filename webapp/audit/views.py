from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from webapp.audit.forms import AuditFilterForm
from webapp.audit.models import AuditEvent
from webapp.audit.selectors import audit_actions, audit_event_list, audit_events_csv, audit_row
from webapp.common.pagination import CappedPaginator
from webapp.common.permissions import staff_required

AUDIT_PAGE_SIZE = 50


def _events(request: HttpRequest) -> tuple[AuditFilterForm, QuerySet[AuditEvent]]:
    """The filter form and the events it selects (none while a filter is invalid: the page says why)."""
    form = AuditFilterForm(request.GET or None, actions=audit_actions())
    if form.is_bound and not form.is_valid():
        return form, AuditEvent.objects.none()
    return form, audit_event_list(**(form.selector_kwargs() if form.is_bound else {}))


@staff_required
@require_GET
def events(request: HttpRequest) -> HttpResponse:
    form, selected = _events(request)
    page = CappedPaginator(selected, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    rows = [audit_row(event=event) for event in page.object_list]
    return render(request, "audit/events.html", {"form": form, "page": page, "rows": rows, "query": query.urlencode()})


@staff_required
@require_GET
def events_csv(request: HttpRequest) -> HttpResponse:
    content = audit_events_csv(events=_events(request)[1])
    response = HttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
