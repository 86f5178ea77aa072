"""The first authentication backend: django-axes' lock-out check, for web logins only."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginLimitBackend(AxesStandaloneBackend):
    """Refuses a locked-out username or client address before any password is checked. A call without a
    request (the shell, a management command) is no web login: there is no address to count, and django-axes
    itself would raise, so it is left to the next backend."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
