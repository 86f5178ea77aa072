"""The demo, in one place: a demo team and its users, a registry from the synthetic benchmark and an
active head trained on it. Idempotent: running it again adds nothing that is there."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import transaction
from django.db.models import Count

from webapp.registry.models import Generator, HeadVersion
from webapp.registry.selectors import head_version_active
from webapp.registry.services import (
    Actor,
    generator_ensure_real,
    head_train_now,
    head_version_activate,
    registry_seed_from_folder,
)
from webapp.teams.models import Membership, Team
from webapp.teams.services import team_add_member, team_create

if TYPE_CHECKING:
    from attribution.backbone import Backbone
    from attribution.features import FeatureCache

DEMO_TEAM = "Demo team"
# Documented in the README: a demo is for one machine; change them (or delete the users) anywhere else.
DEMO_USER, DEMO_PASSWORD = "demo", "demo-attribution"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-attribution"


@dataclass(frozen=True)
class DemoUser:
    user: AbstractUser
    password: str
    created: bool
    role: str


def demo_team_seed() -> tuple[Team, list[DemoUser]]:
    """The demo team with a team admin (`demo`) and a site staff member who is also a registry admin."""
    with transaction.atomic():
        team = team_create(name=DEMO_TEAM)
        users = [
            _demo_user(DEMO_USER, DEMO_PASSWORD, is_staff=False, role="team admin"),
            _demo_user(ADMIN_USER, ADMIN_PASSWORD, is_staff=True, role="site staff, registry admin"),
        ]
        for demo_user in users:
            team_add_member(team=team, username=demo_user.user.username, role=Membership.Role.ADMIN)
        generator_ensure_real()
    return team, users


def _demo_user(username: str, password: str, *, is_staff: bool, role: str) -> DemoUser:
    user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": is_staff})
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
    return DemoUser(user=user, password=password, created=created, role=role)


@dataclass(frozen=True)
class DemoSeed:
    added: dict[str, int]
    head_version: HeadVersion
    trained: bool


def registry_seed_demo(
    *,
    actor: Actor,
    load_engine: Callable[[], tuple[Backbone, FeatureCache]],
    per_class: int = 10,
    seed: int = 0,
    source_dir: Path | None = None,
) -> DemoSeed:
    """The demo registry: "real" and the synthetic benchmark's known generators (`per_class` references
    each, from `source_dir` or from a benchmark made now), and an active head trained on them. Running it
    again adds nothing and trains only when no head is active; `load_engine` (backbone and feature cache)
    is called only when there is work for them.

    The benchmark is made at the backbone's input size: resampled by the preprocessing (96 to 224 pixels),
    the generators' fine traces fade, and with random weights ten images a class no longer tell them apart.
    """
    from attribution.synth import DEFAULT_KNOWN, make_benchmark

    description = "A small generator network of the synthetic demo benchmark (python -m attribution synth)."
    have = dict(
        Generator.objects.filter(slug__in=DEFAULT_KNOWN)
        .annotate(n=Count("references"))
        .values_list("slug", "n")
    )
    active = head_version_active()
    if active is not None and all(have.get(slug, 0) >= per_class for slug in DEFAULT_KNOWN):
        return DemoSeed(added=dict.fromkeys(DEFAULT_KNOWN, 0), head_version=active, trained=False)
    backbone, cache = load_engine()
    with tempfile.TemporaryDirectory() as folder:
        if source_dir is None:
            source_dir = Path(folder)
            make_benchmark(source_dir, seed=seed, per_class=per_class, size=backbone.image_size[0])
        added = registry_seed_from_folder(
            source_dir=source_dir,
            classes=DEFAULT_KNOWN,
            per_class=per_class,
            actor=actor,
            description=description,
        )
    active = head_version_active()
    if active is not None:
        return DemoSeed(added=added, head_version=active, trained=False)
    head = head_train_now(actor=actor, backbone=backbone, cache=cache)
    return DemoSeed(
        added=added, head_version=head_version_activate(head_version=head, actor=actor), trained=True
    )
