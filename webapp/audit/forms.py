"""The audit page's filters (parsing only)."""

from __future__ import annotations

from typing import Any

from django import forms

from webapp.teams.models import Team


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150, label="Who (username)")
    action = forms.ChoiceField(required=False, choices=[("", "Any")])
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("name"), required=False, empty_label="Any")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: object, actions: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["action"].choices = [("", "Any"), *((a, a) for a in actions)]  # type: ignore[attr-defined]

    def selector_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data
        team = data.get("team")
        return {
            "actor": (data.get("actor") or "").strip(),
            "action": data.get("action") or "",
            "team_id": team.pk if team else None,
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
        }
