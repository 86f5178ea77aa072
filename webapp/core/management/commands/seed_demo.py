"""`python manage.py seed_demo`: a demo team and users, a demo registry and an active head (idempotent)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from webapp.core.demo import demo_team_seed, registry_seed_demo

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache

# Twenty images a class (the registry asks for 10 to 50): with the offline backbone's random weights the
# head's cross-validated accuracy is about 0.6 to 0.7 on five classes, and the seed takes one to three
# minutes on two cores (the benchmark at 224 pixels and the features of 100 images at every block).
DEMO_PER_CLASS = 20


class Command(BaseCommand):
    help = "Seed the demo: team, users, a registry from the synthetic benchmark and an active head."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--per-class",
            type=int,
            default=DEMO_PER_CLASS,
            help=f"reference images per class (default {DEMO_PER_CLASS})",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic benchmark (default 0)")

    def handle(self, *args: Any, per_class: int, seed: int, **options: Any) -> None:
        started = time.monotonic()
        team, users = demo_team_seed()
        admin = users[-1].user

        def load_engine() -> tuple[Backbone, FeatureCache]:
            # Loaded here, in this process, as a worker loads it; only when there is work for it.
            from workers.runtime import get_backbone, get_feature_cache

            return get_backbone(), get_feature_cache()

        seeded = registry_seed_demo(actor=admin, load_engine=load_engine, per_class=per_class, seed=seed)
        head = seeded.head_version
        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo ready in {time.monotonic() - started:.1f} s."))
        out(f"  team: {team.name}")
        for demo_user in users:
            shown = demo_user.password
            if not demo_user.created:
                shown += " (unless changed since the first seed)"
            out(f"  login: {demo_user.user.username} / {shown}   [{demo_user.role}]")
        added = ", ".join(f"{slug} +{n}" for slug, n in seeded.added.items())
        out(f"  registry: {added} reference images")
        metrics = ", ".join(
            f"{name} {head.metrics[key]:.3f}"
            for key, name in (
                ("accuracy", "cross-validated accuracy"),
                ("auroc", "held-out AUROC"),
                ("oscr", "OSCR"),
            )
            if head.metrics.get(key) is not None
        )
        action = "trained and activated" if seeded.trained else "already active"
        out(f"  head v{head.version} {action}: {', '.join(head.classes)}; {metrics}")
        if not head.pretrained:
            out(
                self.style.WARNING(
                    f"  backbone {head.backbone} is not pretrained: verdicts are a demonstration."
                )
            )
        import open_clip  # the backbone's input size, from its config: no weights are loaded

        size = open_clip.get_model_config(settings.ATTRIBUTION_BACKBONE)["vision_cfg"]["image_size"]
        python = _python_to_paste()
        out(
            f"  try: {python} -m attribution synth /tmp/synth --seed 1 --per-class 5 --size {size}, then upload "
            "the images of /tmp/synth/<class>/ (images the head has not seen, at the backbone's input size)"
        )


def _python_to_paste() -> str:
    """The interpreter running this command as a user would type it: `.venv/bin/python` under `make run`
    (a bare `python` may be another one, without the project's packages)."""
    here = Path(sys.executable)
    try:
        relative = here.relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(here))
    return shlex.quote(str(relative))
