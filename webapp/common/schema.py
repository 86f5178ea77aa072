"""The API's documented error answers, in one place: `error_responses` for an endpoint's own annotations,
and the schema post-processing hook for the answers every endpoint can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

_DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
PLATFORM_ERRORS = {
    # webapp.core.middleware.RejectNulCharacters answers before any view, whatever the endpoint.
    "400": {"description": "Invalid request: a NUL character in the URL, or a field named in the body",
            "content": _DETAIL},
}
PAGE_ERRORS = {"404": {"description": "No such page of results, or an invalid cursor", "content": _DETAIL}}
ERROR_DESCRIPTIONS = {
    400: "Invalid request: the body names each problem by field",
    401: "Not authenticated, or the token is invalid or revoked",
    403: "Not allowed to this user (not in a team, or not an admin)",
    404: "No such object in your team",
    429: "Too many requests for now: retry after the delay given",
    503: "A service the request needs is down: retry after the delay given",
}
AUTH_ERRORS = {str(code): {"description": ERROR_DESCRIPTIONS[code], "content": _DETAIL} for code in (401, 403)}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers of an endpoint (always 401 and 403)."""
    return {
        code: OpenApiResponse(OpenApiTypes.OBJECT, description=ERROR_DESCRIPTIONS[code])
        for code in sorted({401, 403, *codes})
    }


def document_platform_errors(
    result: dict[str, Any], generator: object, request: object, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook, for what the endpoints' own annotations leave out: 400 on every
    operation, 401 and 403 on every one that needs authentication, 404 on every paginated list (a `page`
    out of range)."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            extra = dict(PLATFORM_ERRORS)
            security = operation.get("security")
            if security and {} not in security:
                extra |= AUTH_ERRORS
            parameters = operation.get("parameters", [])
            if any(p.get("in") == "query" and p.get("name") in ("page", "cursor") for p in parameters):
                extra |= PAGE_ERRORS
            for code, response in extra.items():
                responses.setdefault(code, response)
    return result
