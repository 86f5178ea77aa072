"""The login limit's glue to django-axes: whose address a request comes from, what a locked-out caller
is told, and the audit record of a lock-out.

django-axes counts failed logins in the default cache (Redis when REDIS_URL is set, shared by every web
process) per username and per client address; every login path goes through `authenticate()`, so the
site form, the Django admin and the token endpoint share the counts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from webapp.audit.services import audit_record


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with NUM_PROXIES trusted proxies in front the address the outermost of them saw
    (the entry they appended to X-Forwarded-For): the same rule as DRF's throttles. With no proxy the
    header is ignored, as anyone can write it."""
    proxies = settings.NUM_PROXIES
    if proxies > 0:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            return forwarded[-min(proxies, len(forwarded))]
    return str(request.META.get("REMOTE_ADDR", ""))


def cool_off(request: HttpRequest | None = None) -> timedelta:
    return get_cool_off(request) or timedelta(0)


def lockout_message(retry_at_utc: str) -> str:
    return f"Too many failed logins for this account or from this address. Try again after {retry_at_utc}."


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """429 with Retry-After and the time to retry: JSON under /api/, the lock-out page elsewhere. Each
    refused attempt counts as a failure, so the lock-out ends one cool-off after the last attempt."""
    wait = cool_off(request)
    retry_at = timezone.now() + wait
    retry_at_utc = f"{retry_at:%H:%M} UTC"
    seconds = max(1, int(wait.total_seconds()))
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"detail": lockout_message(retry_at_utc), "retry_after": seconds, "retry_at": retry_at.isoformat()},
            status=429,
        )
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"retry_at": retry_at, "retry_at_utc": retry_at_utc, "minutes": max(1, round(seconds / 60))},
            status=429,
        )
    response["Retry-After"] = str(seconds)
    return response


def audit_lockout(sender: object, request: HttpRequest, username: str | None, ip_address: str, **kwargs: Any) -> None:
    """One audit event per lock-out (not one per refused attempt, which an attack would multiply)."""
    wait = cool_off(request)
    if not cache.add(f"login-lockout-audited:{username}:{ip_address}", 1, timeout=max(1, int(wait.total_seconds()))):
        return
    audit_record(
        actor=None,
        action="login_locked_out",
        detail={"username": username or "", "ip_address": ip_address, "path": request.path,
                "minutes": wait.total_seconds() / 60},
    )
