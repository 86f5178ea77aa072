"""API tokens that end: on a password change (always) and after TOKEN_TTL_DAYS (when set)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from webapp.audit.services import audit_record


def token_expires_at(token: Token) -> datetime | None:
    """When the token stops working, or None when tokens do not expire (TOKEN_TTL_DAYS=0)."""
    days = settings.TOKEN_TTL_DAYS
    return token.created + timedelta(days=days) if days > 0 else None


def token_expired(token: Token) -> bool:
    expires_at = token_expires_at(token)
    return expires_at is not None and expires_at <= timezone.now()


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing (and deleting) a token past its TOKEN_TTL_DAYS."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            token.delete()
            audit_record(actor=user, action="token_expire")
            raise exceptions.AuthenticationFailed("Token expired: obtain a new one with your password.")
        return user, token


class RevokeTokensOnPasswordChange:
    """Listed in AUTH_PASSWORD_VALIDATORS for Django's `password_changed` hook, which runs after every
    saved password change (the password form, the admin, `changepassword`, `set_password` + `save`):
    the user's API token is deleted, as Django already ends the user's other sessions. It checks nothing."""

    def validate(self, password: str, user: AbstractBaseUser | None = None) -> None:
        return None

    def password_changed(self, password: str, user: AbstractBaseUser | None = None) -> None:
        if user is None or user.pk is None:
            return
        deleted, _ = Token.objects.filter(user_id=user.pk).delete()
        if deleted:
            audit_record(actor=user, action="token_revoke", detail={"reason": "password changed"})

    def get_help_text(self) -> str:
        return "Changing your password revokes your API token."
