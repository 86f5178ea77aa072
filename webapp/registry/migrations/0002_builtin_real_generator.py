"""The built-in "real" class exists from the first `migrate` on: every head needs it."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

REAL = {
    "slug": "real",
    "name": "Real photograph",
    "family": "real",
    "description": "Photographs taken with a camera. Built in: it cannot be renamed or deleted.",
    "builtin": True,
    "is_active": True,
}


def create_real(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Generator = apps.get_model("registry", "Generator")
    Generator.objects.get_or_create(
        slug=REAL["slug"], defaults={k: v for k, v in REAL.items() if k != "slug"}
    )


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]

    operations = [migrations.RunPython(create_real, migrations.RunPython.noop)]
