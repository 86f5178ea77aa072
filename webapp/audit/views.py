from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.audit.selectors import audit_event_list


@staff_member_required
def events(request: HttpRequest) -> HttpResponse:
    page = Paginator(audit_event_list(action=request.GET.get("action", "")), 100).get_page(request.GET.get("page"))
    return render(request, "audit/events.html", {"page": page, "action": request.GET.get("action", "")})
