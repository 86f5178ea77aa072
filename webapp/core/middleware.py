"""Requests refused before any view runs (and before their body is read)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import reverse

from webapp.common.permissions import STAFF_MESSAGE
from webapp.core.views import api_error


class RejectNulCharacters:
    """400 for a NUL character in the path or the query string: no view needs one, and PostgreSQL
    refuses them in text, so a filter that let one through would fail with a server error."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.GET
        if "\x00" in request.path or any("\x00" in key or "\x00" in "".join(query.getlist(key)) for key in query):
            message = "NUL characters are not allowed in the URL."
            return api_error(request, 400, message) or HttpResponseBadRequest(message)
        return self.get_response(request)


class RequestBodyLimit:
    """413 for a request whose Content-Length is over REQUEST_MAX_BYTES, answered before anything reads
    the body (DATA_UPLOAD_MAX_MEMORY_SIZE does not count files, so Django alone would receive a whole
    oversized upload before the upload check refused it). The reverse proxy's client_max_body_size is
    the first line; this holds where gunicorn is reached without it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads a malformed length as no body
        limit = settings.REQUEST_MAX_BYTES
        if length > limit:
            message = f"The request body ({length} bytes) is over the limit of {limit} bytes."
            return api_error(request, 413, message) or HttpResponse(message, status=413, content_type="text/plain")
        return self.get_response(request)


class StaffOnlyAdmin:
    """The site's 403 page for a signed-in user who is not staff and opens Django's admin, instead of the
    admin's own login form (they are signed in already; another account is not what they need). The
    anonymous still get the admin's login."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not user.is_staff and request.path.startswith(
            reverse("admin:index")
        ):
            raise PermissionDenied(STAFF_MESSAGE)
        return self.get_response(request)
