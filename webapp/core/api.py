"""REST API of the platform itself: API tokens, obtained with a password and revoked with the token."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from webapp.core.services import token_create, token_revoke

TOKEN = inline_serializer(
    "AuthTokenOutput", {"token": serializers.CharField(help_text="Send as `Authorization: Token KEY`")}
)


class AuthTokenApi(APIView):
    """`POST` a username and password for the user's API token; `DELETE` (with the token) revokes it.
    Both count against the `token` throttle scope, so passwords cannot be guessed at speed."""

    authentication_classes = [TokenAuthentication]
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
        data.is_valid(raise_exception=True)
        return Response({"token": token_create(user=data.validated_data["user"]).key})

    @extend_schema(
        operation_id="auth_token_destroy",
        request=None,
        responses={
            204: None,
            401: OpenApiResponse(OpenApiTypes.OBJECT, description="Not authenticated"),
            429: OpenApiResponse(OpenApiTypes.OBJECT, description="Too many requests"),
        },
        summary="Revoke the token this request is made with",
    )
    def delete(self, request: Request) -> Response:
        token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
