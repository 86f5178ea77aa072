"""The verdict as the analyst reads it (issue #16): one sentence for every page, export and API, a confidence
band, the runner-up, no generator label on an unrecognised image, and what the history and the cases do
with it: thumbnails, sorting, one decision filter, selections added to a case or exported."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from webapp.audit.models import AuditEvent
from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion
from webapp.submissions.models import Submission, Verdict
from webapp.submissions.selectors import (
    BAND_HIGH_DISTANCE,
    BAND_HIGH_MARGIN,
    BAND_LOW_DISTANCE,
    BAND_LOW_MARGIN,
    confidence_band,
    score_digits,
    verdict_reading,
    verdict_sentence,
)
from webapp.submissions.services import submission_create, verdict_store
from webapp.submissions.thumbnails import THUMBNAIL_PX, thumbnail_name

CLASSES = ("real", "bilinear-s1", "nearest-s1")
UNRECOGNISED = "Unrecognised source: matches neither real photographs nor a registered generator"


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(
    user: User, seed: int, name: str = "", case: Case | None = None, size: tuple[int, int] = (64, 48)
) -> Submission:
    file = uploaded(name or f"{seed}.png", image_bytes(seed=seed, size=size))
    return submission_create(team=user.membership.team, user=user, uploaded_file=file, case=case)


@pytest.fixture
def head(db: None) -> HeadVersion:
    Generator.objects.get_or_create(slug="bilinear-s1", defaults={"name": "Bilinear S1"})
    Generator.objects.get_or_create(slug="nearest-s1", defaults={"name": "Nearest S1"})
    return head_version_row(classes=CLASSES)


def judged(submission: Submission, head: HeadVersion, *, decision: str, label: str, score: float,
           threshold: float, probabilities: dict[str, float]) -> Verdict:
    verdict, _ = verdict_store(
        submission=submission, head_version=head, label=label, decision=decision, score=score,
        threshold=threshold, probabilities=probabilities, backbone=head.backbone, pretrained=head.pretrained,
        elapsed_ms=10.0,
    )
    Submission.objects.filter(pk=submission.pk).update(status=Submission.Status.DONE)
    return verdict


# --- the verdict in words ------------------------------------------------------------------------------


def test_the_band_edges_are_the_documented_ones() -> None:
    known = "known_generator"
    assert confidence_band(decision=known, distance=BAND_HIGH_DISTANCE, margin=BAND_HIGH_MARGIN) == "high"
    assert confidence_band(decision=known, distance=BAND_HIGH_DISTANCE - 0.001, margin=0.9) == "medium"
    assert confidence_band(decision=known, distance=0.5, margin=BAND_HIGH_MARGIN - 0.001) == "medium"
    assert confidence_band(decision=known, distance=BAND_LOW_DISTANCE, margin=BAND_LOW_MARGIN) == "medium"
    assert confidence_band(decision=known, distance=BAND_LOW_DISTANCE - 0.001, margin=0.9) == "low"
    assert confidence_band(decision=known, distance=0.5, margin=BAND_LOW_MARGIN - 0.001) == "low"
    # An unrecognised image has no class to lead with: its distance to the threshold alone decides.
    unknown = "unknown_generator"
    assert confidence_band(decision=unknown, distance=BAND_HIGH_DISTANCE, margin=0.0) == "high"
    assert confidence_band(decision=unknown, distance=0.1, margin=0.0) == "medium"
    assert confidence_band(decision=unknown, distance=0.01, margin=0.9) == "low"


@pytest.mark.parametrize(
    ("score", "threshold", "digits"),
    [(0.42, 0.43, 3), (0.4249, 0.4251, 4), (0.42501, 0.42504, 5), (0.9, 0.9, 6)],
)
def test_it_prints_enough_digits_to_tell_the_score_from_the_threshold(
    score: float, threshold: float, digits: int
) -> None:
    assert score_digits(score, threshold) == digits


def test_a_real_photograph_under_the_threshold_is_never_called_synthetic(bob: User, head: HeadVersion) -> None:
    """The analyst's report: "its score 0.42 is under the threshold 0.43" printed as 0.43 under 0.43, and
    a real photograph headlined as a synthetic image."""
    verdict = judged(
        upload(bob, 1), head, decision="unknown_generator", label="real", score=0.4249, threshold=0.4251,
        probabilities={"real": 0.4249, "bilinear-s1": 0.40, "nearest-s1": 0.1751},
    )
    sentence = verdict_sentence(verdict=verdict)
    assert sentence == (
        f"{UNRECOGNISED} — low confidence (score 0.4249 under the threshold 0.4251; "
        "closest known class: Real photograph, 42%)"
    )
    assert "ynthetic" not in sentence and "Generated" not in sentence
    reading = verdict_reading(verdict=verdict)
    assert (reading.label, reading.closest_known, reading.band) == ("", "real", "low")


def test_a_known_verdict_names_its_runner_up_and_band(bob: User, head: HeadVersion) -> None:
    close = judged(
        upload(bob, 2), head, decision="known_generator", label="bilinear-s1", score=0.62, threshold=0.6,
        probabilities={"bilinear-s1": 0.55, "nearest-s1": 0.45, "real": 0.0},
    )
    assert verdict_sentence(verdict=close) == (
        "Generated by Bilinear S1 — low confidence (55%; runner-up: Nearest S1, 45%)"
    )
    medium = judged(
        upload(bob, 3), head, decision="real", label="real", score=0.7, threshold=0.6,
        probabilities={"real": 0.7, "bilinear-s1": 0.2, "nearest-s1": 0.1},
    )
    assert verdict_sentence(verdict=medium) == (
        "Real photograph — medium confidence (70%; runner-up: Bilinear S1, 20%)"
    )


def test_the_verdict_page_shows_the_card(bob: User, head: HeadVersion) -> None:
    submission = upload(bob, 4, "harbour.png")
    judged(
        submission, head, decision="unknown_generator", label="bilinear-s1", score=0.31, threshold=0.6,
        probabilities={"bilinear-s1": 0.31, "real": 0.3, "nearest-s1": 0.39},
    )
    page = logged_in(bob).get(f"/submissions/{submission.pk}/").content.decode()
    assert f'data-testid="verdict-headline">{UNRECOGNISED}</p>' in page
    assert 'data-testid="verdict-band">high confidence' in page
    assert 'data-testid="closest-known">Bilinear S1 (0.310)' in page
    assert 'data-testid="verdict-score">0.310<' in page and 'data-testid="verdict-threshold">0.600<' in page
    assert "Synthetic" not in page


# --- no generator label on an unrecognised image: API, CSV, PDF, the history's filter ----------------


def test_the_api_gives_an_unrecognised_image_no_label_and_its_closest_known_class(
    bob: User, head: HeadVersion
) -> None:
    unknown, known = upload(bob, 5), upload(bob, 6)
    verdict_row(unknown, head, label="bilinear-s1", decision="unknown_generator", score=0.41)
    verdict_row(known, head, label="nearest-s1", decision="known_generator", score=0.97)
    client = api_client(bob)
    body = client.get(f"/api/v1/submissions/{unknown.pk}/").json()["verdict"]
    assert (body["label"], body["closest_known"], body["decision"]) == ("", "bilinear-s1", "unknown_generator")
    assert body["summary"].startswith(UNRECOGNISED) and body["confidence"] == "high"
    body = client.get(f"/api/v1/submissions/{known.pk}/").json()["verdict"]
    assert (body["label"], body["closest_known"]) == ("nearest-s1", "nearest-s1")


def test_the_generator_filter_returns_no_unrecognised_image(bob: User, head: HeadVersion) -> None:
    unknown, known, real = upload(bob, 7, "unknown.png"), upload(bob, 8, "known.png"), upload(bob, 9, "real.png")
    verdict_row(unknown, head, label="real", decision="unknown_generator", score=0.41)
    verdict_row(known, head, label="bilinear-s1", decision="known_generator")
    verdict_row(real, head, label="real", decision="real")
    client = logged_in(bob)
    page = client.get("/submissions/", {"label": "real"}).content.decode()
    assert "real.png" in page and "unknown.png" not in page and "known.png" not in page
    api = api_client(bob).get("/api/v1/submissions/", {"label": "real"}).json()["results"]
    assert [row["id"] for row in api] == [real.pk]
    # The API keeps `unknown_only` for its clients; the page offers the decision filter alone.
    only = api_client(bob).get("/api/v1/submissions/", {"unknown_only": "true"}).json()["results"]
    assert [row["id"] for row in only] == [unknown.pk]
    assert 'name="unknown_only"' not in page
    assert '<option value="unknown_generator" >Unrecognised source</option>' in page


def test_exports_put_the_closest_known_class_in_its_own_column(bob: User, head: HeadVersion) -> None:
    case = Case.objects.create(team=bob.membership.team, title="Harbour", created_by=bob)
    unknown, known = upload(bob, 10, case=case), upload(bob, 11, case=case)
    verdict_row(unknown, head, label="bilinear-s1", decision="unknown_generator", score=0.41)
    verdict_row(known, head, label="bilinear-s1", decision="known_generator")
    response = logged_in(bob).get(f"/cases/{case.pk}/export/csv/")
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(response.content.decode()))}
    assert (rows[unknown.pk]["label"], rows[unknown.pk]["generator"]) == ("", "")
    assert (rows[unknown.pk]["closest_known"], rows[unknown.pk]["confidence"]) == ("bilinear-s1", "high")
    assert rows[unknown.pk]["verdict"].startswith(UNRECOGNISED)
    assert (rows[known.pk]["label"], rows[known.pk]["generator"]) == ("bilinear-s1", "Bilinear S1")
    report = logged_in(bob).get(f"/reports/cases/{case.pk}.html").content.decode()
    assert "<th scope=\"col\">Closest known</th>" in report and "none (unrecognised)" in report


# --- the history: thumbnails, sorting, empty state, selections -----------------------------------------


def test_the_history_shows_thumbnails_that_only_the_team_may_fetch(
    bob: User, charlie: User, head: HeadVersion
) -> None:
    submission = upload(bob, 12, "big.png", size=(300, 200))
    page = logged_in(bob).get("/submissions/").content.decode()
    assert f'src="/submissions/{submission.pk}/thumbnail/"' in page
    response = logged_in(bob).get(f"/submissions/{submission.pk}/thumbnail/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    from PIL import Image

    thumbnail = Image.open(io.BytesIO(response.content))
    assert thumbnail.size == (THUMBNAIL_PX, THUMBNAIL_PX * 2 // 3)
    assert default_storage.exists(thumbnail_name(submission=submission))
    assert logged_in(charlie).get(f"/submissions/{submission.pk}/thumbnail/").status_code == 404


def test_the_history_sorts_by_a_column(bob: User, head: HeadVersion) -> None:
    names = {"b.png": 0.7, "a.png": 0.9, "c.png": 0.8}
    for seed, (name, score) in enumerate(names.items(), start=20):
        verdict_row(upload(bob, seed, name), head, label="real", decision="real", score=score)
    client = logged_in(bob)

    def order(sort: str) -> list[str]:
        page = client.get("/submissions/", {"sort": sort}).content.decode()
        return sorted(names, key=page.index)

    assert order("name") == ["a.png", "b.png", "c.png"] and order("-name") == ["c.png", "b.png", "a.png"]
    assert order("-score") == ["a.png", "c.png", "b.png"] and order("score") == ["b.png", "c.png", "a.png"]
    assert order("uploaded") == ["b.png", "a.png", "c.png"] and order("bogus") == ["c.png", "a.png", "b.png"]
    page = client.get("/submissions/", {"sort": "name"}).content.decode()
    assert '<th scope="col" aria-sort="ascending"><a href="?sort=-name">File</a></th>' in page


def test_an_empty_history_leads_to_the_upload_page(bob: User) -> None:
    page = logged_in(bob).get("/submissions/").content.decode()
    assert 'data-testid="empty-upload"' in page and 'href="/submissions/upload/"' in page
    filtered = logged_in(bob).get("/submissions/", {"q": "nothing"}).content.decode()
    assert "No submission matches these filters" in filtered


def test_selected_submissions_go_into_a_case_from_the_history_and_the_api(
    bob: User, charlie: User, head: HeadVersion
) -> None:
    team = bob.membership.team
    case = Case.objects.create(team=team, title="Harbour", created_by=bob)
    first, second, third = upload(bob, 30), upload(bob, 31), upload(bob, 32)
    response = logged_in(bob).post(
        "/cases/add-submissions/",
        {"case": case.pk, "submission_ids": [first.pk, second.pk], "next": "/submissions/?sort=name"},
    )
    assert response.status_code == 302 and response["Location"] == "/submissions/?sort=name"
    assert set(case.submissions.values_list("pk", flat=True)) == {first.pk, second.pk}
    assert AuditEvent.objects.get(action="case_add").detail == {"submissions": [first.pk, second.pk]}

    url = f"/api/v1/cases/{case.pk}/submissions/"
    added = api_client(bob).post(url, {"submission_ids": [second.pk, third.pk]}, format="json")
    assert added.status_code == 200 and added.json()["added"] == 1 and added.json()["case"]["submission_count"] == 3
    theirs = upload(charlie, 33)
    refused = api_client(bob).post(url, {"submission_ids": [theirs.pk]}, format="json")
    assert refused.status_code == 400 and Submission.objects.get(pk=theirs.pk).case_id is None
    assert api_client(charlie).post(url, {"submission_ids": [theirs.pk]}, format="json").status_code == 404
    Case.objects.filter(pk=case.pk).update(status=Case.Status.CLOSED)
    closed = api_client(bob).post(url, {"submission_ids": [third.pk]}, format="json")
    assert closed.status_code == 400 and "closed" in closed.json()["submission_ids"][0]
    # An offsite `next` is not followed.
    Case.objects.filter(pk=case.pk).update(status=Case.Status.OPEN)
    away = logged_in(bob).post(
        "/cases/add-submissions/", {"case": case.pk, "submission_ids": [third.pk], "next": "https://evil.test/"}
    )
    assert away["Location"] == f"/cases/{case.pk}/"


def test_a_selection_exports_as_csv_with_the_team_rows_only(bob: User, charlie: User, head: HeadVersion) -> None:
    mine, theirs = upload(bob, 40, "mine.png"), upload(charlie, 41, "theirs.png")
    verdict_row(mine, head, label="bilinear-s1", decision="unknown_generator", score=0.3)
    response = logged_in(bob).post(
        "/reports/submissions/export/", {"submission_ids": [mine.pk, theirs.pk], "format": "csv"}
    )
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["file_name"], r["label"], r["closest_known"]) for r in rows] == [("mine.png", "", "bilinear-s1")]


# --- a duplicate sent after another head was activated -------------------------------------------------


def test_a_duplicate_after_a_new_head_is_judged_again_and_both_verdicts_kept(bob: User, head: HeadVersion) -> None:
    original = upload(bob, 50, "first.png")
    old = verdict_row(original, head, label="real", decision="real")
    newer = head_version_row(version=2, classes=CLASSES)
    HeadVersion.objects.filter(pk=head.pk).update(status=HeadVersion.Status.RETIRED)
    HeadVersion.objects.filter(pk=newer.pk).update(status=HeadVersion.Status.ACTIVE)

    again = upload(bob, 50, "again.png")
    assert again.duplicate_of_id == original.pk
    original.refresh_from_db()
    assert original.status == Submission.Status.QUEUED  # the active head judges it again
    page = logged_in(bob).get(f"/submissions/{again.pk}/").content.decode()
    assert "This verdict comes from head v1; the active head is v2." in page and "queued for the active head" in page

    Submission.objects.filter(pk=original.pk).update(status=Submission.Status.PROCESSING)
    new = verdict_row(original, newer, label="bilinear-s1", decision="known_generator")
    assert set(Verdict.objects.filter(submission=original).values_list("pk", flat=True)) == {old.pk, new.pk}
    again.refresh_from_db()
    assert again.verdict_id == new.pk
    page = logged_in(bob).get(f"/submissions/{again.pk}/").content.decode()
    assert "Generated by Bilinear S1" in page and "the active head is" not in page
