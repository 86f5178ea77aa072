"""REST API of a head version's field accuracy (read like the head versions: team members and registry admins).
Beside `webapp.registry.api`, which may not import this app."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.common.permissions import RegistryReadAdminWrite
from webapp.common.schema import error_responses
from webapp.feedback.selectors.field import head_version_field_metrics
from webapp.registry.selectors import head_version_list


def _interval(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True, help_text=help_text
    )


class FieldClassSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="One of the head's classes")  # type: ignore[assignment]
    n = serializers.IntegerField(help_text="Confirmed images of this class")
    correct = serializers.IntegerField(help_text="Of them, named right by the head (and not rejected)")
    accuracy = serializers.FloatField(allow_null=True)


class FieldMetricsSerializer(serializers.Serializer):
    head_version = serializers.IntegerField()
    confirmed = serializers.IntegerField(
        help_text="Confirmed images this head has a prediction for (known_n + unknown_n); each image counts once"
    )
    accuracy = serializers.FloatField(
        allow_null=True,
        help_text="Share of confirmed images of the head's classes that it names right; null when known_n is 0",
    )
    accuracy_ci = _interval("Wilson 95 % interval of `accuracy` as [low, high]; null when known_n is 0")
    unknown_rejection = serializers.FloatField(
        allow_null=True,
        help_text=(
            "Share of confirmed images of other origins (a generator the head was not trained on, or an "
            "unregistered one) that it rejects as unknown_generator; null when unknown_n is 0"
        ),
    )
    unknown_rejection_ci = _interval("Wilson 95 % interval of `unknown_rejection`; null when unknown_n is 0")
    known_n = serializers.IntegerField()
    known_correct = serializers.IntegerField()
    unknown_n = serializers.IntegerField()
    unknown_rejected = serializers.IntegerField()
    disputed_unlabelled = serializers.IntegerField(help_text="Disputed verdicts that name no true origin: left out")
    awaiting_prediction = serializers.IntegerField(
        help_text="Confirmed images the head has not judged yet (a worker computes them periodically)"
    )
    in_training_set = serializers.IntegerField(
        help_text="Confirmed images among the head's own reference images: left out"
    )
    min_confirmed = serializers.IntegerField(
        help_text="Images from which a field figure is trusted over cross-validation on the references"
    )
    enough_for_accuracy = serializers.BooleanField()
    enough_for_unknown_rejection = serializers.BooleanField()
    per_class = FieldClassSerializer(many=True)


class HeadVersionFieldMetricsApi(APIView):
    """`GET`: the head version's accuracy and unknown rejection on the images analysts have confirmed, with
    Wilson 95 % intervals and the counts they rest on."""

    permission_classes = [RegistryReadAdminWrite]
    serializer_class = FieldMetricsSerializer

    @extend_schema(responses={200: FieldMetricsSerializer, **error_responses(404)})
    def get(self, request: Request, version: int) -> Response:
        head = get_object_or_404(head_version_list(), version=version)
        return Response(FieldMetricsSerializer(head_version_field_metrics(head_version=head).as_dict()).data)
