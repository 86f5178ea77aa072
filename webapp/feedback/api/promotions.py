"""REST API of promoting confirmed submissions into the registry's references (registry admins of the team)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.common.permissions import ReferencePromoter, request_team
from webapp.common.schema import error_responses
from webapp.feedback.services.promotions import ConfirmedPromotion, PromotionStatus, confirmed_submissions_promote

MAX_IDS = 500
BIGINT_MAX = 2**63 - 1  # an id beyond what the database holds is refused as invalid, not a server error


class PromoteRequestSerializer(serializers.Serializer):
    submission_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=BIGINT_MAX), min_length=1, max_length=MAX_IDS
    )


class PromotionResultSerializer(serializers.Serializer):
    submission = serializers.IntegerField(source="submission_id")
    status = serializers.ChoiceField(choices=PromotionStatus.ALL)
    reason = serializers.CharField(help_text="Why it was refused; empty otherwise")
    generator = serializers.SerializerMethodField(help_text="The slug of the generator it went to")
    reference = serializers.SerializerMethodField(help_text="The reference image's id")

    def get_generator(self, outcome: ConfirmedPromotion) -> str | None:
        return outcome.generator.slug if outcome.generator is not None else None

    def get_reference(self, outcome: ConfirmedPromotion) -> int | None:
        return outcome.reference.pk if outcome.reference is not None else None


class PromoteResponseSerializer(serializers.Serializer):
    results = PromotionResultSerializer(many=True)
    promoted = serializers.IntegerField()
    already_reference = serializers.IntegerField()
    refused = serializers.IntegerField()


class ReferencePromoteApi(APIView):
    """`POST` JSON `submission_ids`: copy each of your team's confirmed submissions whose confirmation names a
    registered generator into that generator's references (its features are computed on a worker). One
    result per distinct id: `promoted`, `already_reference` (the generator has that image), or `refused`
    with the `reason` (not confirmed, disputed, a generator that is not registered, no such submission in
    your team). Registry admins who belong to a team only."""

    permission_classes = [ReferencePromoter]
    serializer_class = PromoteResponseSerializer

    @extend_schema(request=PromoteRequestSerializer, responses={200: PromoteResponseSerializer, **error_responses(400)})
    def post(self, request: Request) -> Response:
        data = PromoteRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcomes = confirmed_submissions_promote(
            team=request_team(request), submission_ids=data.validated_data["submission_ids"], actor=request.user
        )
        statuses = [outcome.status for outcome in outcomes]
        counts = {status: statuses.count(status) for status in PromotionStatus.ALL}
        return Response({"results": PromotionResultSerializer(outcomes, many=True).data, **counts})
