"""`/api/v1/generators/`: every team member reads the registry; only registry admins change it."""

from __future__ import annotations

import io

from django.contrib.auth.models import Permission, User
from PIL import Image

from tests.fixtures import api_client
from webapp.audit.models import AuditEvent
from webapp.registry.models import Generator, ReferenceImage

NEW = {
    "name": "Stable Diffusion XL",
    "slug": "sdxl",
    "family": "diffusion",
    "description": "SDXL 1.0",
    "release": "2023-07",
}


def png(color: tuple[int, int, int], name: str = "ref.png") -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = name
    return buffer


def test_it_lists_the_registry_to_every_team_member(bob: User, charlie: User, staff: User) -> None:
    Generator.objects.create(name="Midjourney", slug="midjourney", family="diffusion")
    for user in (bob, charlie, staff):
        response = api_client(user).get("/api/v1/generators/")
        assert response.status_code == 200, user
        slugs = [g["slug"] for g in response.json()["results"]]
        assert slugs == ["real", "midjourney"]  # the built-in class first
    real = response.json()["results"][0]
    assert real["builtin"] is True and real["family"] == "real" and real["reference_count"] == 0


def test_it_refuses_anonymous_and_teamless_users(db: None) -> None:
    assert api_client().get("/api/v1/generators/").status_code == 401
    loner = User.objects.create_user("loner", password="x")
    assert api_client(loner).get("/api/v1/generators/").status_code == 403


def test_it_lets_staff_create_and_patch_a_generator(staff: User) -> None:
    client = api_client(staff)
    created = client.post("/api/v1/generators/", NEW, format="json")
    assert created.status_code == 201, created.json()
    assert created.json() | {"created_at": None} == NEW | {
        "is_active": True, "aliases": [], "builtin": False, "reference_count": 0, "created_at": None
    }  # fmt: skip
    patched = client.patch(
        "/api/v1/generators/sdxl/", {"description": "v1.0 base", "is_active": False}, format="json"
    )
    assert patched.status_code == 200
    assert (patched.json()["description"], patched.json()["is_active"]) == ("v1.0 base", False)
    assert client.get("/api/v1/generators/sdxl/").json()["description"] == "v1.0 base"
    assert set(AuditEvent.objects.values_list("action", flat=True)) == {
        "generator_create",
        "generator_update",
    }


def test_it_names_what_is_wrong_in_a_bad_request(staff: User) -> None:
    client = api_client(staff)
    client.post("/api/v1/generators/", NEW, format="json")
    duplicate = client.post("/api/v1/generators/", NEW | {"name": "Another"}, format="json")
    assert duplicate.status_code == 400 and "slug" in duplicate.json()
    bad = client.post(
        "/api/v1/generators/", {"name": "X", "slug": "not a slug", "family": "painting"}, format="json"
    )
    assert bad.status_code == 400 and {"slug", "family"} <= set(bad.json())


def test_it_keeps_real_built_in(staff: User) -> None:
    client = api_client(staff)
    renamed = client.patch("/api/v1/generators/real/", {"slug": "photo"}, format="json")
    assert renamed.status_code == 400 and "built in" in renamed.json()["detail"]
    assert client.delete("/api/v1/generators/real/").status_code == 400
    assert (
        client.patch("/api/v1/generators/real/", {"description": "Camera"}, format="json").status_code == 200
    )
    assert Generator.objects.get(slug="real").name == "Real photograph"


def test_it_answers_403_to_members_on_every_registry_write(alice: User, bob: User, charlie: User) -> None:
    Generator.objects.create(name="Midjourney", slug="midjourney", family="diffusion")
    for user in (alice, bob, charlie):  # a team admin is not a registry admin
        client = api_client(user)
        writes = [
            client.post("/api/v1/generators/", NEW, format="json"),
            client.patch("/api/v1/generators/midjourney/", {"description": "x"}, format="json"),
            client.delete("/api/v1/generators/midjourney/"),
            client.post(
                "/api/v1/generators/midjourney/references/", {"image": png((1, 2, 3))}, format="multipart"
            ),
        ]
        assert [response.status_code for response in writes] == [403] * 4, user
        assert "registry admins" in writes[0].json()["detail"]
    assert Generator.objects.count() == 2 and not ReferenceImage.objects.exists()


def test_it_lets_a_user_granted_the_permission_manage_the_registry(bob: User) -> None:
    bob.user_permissions.add(Permission.objects.get(codename="change_generator"))
    bob = User.objects.get(pk=bob.pk)  # permissions are cached per user object
    assert api_client(bob).post("/api/v1/generators/", NEW, format="json").status_code == 201


def test_it_uploads_and_deduplicates_reference_images(staff: User, bob: User) -> None:
    client = api_client(staff)
    client.post("/api/v1/generators/", NEW, format="json")
    first = client.post(
        "/api/v1/generators/sdxl/references/", {"image": png((9, 99, 199))}, format="multipart"
    )
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["duplicate"] is False and len(body["sha256"]) == 64 and body["generator"] == "sdxl"
    assert (body["width"], body["height"], body["image_format"]) == (40, 30, "PNG")
    again = client.post(
        "/api/v1/generators/sdxl/references/", {"image": png((9, 99, 199), "b.png")}, format="multipart"
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["id"] == body["id"]
    listed = api_client(bob).get("/api/v1/generators/sdxl/references/")
    assert listed.status_code == 200 and [r["sha256"] for r in listed.json()["results"]] == [body["sha256"]]
    assert client.get("/api/v1/generators/sdxl/").json()["reference_count"] == 1


def test_it_rejects_a_bad_reference_file_with_its_reason(staff: User) -> None:
    client = api_client(staff)
    client.post("/api/v1/generators/", NEW, format="json")
    fake = io.BytesIO(b"%PDF-1.4 not an image")
    fake.name = "photo.jpg"
    response = client.post("/api/v1/generators/sdxl/references/", {"image": fake}, format="multipart")
    assert response.status_code == 400 and "image" in response.json()
    assert response.json()["image"] == ["not a recognised image file"]
    missing = client.post("/api/v1/generators/sdxl/references/", {}, format="multipart")
    assert missing.status_code == 400 and "image" in missing.json()
    assert client.post("/api/v1/generators/nope/references/", {"image": png((1, 1, 1))}).status_code == 404
