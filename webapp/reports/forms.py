"""Input parsing of the pages that gather submissions into a case or an export (parsing only: what a
request may do is decided by the services)."""

from __future__ import annotations

from django import forms
from rest_framework import serializers

from webapp.submissions.selectors import MAX_ID

MAX_SELECTION = 500


class SelectionForm(forms.Form):
    """Submissions chosen on the history or the verdict page; `case` only when they go into one."""

    submission_ids = forms.TypedMultipleChoiceField(coerce=int, required=True)
    case = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    next = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Any id parses; which of them the team may touch is the service's question.
        self.fields["submission_ids"].valid_value = lambda value: str(value).isdigit()  # type: ignore[attr-defined]

    def clean_submission_ids(self) -> list[int]:
        ids = sorted({pk for pk in self.cleaned_data["submission_ids"] if 0 < pk <= MAX_ID})
        if not ids:
            raise forms.ValidationError("Select at least one submission.")
        if len(ids) > MAX_SELECTION:
            raise forms.ValidationError(f"Select at most {MAX_SELECTION} submissions at a time.")
        return ids


class CaseSubmissionsInput(serializers.Serializer):
    submission_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        allow_empty=False,
        max_length=MAX_SELECTION,
        help_text="Ids of the team's submissions to put in the case",
    )
