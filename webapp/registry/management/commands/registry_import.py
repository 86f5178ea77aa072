"""`python manage.py registry_import DIR`: bulk import of reference images from a folder on this host."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from webapp.registry.models import Generator
from webapp.registry.services.errors import RegistryError
from webapp.registry.services.imports import registry_import_folder


class Command(BaseCommand):
    help = (
        "Import reference images from an ImageFolder (DIR/<generator slug>/**) or the GenImage layout "
        "(DIR/<generator>/train|val/ai|nature, nature being real). Files the generator already has are "
        "skipped, so a rerun after a crash goes on where it stopped and a second run adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--layout", choices=("imagefolder", "genimage"), default="imagefolder")
        parser.add_argument(
            "--phase", choices=("train", "val", "all"), default="train",
            help="GenImage: which part to import (default train; val is the paper's test set)",
        )  # fmt: skip
        parser.add_argument("--per-class", type=int, default=None, help="at most N images per class")
        parser.add_argument("--classes", default=None, help="only these class folders, comma-separated")
        parser.add_argument("--create-generators", action="store_true", help="create missing generators")
        parser.add_argument(
            "--family", choices=Generator.Family.values, default=Generator.Family.OTHER,
            help="family of the generators --create-generators makes",
        )  # fmt: skip
        parser.add_argument("--dry-run", action="store_true", help="check every file, write nothing")
        parser.add_argument(
            "--no-features", action="store_true",
            help="do not queue the feature computation (the next training computes what is missing)",
        )  # fmt: skip
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, directory: Path, **options: Any) -> None:
        started = time.monotonic()
        classes = [c.strip() for c in options["classes"].split(",") if c.strip()] if options["classes"] else None
        with tqdm(unit="img", desc="importing", disable=options["no_progress"], mininterval=0.5) as bar:

            def progress(class_name: str) -> None:
                bar.set_postfix_str(class_name, refresh=False)
                bar.update()

            try:
                summary = registry_import_folder(
                    root=directory,
                    actor=None,
                    layout=options["layout"],
                    phase=options["phase"],
                    classes=classes,
                    per_class=options["per_class"],
                    create_generators=options["create_generators"],
                    dry_run=options["dry_run"],
                    enqueue=not options["no_features"],
                    family=options["family"],
                    progress=progress,
                )
            except RegistryError as error:
                raise CommandError(str(error)) from None
        elapsed = time.monotonic() - started
        for line in summary.lines():
            self.stdout.write(line)
        seen = summary.added + summary.present + summary.refused
        self.stdout.write(
            f"{'dry run: ' if summary.dry_run else ''}{seen} files in {elapsed:.1f} s "
            f"({seen / max(elapsed, 1e-9):.1f} files/s)"
        )
