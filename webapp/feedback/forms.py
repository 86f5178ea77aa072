"""Forms of the unknown clusters' pages: registering a cluster as a generator (outliers ticked to exclude)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms

from webapp.registry.models import Generator

FAMILIES = [(value, label) for value, label in Generator.Family.choices if value != Generator.Family.REAL]


class ClusterRegisterForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the new generator is called, e.g. Imagen 4")
    slug = forms.SlugField(max_length=100, help_text="Short id used by the API and in verdicts, e.g. imagen-4")
    family = forms.ChoiceField(choices=FAMILIES, initial=Generator.Family.OTHER)
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))
    exclude = forms.TypedMultipleChoiceField(
        coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="Exclude"
    )

    def __init__(self, *args: Any, member_ids: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["exclude"].choices = [(str(pk), str(pk)) for pk in member_ids]  # type: ignore[attr-defined]


class ClusterDismissForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500, label="Why (optional)")
