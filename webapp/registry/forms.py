from __future__ import annotations

from datetime import datetime, time
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from webapp.cases.models import Case
from webapp.registry.models import Generator
from webapp.teams.models import Team

BUILTIN_LOCKED = ("name", "slug", "family", "is_active")


class GeneratorForm(forms.ModelForm):
    class Meta:
        model = Generator
        fields = ["name", "slug", "family", "description", "release", "is_active"]
        help_texts = {
            "slug": "Short id used by the API and in verdicts, e.g. sdxl-1-0",
            "release": "Version or date",
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.builtin:
            for name in BUILTIN_LOCKED:
                self.fields[name].disabled = True


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Many files from one `<input type=file multiple>`; each is checked later, on its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/*", "multiple": True}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        files = [item for item in (data if isinstance(data, list | tuple) else [data]) if item]
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return [super(MultipleImageField, self).clean(item, initial) for item in files]


class ReferenceUploadForm(forms.Form):
    images = MultipleImageField(
        label="Reference images",
        help_text="Choose 10 to 50 images made by this generator (JPEG, PNG, WebP, ...).",
    )


class ReattributeForm(forms.Form):
    case = forms.ModelChoiceField(queryset=Case.objects.none(), required=False, empty_label="— any case —")
    since = forms.DateField(
        required=False,
        label="Uploaded since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Every submission uploaded on or after this day",
    )

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["case"].queryset = Case.objects.filter(team=team)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("case") and not data.get("since"):
            raise forms.ValidationError("Choose a case or a date.")
        return data

    @property
    def since_datetime(self) -> datetime | None:
        day = self.cleaned_data.get("since")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None
