"""Requests refused before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

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
