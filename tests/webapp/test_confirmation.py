"""The analyst's confirmation of a verdict: the service (label resolution, the rules that keep a confirmation
consistent with its verdict, duplicates, re-attribution, clearing, the audit log), the API (contract, team
isolation), the verdict page's card, the history's filter, column and selection actions, and the exports and
reports that carry it."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.fixtures import api_client
from tests.webapp import head_version_row, image_bytes, uploaded, verdict_row
from tests.webapp.test_case_report import pdf_text
from webapp.audit.models import AuditEvent
from webapp.cases.models import Case
from webapp.registry.models import Generator, HeadVersion
from webapp.reports.services import case_export, case_report_html, case_report_pdf
from webapp.submissions.models import Confirmation, Submission, Verdict
from webapp.submissions.selectors import submission_confirmation, submission_get, submission_list
from webapp.submissions.services import (
    ConfirmationRefused,
    confirmation_label_resolve,
    submission_confirm,
    submission_confirmation_clear,
    submission_create,
    submissions_confirm,
)
from webapp.teams.models import Team

CLASSES = ("real", "sd14", "progan")
CONFIRMED, DISPUTED = Confirmation.Status.CONFIRMED, Confirmation.Status.DISPUTED
KNOWN, REAL, UNKNOWN = (Verdict.Decision.KNOWN_GENERATOR, Verdict.Decision.REAL,
                        Verdict.Decision.UNKNOWN_GENERATOR)


@pytest.fixture
def head(db: None) -> HeadVersion:
    Generator.objects.get_or_create(slug="real", defaults={"name": "Real photograph", "family": "real"})
    Generator.objects.create(slug="sd14", name="Stable Diffusion 1.4", family=Generator.Family.DIFFUSION)
    Generator.objects.create(slug="progan", name="ProGAN", family=Generator.Family.GAN)
    return head_version_row(classes=CLASSES)


def upload(user: User, seed: int, case: Case | None = None, name: str = "") -> Submission:
    return submission_create(
        team=user.membership.team, user=user, uploaded_file=uploaded(name or f"img-{seed}.png", image_bytes(seed=seed)),
        case=case,
    )


def judged(user: User, head: HeadVersion, seed: int, *, label: str, decision: str, case: Case | None = None,
           name: str = "") -> Submission:
    submission = upload(user, seed, case, name)
    verdict_row(submission, head, label=label, decision=decision, score=0.9 if decision != UNKNOWN else 0.3)
    return Submission.objects.get(pk=submission.pk)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def stored(submission: Submission) -> Confirmation:
    return Confirmation.objects.select_related("generator", "verdict").get(submission=submission)


def status_of(submission: Submission) -> str:
    return Submission.objects.values_list("confirmation_status", flat=True).get(pk=submission.pk)


# --- the service ---------------------------------------------------------------------------------------------


def test_it_confirms_a_known_verdict_with_its_own_label_and_records_it(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 1, label="sd14", decision=KNOWN)

    confirmation, created = submission_confirm(submission=submission, actor=bob, status=CONFIRMED,
                                               note="  Seen the prompt.  ")

    assert created
    row = stored(submission)
    assert (row.status, row.label, row.generator.slug, row.note, row.confirmed_by) == (
        "confirmed", "sd14", "sd14", "Seen the prompt.", bob)
    assert row.verdict == Verdict.objects.get(submission=submission)
    assert status_of(submission) == "confirmed"
    event = AuditEvent.objects.get(action="confirm")
    assert (event.actor, event.team, event.object_type, event.object_id) == (
        bob, bob.membership.team, "submission", str(submission.pk))
    assert event.detail["status"] == "confirmed" and event.detail["label"] == "sd14"
    assert event.detail["previous"] is None and event.detail["head_version"] == head.version


def test_it_confirms_a_real_verdict_as_real(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 2, label="real", decision=REAL)

    submission_confirm(submission=submission, actor=bob, status=CONFIRMED)

    assert (stored(submission).label, stored(submission).generator.slug) == ("real", "real")


def test_a_confirmed_unrecognised_verdict_is_an_unregistered_source_named_or_not(
    bob: User, head: HeadVersion
) -> None:
    plain = judged(bob, head, 3, label="progan", decision=UNKNOWN)
    named = judged(bob, head, 4, label="progan", decision=UNKNOWN)

    submission_confirm(submission=plain, actor=bob, status=CONFIRMED)
    submission_confirm(submission=named, actor=bob, status=CONFIRMED, label="  Midjourney v7  ")

    # The stored label of an unrecognised verdict is only its closest known class: never copied.
    assert (stored(plain).label, stored(plain).generator) == ("", None)
    assert (stored(named).label, stored(named).generator) == ("Midjourney v7", None)
    assert submission_confirmation(submission=submission_get(team=bob.membership.team, submission_id=plain.pk)
                                   ).label_words == "an unregistered source"  # type: ignore[union-attr,arg-type]


def test_a_dispute_may_say_nothing_or_name_what_the_image_is(bob: User, head: HeadVersion) -> None:
    silent = judged(bob, head, 5, label="sd14", decision=KNOWN)
    named = judged(bob, head, 6, label="real", decision=REAL)
    missed = judged(bob, head, 7, label="progan", decision=UNKNOWN)

    submission_confirm(submission=silent, actor=bob, status=DISPUTED)
    submission_confirm(submission=named, actor=bob, status=DISPUTED, label="Stable Diffusion 1.4")
    submission_confirm(submission=missed, actor=bob, status=DISPUTED, label="PROGAN")

    assert (stored(silent).label, stored(silent).generator) == ("", None)
    assert (stored(named).label, stored(named).generator.slug) == ("sd14", "sd14")
    assert (stored(missed).label, stored(missed).generator.slug) == ("progan", "progan")
    assert [status_of(s) for s in (silent, named, missed)] == ["disputed"] * 3
    assert AuditEvent.objects.filter(action="dispute").count() == 3


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("sd14", ("sd14", "sd14")),
        ("SD14", ("sd14", "sd14")),
        ("Stable Diffusion 1.4", ("sd14", "sd14")),
        ("stable diffusion 1.4", ("sd14", "sd14")),
        ("  ProGAN ", ("progan", "progan")),
        ("Real", ("real", "real")),
        ("Midjourney v7", ("Midjourney v7", None)),
        ("", ("", None)),
    ],
)
def test_a_label_names_a_registered_generator_or_another_in_words(
    head: HeadVersion, label: str, expected: tuple[str, str | None]
) -> None:
    resolved = confirmation_label_resolve(label=label)
    assert (resolved.label, resolved.generator.slug if resolved.generator else None) == expected


@pytest.mark.parametrize("label", ["x" * 101, "Mid\x00journey", "Mid\x1bjourney", "gen\u202eevil", "a\tb"])
def test_a_label_too_long_or_with_control_characters_is_refused(head: HeadVersion, label: str) -> None:
    with pytest.raises(ConfirmationRefused) as refused:
        confirmation_label_resolve(label=label)
    assert refused.value.field == "label"


def test_a_label_of_a_hundred_characters_is_kept(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 8, label="sd14", decision=KNOWN)

    submission_confirm(submission=submission, actor=bob, status=DISPUTED, label="y" * 100)

    assert stored(submission).label == "y" * 100


@pytest.mark.parametrize(
    ("decision", "label", "status", "given", "words"),
    [
        (KNOWN, "sd14", CONFIRMED, "progan", "dispute the verdict"),
        (KNOWN, "sd14", CONFIRMED, "Midjourney v7", "dispute the verdict"),
        (REAL, "real", CONFIRMED, "sd14", "dispute the verdict"),
        (KNOWN, "sd14", DISPUTED, "SD14", "confirm it instead"),
        (REAL, "real", DISPUTED, "real", "confirm it instead"),
        (UNKNOWN, "progan", CONFIRMED, "progan", "dispute the verdict"),
        (UNKNOWN, "progan", CONFIRMED, "real", "dispute the verdict"),
        (UNKNOWN, "progan", DISPUTED, "Midjourney v7", "confirm the verdict instead"),
    ],
)
def test_a_label_that_contradicts_the_status_is_refused(
    bob: User, head: HeadVersion, decision: str, label: str, status: str, given: str, words: str
) -> None:
    submission = judged(bob, head, 9, label=label, decision=decision)

    with pytest.raises(ConfirmationRefused, match=words) as refused:
        submission_confirm(submission=submission, actor=bob, status=status, label=given)

    assert refused.value.field == "label"
    assert not Confirmation.objects.exists() and status_of(submission) == ""
    assert not AuditEvent.objects.filter(action__in=["confirm", "dispute"]).exists()


def test_a_submission_without_a_verdict_cannot_be_confirmed(bob: User, head: HeadVersion) -> None:
    submission = upload(bob, 10, name="queued.png")

    with pytest.raises(ConfirmationRefused, match="queued.png has no verdict yet"):
        submission_confirm(submission=submission, actor=bob, status=CONFIRMED)

    assert not Confirmation.objects.exists() and status_of(submission) == ""


def test_a_bad_status_and_a_note_with_control_characters_are_refused(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 11, label="sd14", decision=KNOWN)

    with pytest.raises(ConfirmationRefused) as bad_status:
        submission_confirm(submission=submission, actor=bob, status="maybe")
    with pytest.raises(ConfirmationRefused) as bad_note:
        submission_confirm(submission=submission, actor=bob, status=CONFIRMED, note="ok\x07")
    submission_confirm(submission=submission, actor=bob, status=CONFIRMED, note="line one\nline two\ttabbed")

    assert (bad_status.value.field, bad_note.value.field) == ("status", "note")
    assert stored(submission).note == "line one\nline two\ttabbed"


def test_only_members_of_the_team_may_confirm(bob: User, charlie: User, staff: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 12, label="sd14", decision=KNOWN)

    for outsider in (charlie, staff):
        with pytest.raises(ConfirmationRefused, match="Only members of the image's team"):
            submission_confirm(submission=submission, actor=outsider, status=DISPUTED)
    assert not Confirmation.objects.exists()


def test_a_new_word_replaces_the_earlier_one_and_the_log_keeps_both(
    alice: User, bob: User, head: HeadVersion
) -> None:
    submission = judged(bob, head, 13, label="sd14", decision=KNOWN)
    submission_confirm(submission=submission, actor=bob, status=CONFIRMED)

    confirmation, created = submission_confirm(submission=submission, actor=alice, status=DISPUTED,
                                               label="progan", note="Made with ProGAN, says the source.")

    assert not created and Confirmation.objects.count() == 1
    assert (stored(submission).status, stored(submission).label, stored(submission).confirmed_by) == (
        "disputed", "progan", alice)
    assert status_of(submission) == "disputed"
    events = list(AuditEvent.objects.filter(action__in=["confirm", "dispute"]).order_by("id"))
    assert [(e.action, e.actor) for e in events] == [("confirm", bob), ("dispute", alice)]
    assert events[1].detail["previous"] == {"status": "confirmed", "label": "sd14"}


def test_a_duplicate_is_judged_by_its_originals_latest_verdict(bob: User, head: HeadVersion) -> None:
    original = judged(bob, head, 14, label="sd14", decision=KNOWN)
    later = head_version_row(2, classes=CLASSES)
    newest = verdict_row(original, later, label="progan", decision=KNOWN)
    duplicate = upload(bob, 14, name="again.png")
    assert duplicate.duplicate_of_id == original.pk

    submission_confirm(submission=duplicate, actor=bob, status=CONFIRMED)

    assert stored(duplicate).verdict == newest and stored(duplicate).label == "progan"
    assert status_of(duplicate) == "confirmed" and status_of(original) == ""


def test_a_confirmation_of_an_older_verdict_is_said_to_be_so(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 15, label="sd14", decision=KNOWN)
    submission_confirm(submission=submission, actor=bob, status=CONFIRMED)
    team = bob.membership.team

    reading = submission_confirmation(submission=submission_get(team=team, submission_id=submission.pk))  # type: ignore[arg-type]
    assert reading is not None and not reading.stale
    verdict_row(submission, head_version_row(2, classes=CLASSES), label="progan", decision=KNOWN)

    reading = submission_confirmation(submission=submission_get(team=team, submission_id=submission.pk))  # type: ignore[arg-type]
    assert reading is not None and reading.stale and reading.verdict_head_version == 1
    page = logged_in(bob).get(reverse("submissions:detail", args=[submission.pk])).content.decode()
    assert 'data-testid="confirmation-stale"' in page and "head v1" in page


def test_clearing_withdraws_the_word_and_records_it(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 16, label="sd14", decision=KNOWN)
    submission_confirm(submission=submission, actor=bob, status=DISPUTED, label="progan")

    assert submission_confirmation_clear(submission=submission, actor=bob)
    assert not submission_confirmation_clear(submission=submission, actor=bob)

    assert not Confirmation.objects.exists() and status_of(submission) == ""
    (event,) = AuditEvent.objects.filter(action="confirmation_clear")
    assert event.detail["previous"] == {"status": "disputed", "label": "progan"}
    assert event.object_id == str(submission.pk) and event.team == bob.membership.team


def test_a_selection_is_confirmed_all_or_none(bob: User, charlie: User, head: HeadVersion) -> None:
    first = judged(bob, head, 17, label="sd14", decision=KNOWN)
    second = judged(bob, head, 18, label="progan", decision=UNKNOWN)
    pending = upload(bob, 19, name="pending.png")
    theirs = judged(charlie, head, 20, label="sd14", decision=KNOWN)
    team = bob.membership.team

    with pytest.raises(ConfirmationRefused, match="not your team's"):
        submissions_confirm(team=team, actor=bob, submission_ids=[first.pk, theirs.pk], status=CONFIRMED)
    with pytest.raises(ConfirmationRefused, match="pending.png has no verdict yet"):
        submissions_confirm(team=team, actor=bob, submission_ids=[first.pk, pending.pk], status=CONFIRMED)
    assert not Confirmation.objects.exists()

    done = submissions_confirm(team=team, actor=bob, submission_ids=[second.pk, first.pk, first.pk], status=CONFIRMED)

    assert sorted(c.submission_id for c in done) == [first.pk, second.pk]
    assert (stored(first).label, stored(second).label) == ("sd14", "")
    assert AuditEvent.objects.filter(action="confirm").count() == 2


# --- the API ------------------------------------------------------------------------------------------------


def confirmation_url(submission: Submission) -> str:
    return f"/api/v1/submissions/{submission.pk}/confirmation/"


def test_the_api_confirms_then_replaces_and_every_submission_answer_carries_it(
    alice: User, bob: User, head: HeadVersion
) -> None:
    submission = judged(bob, head, 21, label="sd14", decision=KNOWN)
    other = judged(bob, head, 22, label="real", decision=REAL)

    first = api_client(bob).post(confirmation_url(submission), {"status": "confirmed", "note": "checked"},
                                 format="json")
    second = api_client(alice).post(confirmation_url(submission),
                                    {"status": "disputed", "label": "ProGAN", "note": "the source says so"},
                                    format="json")

    assert first.status_code == 201, first.content
    assert second.status_code == 200, second.content
    body = second.json()
    confirmed_at = body.pop("confirmed_at")
    assert body == {"status": "disputed", "label": "progan", "generator": "progan", "note": "the source says so",
                    "confirmed_by": "alice", "verdict_head_version": 1}
    assert re.match(r"\d{4}-\d\d-\d\dT", confirmed_at)
    detail = api_client(bob).get(f"/api/v1/submissions/{submission.pk}/").json()
    assert detail["confirmation"] == {**body, "confirmed_at": confirmed_at}
    listed = {row["id"]: row["confirmation"] for row in api_client(bob).get("/api/v1/submissions/").json()["results"]}
    assert listed == {submission.pk: {**body, "confirmed_at": confirmed_at}, other.pk: None}


def test_the_api_names_an_unregistered_generator_in_words(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 23, label="progan", decision=UNKNOWN)

    response = api_client(bob).post(confirmation_url(submission), {"status": "confirmed", "label": "Midjourney v7"},
                                     format="json")

    assert response.status_code == 201
    assert (response.json()["label"], response.json()["generator"]) == ("Midjourney v7", None)


def test_the_api_refuses_with_the_reason_by_field(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 24, label="sd14", decision=KNOWN)
    queued = upload(bob, 25)
    client = api_client(bob)

    bad_status = client.post(confirmation_url(submission), {"status": "maybe"}, format="json")
    contradiction = client.post(confirmation_url(submission), {"status": "confirmed", "label": "progan"},
                                format="json")
    too_long = client.post(confirmation_url(submission), {"status": "disputed", "label": "z" * 101}, format="json")
    no_verdict = client.post(confirmation_url(queued), {"status": "confirmed"}, format="json")

    assert [r.status_code for r in (bad_status, contradiction, too_long, no_verdict)] == [400] * 4
    assert "status" in bad_status.json()
    assert "dispute the verdict" in contradiction.json()["label"][0]
    assert "At most 100 characters" in too_long.json()["label"][0]
    assert "no verdict yet" in no_verdict.json()["detail"][0]
    assert not Confirmation.objects.exists()


def test_the_api_clears_a_confirmation(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 26, label="sd14", decision=KNOWN)
    client = api_client(bob)
    client.post(confirmation_url(submission), {"status": "confirmed"}, format="json")

    assert client.delete(confirmation_url(submission)).status_code == 204
    assert client.delete(confirmation_url(submission)).status_code == 204

    assert client.get(f"/api/v1/submissions/{submission.pk}/").json()["confirmation"] is None
    assert status_of(submission) == ""
    assert AuditEvent.objects.filter(action="confirmation_clear").count() == 1


def test_another_team_gets_404_and_staff_403(bob: User, charlie: User, staff: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 27, label="sd14", decision=KNOWN)
    api_client(bob).post(confirmation_url(submission), {"status": "confirmed"}, format="json")

    outsider = api_client(charlie)
    assert outsider.post(confirmation_url(submission), {"status": "disputed"}, format="json").status_code == 404
    assert outsider.delete(confirmation_url(submission)).status_code == 404
    assert api_client(staff).post(confirmation_url(submission), {"status": "disputed"},
                                  format="json").status_code == 403
    assert api_client().post(confirmation_url(submission), {"status": "disputed"}, format="json").status_code == 401
    assert stored(submission).status == "confirmed"
    # Nor does an outsider's list or page show it.
    assert api_client(charlie).get("/api/v1/submissions/").json()["results"] == []
    assert logged_in(charlie).post(reverse("submissions:confirmation", args=[submission.pk]),
                                   {"status": "disputed"}).status_code == 404
    assert stored(submission).status == "confirmed"


def test_the_api_list_filters_by_confirmation(bob: User, head: HeadVersion) -> None:
    confirmed = judged(bob, head, 28, label="sd14", decision=KNOWN)
    disputed = judged(bob, head, 29, label="real", decision=REAL)
    unreviewed = judged(bob, head, 30, label="progan", decision=UNKNOWN)
    submission_confirm(submission=confirmed, actor=bob, status=CONFIRMED)
    submission_confirm(submission=disputed, actor=bob, status=DISPUTED)
    client = api_client(bob)

    def ids(value: str) -> set[int]:
        response = client.get("/api/v1/submissions/", {"confirmation": value})
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("confirmed") == {confirmed.pk}
    assert ids("disputed") == {disputed.pk}
    assert ids("unreviewed") == {unreviewed.pk}
    assert ids("") == {confirmed.pk, disputed.pk, unreviewed.pk}
    assert client.get("/api/v1/submissions/", {"confirmation": "maybe"}).status_code == 400


def test_the_schema_documents_the_endpoint_and_the_field(db: None) -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operations = schema["paths"]["/api/v1/submissions/{id}/confirmation/"]
    assert set(operations) >= {"post", "delete"}
    assert {"200", "201", "400", "404"} <= set(operations["post"]["responses"])
    assert "204" in operations["delete"]["responses"]
    components = schema["components"]["schemas"]
    assert set(components["ConfirmationOutput"]["properties"]) == {
        "status", "label", "generator", "note", "confirmed_by", "confirmed_at", "verdict_head_version"}
    assert "confirmation" in components["SubmissionOutput"]["properties"]
    parameters = schema["paths"]["/api/v1/submissions/"]["get"]["parameters"]
    assert any(p["name"] == "confirmation" for p in parameters)


# --- the pages ----------------------------------------------------------------------------------------------


def test_the_verdict_page_shows_the_card_and_its_form_records_a_word(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 31, label="sd14", decision=KNOWN)
    client = logged_in(bob)
    page_url = reverse("submissions:detail", args=[submission.pk])

    page = client.get(page_url).content.decode()
    assert 'data-testid="confirmation-none"' in page
    assert '<label for="c-label">What the image is</label>' in page
    assert '<option value="progan" >ProGAN</option>' in page and "Other generator (name it)" in page
    assert "<!-- promote -->" in page
    assert "js/confirmation.js" in page and "<script>" not in page

    response = client.post(reverse("submissions:confirmation", args=[submission.pk]), {
        "action": "save", "status": "disputed", "label": "__other__", "label_other": "Midjourney v7",
        "note": "Found the original post.",
    })

    assert response.status_code == 302 and response["Location"] == page_url
    assert (stored(submission).status, stored(submission).label) == ("disputed", "Midjourney v7")
    page = client.get(page_url).content.decode()
    card = page[page.index('data-testid="confirmation-card"'):]
    assert "Verdict disputed." in page
    assert "Disputed" in card and "Midjourney v7 (unregistered)" in card and "Found the original post." in card
    assert 'data-testid="confirmation-stale"' not in page
    # The form starts from what was said.
    assert 'value="disputed" checked' in card and 'value="Midjourney v7"' in card


def test_the_verdict_page_says_why_a_word_is_refused_and_withdraws_one(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 32, label="sd14", decision=KNOWN)
    client = logged_in(bob)
    url = reverse("submissions:confirmation", args=[submission.pk])

    refused = client.post(url, {"action": "save", "status": "confirmed", "label": "progan"}, follow=True)
    assert "to say the image is ProGAN, dispute the verdict" in html.unescape(refused.content.decode())
    assert not Confirmation.objects.exists()

    client.post(url, {"action": "save", "status": "confirmed", "label": ""})
    assert stored(submission).label == "sd14"
    withdrawn = client.post(url, {"action": "clear"}, follow=True)
    assert "Confirmation withdrawn." in withdrawn.content.decode()
    assert not Confirmation.objects.exists() and status_of(submission) == ""


def test_the_history_filters_by_review_shows_it_and_confirms_a_selection(bob: User, head: HeadVersion) -> None:
    known = judged(bob, head, 33, label="sd14", decision=KNOWN, name="known.png")
    real = judged(bob, head, 34, label="real", decision=REAL, name="real.png")
    unknown = judged(bob, head, 35, label="progan", decision=UNKNOWN, name="unknown.png")
    client = logged_in(bob)
    history = reverse("submissions:history")

    response = client.post(reverse("submissions:confirm_selection"), {
        "submission_ids": [known.pk, unknown.pk], "status": "confirmed", "next": f"{history}?sort=name",
    })
    assert response.status_code == 302 and response["Location"] == f"{history}?sort=name"
    client.post(reverse("submissions:confirm_selection"), {"submission_ids": [real.pk], "status": "disputed"})

    assert [status_of(s) for s in (known, real, unknown)] == ["confirmed", "disputed", "confirmed"]

    def names(review: str) -> list[str]:
        page = client.get(history, {"confirmation": review}).content.decode()
        return sorted(re.findall(r'>(\w+\.png)</a> <span class="muted">#', page))

    assert names("confirmed") == ["known.png", "unknown.png"]
    assert names("disputed") == ["real.png"]
    assert names("") == ["known.png", "real.png", "unknown.png"]
    submission_confirmation_clear(submission=real, actor=bob)
    assert names("unreviewed") == ["real.png"]
    page = client.get(history).content.decode()
    assert '<label for="f-confirmation">Analyst review</label>' in page
    assert 'data-testid="confirm-selection"' in page and 'data-testid="dispute-selection"' in page
    assert page.count('class="badge confirmation-confirmed">Confirmed</span>') == 2
    assert page.count('<span class="confirmation-unreviewed">Not reviewed</span>') == 1


def test_the_history_selection_refuses_another_teams_ids(bob: User, charlie: User, head: HeadVersion) -> None:
    theirs = judged(bob, head, 36, label="sd14", decision=KNOWN)
    client = logged_in(charlie)

    response = client.post(reverse("submissions:confirm_selection"),
                           {"submission_ids": [theirs.pk], "status": "disputed"}, follow=True)

    assert "Some of the selected submissions are not your team" in html.unescape(response.content.decode())
    assert not Confirmation.objects.exists()
    assert theirs.original_name not in response.content.decode()


def test_the_queryset_filter_uses_the_stored_status(bob: User, head: HeadVersion) -> None:
    submission = judged(bob, head, 37, label="sd14", decision=KNOWN)
    submission_confirm(submission=submission, actor=bob, status=CONFIRMED)

    query = str(submission_list(team=bob.membership.team, confirmation="confirmed").query)

    assert "confirmation_status" in query and "submissions_confirmation" not in query


# --- exports and reports ------------------------------------------------------------------------------------


@pytest.fixture
def reviewed_case(alice: User, bob: User, head: HeadVersion) -> tuple[Case, Submission, Submission, Submission]:
    case = Case.objects.create(team=bob.membership.team, title="Reviewed case", created_by=bob)
    confirmed = judged(bob, head, 40, label="sd14", decision=KNOWN, case=case, name="confirmed.png")
    disputed = judged(bob, head, 41, label="real", decision=REAL, case=case, name="disputed.png")
    unreviewed = judged(bob, head, 42, label="progan", decision=UNKNOWN, case=case, name="unreviewed.png")
    submission_confirm(submission=confirmed, actor=bob, status=CONFIRMED, note="=HYPERLINK(\"x\")")
    submission_confirm(submission=disputed, actor=alice, status=DISPUTED, label="Midjourney v7",
                       note="Posted by the generator's account.")
    return case, confirmed, disputed, unreviewed


def test_the_case_exports_carry_the_confirmation(
    bob: User, reviewed_case: tuple[Case, Submission, Submission, Submission]
) -> None:
    case, confirmed, disputed, unreviewed = reviewed_case

    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(case_export(case=case, user=bob,
                                                                            export_format="csv").content))}
    document = json.loads(case_export(case=case, user=bob, export_format="json").content)

    assert (rows[confirmed.pk]["confirmation"], rows[confirmed.pk]["confirmation_label"],
            rows[confirmed.pk]["confirmation_generator"], rows[confirmed.pk]["confirmed_by"]) == (
        "confirmed", "sd14", "sd14", "bob")
    assert rows[confirmed.pk]["confirmation_note"] == "'=HYPERLINK(\"x\")"  # never a formula in a spreadsheet
    assert rows[confirmed.pk]["confirmed_at"] == stored(confirmed).updated_at.isoformat()
    assert rows[confirmed.pk]["confirmation_head_version"] == "1"
    assert (rows[disputed.pk]["confirmation"], rows[disputed.pk]["confirmation_label"],
            rows[disputed.pk]["confirmation_generator"], rows[disputed.pk]["confirmed_by"]) == (
        "disputed", "Midjourney v7", "", "alice")
    assert rows[unreviewed.pk]["confirmation"] == "" and rows[unreviewed.pk]["confirmed_by"] == ""
    by_id = {row["id"]: row for row in document["submissions"]}
    assert by_id[disputed.pk]["confirmation_note"] == "Posted by the generator's account."
    assert by_id[unreviewed.pk]["confirmation_head_version"] is None
    assert by_id[confirmed.pk]["confirmation_head_version"] == 1


def test_the_selection_export_carries_the_confirmation(
    bob: User, reviewed_case: tuple[Case, Submission, Submission, Submission]
) -> None:
    _, confirmed, disputed, _ = reviewed_case

    response = logged_in(bob).post(reverse("reports:selection_export"),
                                   {"submission_ids": [confirmed.pk, disputed.pk], "format": "csv"})

    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(response.content.decode()))}
    assert (rows[confirmed.pk]["confirmation"], rows[disputed.pk]["confirmation"]) == ("confirmed", "disputed")


def review_facts(confirmed: Submission, disputed: Submission) -> list[str]:
    at = {s.pk: stored(s).updated_at for s in (confirmed, disputed)}
    return [
        f"Confirmed by bob at {at[confirmed.pk]:%Y-%m-%d %H:%M:%S} UTC. What the image is: Stable Diffusion 1.4"
        " (label sd14)",
        f"Disputed by alice at {at[disputed.pk]:%Y-%m-%d %H:%M:%S} UTC. What the image is: Midjourney v7"
        " (unregistered) (label Midjourney v7)",
        "Note: Posted by the generator's account.",
        "Not reviewed by an analyst.",
    ]


def test_the_html_report_shows_the_confirmation(
    reviewed_case: tuple[Case, Submission, Submission, Submission]
) -> None:
    case, confirmed, disputed, _ = reviewed_case

    document = case_report_html(case=case)

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", document)).split())
    for fact in review_facts(confirmed, disputed):
        assert fact in text, fact
    assert text.count("Not reviewed by an analyst.") == 1
    # The audit trail of the report lists the words too.
    assert " confirm " in text and " dispute " in text


def test_the_pdf_report_shows_the_confirmation(
    reviewed_case: tuple[Case, Submission, Submission, Submission], tmp_path: Path
) -> None:
    case, confirmed, disputed, _ = reviewed_case

    text = pdf_text(case_report_pdf(case=case), tmp_path)

    for fact in review_facts(confirmed, disputed)[2:]:
        assert fact in text, fact
    assert "Confirmed by bob" in text and "Disputed by alice" in text
    assert "Midjourney v7 (unregistered)" in text


def test_a_team_without_reviews_exports_empty_columns(bob: User, head: HeadVersion, team_a: Team) -> None:
    case = Case.objects.create(team=team_a, title="Nothing reviewed", created_by=bob)
    judged(bob, head, 43, label="sd14", decision=KNOWN, case=case)

    (row,) = csv.DictReader(io.StringIO(case_export(case=case, user=bob, export_format="csv").content))

    assert {key: row[key] for key in row if key.startswith("confirm")} == {
        "confirmation": "", "confirmation_label": "", "confirmation_generator": "", "confirmed_by": "",
        "confirmed_at": "", "confirmation_note": "", "confirmation_head_version": ""}
