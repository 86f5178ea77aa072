from __future__ import annotations

from django import forms

from webapp.cases.models import Case


class CaseCreateForm(forms.ModelForm):
    class Meta:
        model = Case
        fields = ["title", "reference", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}


class CaseEditForm(forms.ModelForm):
    class Meta:
        model = Case
        fields = ["title", "reference", "notes", "status"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 4})}
