"""Input parsing shared by the history page and the API, so that both accept the same filters."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from webapp.submissions.models import Submission, Verdict
from webapp.submissions.selectors import MAX_ID


class SubmissionFilterSerializer(serializers.Serializer):
    # Blank text filters mean "any", as an HTML form's empty inputs do.
    case = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this case's"
    )
    decision = serializers.ChoiceField(choices=Verdict.Decision.choices, required=False, allow_blank=True)
    label = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="Attributed class (generator slug)"
    )
    status = serializers.ChoiceField(choices=Submission.Status.choices, required=False, allow_blank=True)
    date_from = serializers.DateField(required=False, help_text="Uploaded on or after (YYYY-MM-DD)")
    date_to = serializers.DateField(required=False, help_text="Uploaded on or before (YYYY-MM-DD)")
    submitter = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="Username of the uploader"
    )
    unknown_only = serializers.BooleanField(
        required=False, default=False, help_text="Only unknown generators"
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Part of the file name, or a SHA-256 prefix",
    )


SELECTOR_ARGS = {"case": "case_id"}


def submission_filters(query: QueryDict) -> SubmissionFilterSerializer:
    """The filter serializer over a query string; blank fields (an HTML form's empty inputs) are left out."""
    return SubmissionFilterSerializer(data={key: value for key, value in query.items() if value.strip()})


def selector_kwargs(validated: dict[str, Any]) -> dict[str, Any]:
    """Validated filters as keyword arguments of `submission_list`."""
    return {SELECTOR_ARGS.get(key, key): value for key, value in validated.items()}
