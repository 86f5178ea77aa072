"""`python manage.py seed_demo`: a demo team and users, a demo registry and an active head (idempotent)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from webapp.registry.services import generator_ensure_real, registry_seed_demo
from webapp.teams.models import Membership
from webapp.teams.services import team_add_member, team_create

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache

DEMO_TEAM = "Demo team"
# Documented in the README: a demo is for one machine; change them (or delete the users) anywhere else.
DEMO_USER, DEMO_PASSWORD = "demo", "demo-attribution"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-attribution"
# Ten images a class, as an admin would register a new generator: the whole seed stays well under a
# minute on two cores (the benchmark at 224 pixels and the features of 50 images are most of it).
DEMO_PER_CLASS = 10


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
        with transaction.atomic():
            team = team_create(name=DEMO_TEAM)
            demo, demo_new = self._user(DEMO_USER, DEMO_PASSWORD, is_staff=False)
            admin, admin_new = self._user(ADMIN_USER, ADMIN_PASSWORD, is_staff=True)
            team_add_member(team=team, username=DEMO_USER, role=Membership.Role.ADMIN)
            team_add_member(team=team, username=ADMIN_USER, role=Membership.Role.ADMIN)
            generator_ensure_real()

        def load_engine() -> tuple[Backbone, FeatureCache]:
            # Loaded here, in this process, as a worker loads it; only when there is work for it.
            from workers.runtime import get_backbone, get_feature_cache

            return get_backbone(), get_feature_cache()

        seeded = registry_seed_demo(actor=admin, load_engine=load_engine, per_class=per_class, seed=seed)
        head = seeded.head_version
        out = self.stdout.write
        out(self.style.SUCCESS(f"Demo ready in {time.monotonic() - started:.1f} s."))
        out(f"  team: {team.name}")
        for user, password, new, role in (
            (demo, DEMO_PASSWORD, demo_new, "team admin"),
            (admin, ADMIN_PASSWORD, admin_new, "site staff, registry admin"),
        ):
            shown = password if new else f"{password} (unless changed since the first seed)"
            out(f"  login: {user.username} / {shown}   [{role}]")
        added = ", ".join(f"{slug} +{n}" for slug, n in seeded.added.items())
        out(f"  registry: {added} reference images")
        metrics = ", ".join(
            f"{key} {head.metrics[key]:.3f}"
            for key in ("accuracy", "auroc", "oscr")
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
        out(
            f"  try: python -m attribution synth /tmp/synth --seed 1 --size {size}, then upload images "
            "from /tmp/synth/<class>/ (the size of the demo's images: the backbone's input size)"
        )

    def _user(self, username: str, password: str, *, is_staff: bool) -> tuple[AbstractUser, bool]:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": is_staff}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user, created
