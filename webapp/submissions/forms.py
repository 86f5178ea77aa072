"""Input parsing of submission pages and the API: the history filters (the same for both) and the scope of
a re-attribution. Parsing only: what a request may do is decided by the services."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone
from rest_framework import serializers

from webapp.cases.models import Case
from webapp.submissions.models import Confirmation, Submission, Verdict
from webapp.submissions.selectors import (
    CONFIRMATION_FILTER_CHOICES,
    MAX_ID,
    PROVENANCE_FILTER_CHOICES,
    SUBMISSION_ORDERS,
)
from webapp.teams.models import Team


class SubmissionFilterSerializer(serializers.Serializer):
    # Blank text filters mean "any", as an HTML form's empty inputs do.
    case = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="Only this case's"
    )
    decision = serializers.ChoiceField(choices=Verdict.Decision.choices, required=False, allow_blank=True)
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, allow_blank=True, max_length=100, help_text="Attributed class (generator slug)"
    )
    status = serializers.ChoiceField(choices=Submission.Status.choices, required=False, allow_blank=True)
    date_from = serializers.DateField(required=False, help_text="Uploaded on or after (YYYY-MM-DD)")
    date_to = serializers.DateField(required=False, help_text="Uploaded on or before (YYYY-MM-DD)")
    submitter = serializers.CharField(
        required=False, allow_blank=True, max_length=150, help_text="Username of the uploader"
    )
    # Kept for API clients; the same as decision=unknown_generator (the history page offers that one only).
    unknown_only = serializers.BooleanField(
        required=False, default=False, help_text="Only unrecognised images (same as decision=unknown_generator)"
    )
    provenance = serializers.ChoiceField(
        choices=PROVENANCE_FILTER_CHOICES,
        required=False,
        allow_blank=True,
        help_text=(
            "conflicts / agrees: the file's provenance conflicts or agrees with the latest verdict; signed: a C2PA "
            "manifest whose signature checks (trusted or not); has_c2pa: any C2PA manifest, valid or not"
        ),
    )
    confirmation = serializers.ChoiceField(
        choices=CONFIRMATION_FILTER_CHOICES,
        required=False,
        allow_blank=True,
        help_text="unreviewed: no analyst has confirmed or disputed the verdict; confirmed / disputed: an analyst has",
    )
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Part of the file name, or a SHA-256 prefix",
    )


SELECTOR_ARGS = {"case": "case_id"}


def submission_order(query: QueryDict) -> str:
    """The history page's `sort` (a key of SUBMISSION_ORDERS; anything else is the default order). The API
    pages by cursor, newest first, and takes no sort."""
    sort = query.get("sort", "")
    return sort if sort in SUBMISSION_ORDERS else ""


def submission_filters(query: QueryDict) -> SubmissionFilterSerializer:
    """The filter serializer over a query string; blank fields (an HTML form's empty inputs) are left out."""
    return SubmissionFilterSerializer(data={key: value for key, value in query.items() if str(value).strip()})


def selector_kwargs(validated: dict[str, Any]) -> dict[str, Any]:
    """Validated filters as keyword arguments of `submission_list`."""
    return {SELECTOR_ARGS.get(key, key): value for key, value in validated.items()}


class ReattributeForm(forms.Form):
    """A case of the team, or a day: which submissions to re-attribute (or whose changes to show)."""

    case = forms.ModelChoiceField(queryset=Case.objects.none(), required=False, empty_label="— any case —")
    since = forms.DateField(
        required=False,
        label="Uploaded since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Every submission uploaded on or after this day",
    )

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["case"].queryset = Case.objects.filter(team=team)  # type: ignore[attr-defined]

    @property
    def since_datetime(self) -> datetime | None:
        day = self.cleaned_data.get("since")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None


class ReattributionScopeSerializer(serializers.Serializer):
    case = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    since = serializers.DateTimeField(required=False)


# --- the analyst's confirmation of a verdict ----------------------------------------------------------------

# The verdict page's label choice that says "a generator not in the list", named in the text box beside it.
OTHER_LABEL = "__other__"
MAX_CONFIRM_SELECTION = 500


class ConfirmationInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Confirmation.Status.choices,
        help_text="confirmed: the verdict is right; disputed: it is wrong",
    )
    label = serializers.CharField(  # type: ignore[assignment]
        required=False,
        allow_blank=True,
        max_length=1000,  # the service says what is too long, in its own words
        trim_whitespace=False,
        help_text="What the image is: a registered generator's slug (any case) or name, real, or another generator "
        "named in words (at most 100 characters). Confirmed without a label: the verdict's own (an unrecognised "
        "image: an unregistered source); disputed without one: the analyst does not say.",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=10_000, trim_whitespace=False)


class ConfirmationForm(forms.Form):
    """The verdict page's confirmation card: a status, a registered class or another generator named in words,
    and a note; `action` "clear" withdraws the confirmation instead."""

    action = forms.ChoiceField(choices=[("save", "save"), ("clear", "clear")], required=False)
    status = forms.ChoiceField(choices=Confirmation.Status.choices, required=False)
    label = forms.CharField(required=False, max_length=1000, strip=False)
    label_other = forms.CharField(required=False, max_length=1000, strip=False)
    note = forms.CharField(required=False, max_length=10_000, strip=False)

    @property
    def clearing(self) -> bool:
        return self.cleaned_data.get("action") == "clear"

    @property
    def chosen_label(self) -> str:
        """The label the analyst chose: a registered class from the list, or the words typed for "other"."""
        label = self.cleaned_data.get("label", "")
        return self.cleaned_data.get("label_other", "") if label == OTHER_LABEL else label


class ConfirmationSelectionForm(forms.Form):
    """The history's "confirm selected" and "dispute selected"."""

    submission_ids = forms.TypedMultipleChoiceField(coerce=int, required=True)
    status = forms.ChoiceField(choices=Confirmation.Status.choices)
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Any id parses; which of them the team may touch is the service's question.
        self.fields["submission_ids"].valid_value = lambda value: str(value).isdigit()  # type: ignore[attr-defined]

    def clean_submission_ids(self) -> list[int]:
        ids = sorted({pk for pk in self.cleaned_data["submission_ids"] if 0 < pk <= MAX_ID})
        if not ids:
            raise forms.ValidationError("Select at least one submission.")
        if len(ids) > MAX_CONFIRM_SELECTION:
            raise forms.ValidationError(f"Select at most {MAX_CONFIRM_SELECTION} submissions at a time.")
        return ids
