"""`python manage.py seed_demo`: the demo team and users, and a demo registry with an active head, once."""

from __future__ import annotations

from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command

from tests.fixtures_registry import REFERENCES_PER_CLASS
from webapp.registry.models import HeadVersion, ReferenceImage, TrainingJob
from webapp.teams.models import Membership


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", per_class=REFERENCES_PER_CLASS, stdout=out)
    return out.getvalue()


def test_it_seeds_users_and_keeps_an_existing_demo_registry(registry_references: dict[str, int]) -> None:
    # The registry the fixture built is the demo's (same service, same benchmark), and a head is active:
    # nothing is redone. (The full path, benchmark to active head, is the `active_head` fixture's.)
    active_head = HeadVersion.objects.create(
        version=1, status=HeadVersion.Status.ACTIVE, artifact="heads/head-v1.npz", head_kind="linear",
        classes=["real"], blocks=[8], backbone="ViT-S-16/random-seed0", pretrained=False, threshold=0.5,
    )  # fmt: skip
    references = ReferenceImage.objects.count()
    output = seed()
    assert "login: demo / demo-attribution" in output and "login: admin / admin-attribution" in output
    assert f"head v{active_head.version} already active" in output and "not pretrained" in output
    demo = authenticate(username="demo", password="demo-attribution")
    admin = authenticate(username="admin", password="admin-attribution")
    assert demo is not None and admin is not None and admin.is_staff and not demo.is_staff
    assert {m.user.username for m in Membership.objects.filter(team__name="Demo team")} == {"demo", "admin"}
    assert ReferenceImage.objects.count() == references and HeadVersion.objects.count() == 1

    demo.set_password("changed")
    demo.save()
    again = seed()
    assert "demo-attribution (unless changed since the first seed)" in again
    assert authenticate(username="demo", password="changed") is not None
    assert not TrainingJob.objects.exists() and HeadVersion.objects.count() == 1
