"""Uploaded files are served only through the view that checks the team, never from a public folder, and
always with a content type that cannot run in the browser."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import resolve

from tests.webapp import image_bytes, uploaded
from webapp.core import views
from webapp.submissions.models import Submission
from webapp.submissions.services import submission_create
from webapp.teams.models import Team


def client_of(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def upload(team: Team, user: User, seed: int) -> Submission:
    return submission_create(team=team, user=user, uploaded_file=uploaded("photo.png", image_bytes(seed=seed)))


def test_a_team_member_gets_the_image_as_an_inline_png_that_cannot_be_sniffed(team_a: Team, bob: User) -> None:
    submission = upload(team_a, bob, 800)
    response = client_of(bob).get(f"/media/{submission.image.name}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    name = submission.image.name.rsplit("/", 1)[1]
    assert response["Content-Disposition"] == f'inline; filename="{name}"'
    assert response["Content-Security-Policy"] == "default-src 'none'; img-src 'self'; sandbox"
    assert response["Cache-Control"].startswith("private")
    assert b"".join(response.streaming_content) == image_bytes(seed=800)


def test_others_get_a_404_and_the_anonymous_the_login_page(
    team_a: Team, alice: User, bob: User, charlie: User, staff: User
) -> None:
    path = f"/media/{upload(team_a, bob, 801).image.name}"
    assert client_of(alice).get(path).status_code == 200  # the whole team sees it
    assert client_of(charlie).get(path).status_code == 404
    assert client_of(staff).get(path).status_code == 404  # site staff hold no team's data
    anonymous = client_of(None).get(path)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_the_same_image_sent_by_two_teams_is_stored_twice_and_each_sees_only_its_own(
    team_a: Team, team_b: Team, bob: User, charlie: User
) -> None:
    ours, theirs = upload(team_a, bob, 802), upload(team_b, charlie, 802)
    assert ours.image.name != theirs.image.name and ours.sha256 == theirs.sha256
    assert client_of(charlie).get(f"/media/{ours.image.name}").status_code == 404
    assert client_of(charlie).get(f"/media/{theirs.image.name}").status_code == 200


def test_a_stored_file_of_an_unsafe_type_goes_out_as_a_download(team_a: Team, bob: User) -> None:
    # Uploads are named by their real format; a file stored some other way must still not render.
    submission = upload(team_a, bob, 803)
    name = default_storage.save("submissions/legacy/page.html", ContentFile(b"<script>alert(1)</script>"))
    Submission.objects.filter(pk=submission.pk).update(image=name)
    response = client_of(bob).get(f"/media/{name}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="page.html"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_paths_outside_the_stored_objects_are_404(team_a: Team, bob: User) -> None:
    client = client_of(bob)
    stored = upload(team_a, bob, 804).image.name
    for path in ("../webapp/settings.py", "..%2F..%2Fetc%2Fpasswd", "/etc/passwd", f"{stored}/../../x",
                 f"submissions/../{stored}", "submissions/"):
        assert client.get(f"/media/{path}").status_code == 404, path
    assert client.head(f"/media/{stored}").status_code == 405  # GET only


def test_media_has_no_public_route() -> None:
    assert resolve("/media/submissions/x.png").func is views.media
    media_root = settings.MEDIA_ROOT.resolve()
    static = [settings.STATIC_ROOT, *settings.STATICFILES_DIRS]
    assert all(media_root != folder.resolve() and folder.resolve() not in media_root.parents for folder in static)
