from __future__ import annotations

from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from webapp.registry.models import Generator

BUILTIN_LOCKED = ("name", "slug", "family", "is_active")


class AliasesField(forms.CharField):
    """A generator's aliases, one per line (a list on the model)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list | tuple):
            return [str(item) for item in value]
        return [line.strip() for line in str(value or "").splitlines() if line.strip()]


class GeneratorForm(forms.ModelForm):
    aliases = AliasesField(
        required=False,
        help_text=(
            "Other names it goes by in a file's provenance, one per line: a product (Adobe Firefly, DALL-E), "
            "a checkpoint (sd_xl_base_1.0), a model hash. A file's claim naming one of them names this generator."
        ),
    )

    class Meta:
        model = Generator
        fields = ["name", "slug", "family", "description", "release", "is_active", "aliases"]
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


class ActivationForm(forms.Form):
    """The confirmation page of an activation (or a rollback): the second confirmation that a head worse than
    the active one on some metric is wanted anyway."""

    confirm_worse = forms.BooleanField(required=False, label="Activate it although it is worse on these metrics")
