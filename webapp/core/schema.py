"""OpenAPI schema post-processing: the answers every endpoint can give, documented once for all."""

from __future__ import annotations

from typing import Any

_DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
PLATFORM_ERRORS = {
    # webapp.core.middleware.RejectNulCharacters answers before any view, whatever the endpoint.
    "400": {"description": "Invalid request: a NUL character in the URL, or a field named in the body",
            "content": _DETAIL},
}
PAGE_ERRORS = {"404": {"description": "No such page of results", "content": _DETAIL}}
AUTH_ERRORS = {
    "401": {"description": "Not authenticated, or the token is invalid or revoked", "content": _DETAIL},
    "403": {"description": "Not allowed to this user (not in a team, or not an admin)", "content": _DETAIL},
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
            if any(p.get("in") == "query" and p.get("name") == "page" for p in operation.get("parameters", [])):
                extra |= PAGE_ERRORS
            for code, response in extra.items():
                responses.setdefault(code, response)
    return result
