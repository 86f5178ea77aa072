"""REST API of the platform itself: API tokens, obtained with a password, shown to and revoked by their owner."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import AbstractBaseUser, User
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from webapp.accounts.lockout import lockout_response
from webapp.accounts.services import token_create, token_revoke
from webapp.accounts.tokens import ExpiringTokenAuthentication, token_expires_at

TOKEN = inline_serializer(
    "AuthTokenOutput", {"token": serializers.CharField(help_text="Send as `Authorization: Token KEY`")}
)


TOKEN_INFO = inline_serializer(
    "AuthTokenInfo",
    {
        "prefix": serializers.CharField(help_text="The first characters of the key, to tell which one it is"),
        "created": serializers.DateTimeField(),
        "expires_at": serializers.DateTimeField(allow_null=True, help_text="null: until revoked (TOKEN_TTL_DAYS=0)"),
    },
)


class AuthTokenApi(APIView):
    """`POST` a username and password for the user's API token; `GET` shows it and `DELETE` revokes it
    (with the token, or logged in on the site). All count against the `token` throttle scope; wrong
    passwords also count towards the login lock-out (django-axes), per username and per client address,
    shared with the login form and the Django admin."""

    authentication_classes = [ExpiringTokenAuthentication, SessionAuthentication]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(
        operation_id="auth_token_create",
        request=AuthTokenSerializer,
        auth=[],
        responses={
            200: TOKEN,
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="Wrong username or password"),
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="An invalid token was sent along"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="Too many attempts: retry after the delay given"),
        },
        summary="Obtain the API token of a user",
    )
    def post(self, request: Request) -> Response:
        data = AuthTokenSerializer(data=request.data, context={"request": request})
        valid = data.is_valid()
        # django-axes marks the request it was given (DRF's, not Django's, which AxesMiddleware reads).
        if getattr(request, "axes_locked_out", False):
            return lockout_response(request._request)  # type: ignore[return-value]
        if not valid:
            raise ValidationError(data.errors)
        return Response({"token": token_create(user=data.validated_data["user"]).key})

    @extend_schema(
        operation_id="auth_token_retrieve",
        responses={
            200: TOKEN_INFO,
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="Not authenticated"),
            403: OpenApiResponse(OpenApiTypes.OBJECT, description="Not authenticated"),
            404: OpenApiResponse(OpenApiTypes.OBJECT, description="The user has no token"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="Too many requests"),
        },
        summary="Show the user's token (never its key): when it was made and when it expires",
    )
    def get(self, request: Request) -> Response:
        token = Token.objects.filter(user=cast(User, request.user)).first()
        if token is None:
            raise NotFound("You have no API token.")
        return Response(
            {"prefix": token.key[:6], "created": token.created, "expires_at": token_expires_at(token)}
        )

    @extend_schema(
        operation_id="auth_token_destroy",
        request=None,
        responses={
            204: None,
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="Not authenticated"),
            403: OpenApiResponse(OpenApiTypes.OBJECT, description="Logged in on the site without the CSRF token"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="Too many requests"),
        },
        summary="Revoke the user's token (the one this request is made with, if so)",
    )
    def delete(self, request: Request) -> Response:
        token_revoke(user=cast(AbstractBaseUser, request.user))  # IsAuthenticated: never anonymous
        return Response(status=status.HTTP_204_NO_CONTENT)
