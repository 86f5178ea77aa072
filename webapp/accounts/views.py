"""The user's own API token: shown (never its key after creation), made and revoked while logged in."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from webapp.accounts.services import token_create, token_revoke
from webapp.accounts.tokens import token_expires_at


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    new_key = ""
    message = ""
    if request.method == "POST":
        if request.POST.get("action") == "create":
            new_key = token_create(user=request.user).key  # type: ignore[arg-type]
        elif request.POST.get("action") == "revoke":
            message = "Token revoked." if token_revoke(user=request.user) else "You had no token."  # type: ignore[arg-type]
    token = Token.objects.filter(user=cast(User, request.user)).first()
    return render(
        request,
        "accounts/tokens.html",
        {
            "token": token,
            "prefix": token.key[:6] if token else "",
            "expires_at": token_expires_at(token) if token else None,
            "new_key": new_key,
            "message": message,
        },
    )
