from __future__ import annotations

import logging
import mimetypes
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.crypto import constant_time_compare
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from webapp.accounts.tokens import ExpiringTokenAuthentication
from webapp.common.permissions import staff_required
from webapp.core import health
from webapp.core.selectors import media_file_visible

logger = logging.getLogger(__name__)

# Only these types are ever sent back; anything else goes out as a download.
SAFE_CONTENT_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff"}


def _may_see_health_detail(request: HttpRequest) -> bool:
    """Staff (logged in, or with their API token), or a monitor sending `Authorization: Bearer HEALTH_TOKEN`.
    Anyone else learns only ok / error: worker names, process ids, versions and error texts (with hosts
    and ports) are operational detail."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if settings.HEALTH_TOKEN and header.startswith("Bearer "):
        return constant_time_compare(header.removeprefix("Bearer "), settings.HEALTH_TOKEN)
    user = request.user
    if not user.is_authenticated and header.startswith("Token "):
        try:
            found = ExpiringTokenAuthentication().authenticate(Request(request))
        except AuthenticationFailed:
            found = None
        user = found[0] if found else user
    return bool(user.is_authenticated and user.is_staff)


def _health_answer(request: HttpRequest, ok: bool, detail: dict[str, object]) -> JsonResponse:
    if not ok:
        logger.warning("%s not ok: %s", request.path, detail)
    body: dict[str, object] = {"status": "ok" if ok else "error"}
    if _may_see_health_detail(request):
        body.update(detail)
    return JsonResponse(body, status=200 if ok else 503)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    db_ok, db_detail = health.database_ok()
    broker_ok, broker_detail = health.broker_ok()
    return _health_answer(request, db_ok and broker_ok, {"database": db_detail, "broker": broker_detail})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    db_ok, db_detail = health.database_ok()
    broker_ok, broker_detail = health.broker_ok()
    workers_ok, workers = health.workers_ok() if broker_ok else (False, {})
    return _health_answer(
        request,
        db_ok and broker_ok and workers_ok,
        {"database": db_detail, "broker": broker_detail, "workers": workers},
    )


WORKER_STATUS_TIMEOUT_S = 2.0


@staff_required
@require_GET
@never_cache
def workers(request: HttpRequest) -> HttpResponse:
    """Staff: each answering worker's device, backbone, head, batch size and images per second."""
    statuses: dict[str, dict[str, object]] = {}
    error = ""
    try:
        statuses = health.workers_status(WORKER_STATUS_TIMEOUT_S)
    except Exception as exc:  # the broker away: say so on the page
        error = f"{type(exc).__name__}: {exc}"
    rows = [{"name": name, **status} for name, status in statuses.items()]
    return render(request, "core/workers.html", {"workers": rows, "error": error, "timeout": WORKER_STATUS_TIMEOUT_S})


@login_required
@require_GET
def media(request: HttpRequest, path: str) -> FileResponse:
    """Serve an uploaded file only to those who may see the object it belongs to."""
    if not media_file_visible(user=request.user, name=path) or not default_storage.exists(path):
        raise Http404("No such file")
    content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    safe = content_type in SAFE_CONTENT_TYPES
    response = FileResponse(
        default_storage.open(path, "rb"),
        content_type=content_type if safe else "application/octet-stream",
        as_attachment=not safe,
        filename=PurePosixPath(path).name,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


# Error pages (the root URLconf's handlers): JSON under /api/, so that an API client never has to parse
# HTML, not even for a URL that names no endpoint; elsewhere Django's handlers render the site's own
# templates/403.html and 404.html (on base.html, with the reason and a way back).
API_PREFIX = "/api/"


def api_error(request: HttpRequest, status: int, detail: str) -> HttpResponse | None:
    """`{"detail": ...}` with the status for a request under /api/; None for any other."""
    return JsonResponse({"detail": detail}, status=status) if request.path.startswith(API_PREFIX) else None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return api_error(request, 400, "Bad request.") or defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return api_error(request, 403, "You do not have permission to perform this action.") or (
        defaults.permission_denied(request, exception)
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return api_error(request, 404, "Not found.") or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    return api_error(request, 500, "Server error.") or defaults.server_error(request)
