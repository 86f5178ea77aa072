"""Errors as a user meets them in the browser: a refused file in a batch, and a member facing the
registry's admin actions (no buttons to press, and a forged request refused)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from attribution.synth import DEFAULT_KNOWN
from tests.browser import assert_accessible, log_in, not_an_image, upload_images
from tests.fixtures import WorkerProcess
from tests.fixtures_registry import head_version_copy
from webapp.registry.models import HeadVersion, TrainingJob
from webapp.submissions.models import Submission

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.redis]


def test_it_shows_a_refused_file_with_its_reason_while_the_rest_of_the_batch_finishes(
    page: Page,
    bob: User,
    active_head: HeadVersion,
    browser_worker: WorkerProcess,
    synth_dir: Path,
    tmp_path: Path,
) -> None:
    good = upload_images(synth_dir, tmp_path, list(DEFAULT_KNOWN[1:3]), per_class=2, start=12)
    bad = not_an_image(tmp_path, "holiday.png")
    log_in(page, "bob")
    page.goto("/submissions/upload/")
    page.get_by_label("No case").check()
    # The file input, as the "choose files" button fills it (the drop is the analyst's-day test's).
    page.get_by_label("Drop images here").set_input_files([*good[:2], bad, *good[2:]])
    expect(page.locator("#selection")).to_contain_text("5 files selected")
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page.locator("#count-done")).to_have_text("4", timeout=120_000)
    expect(page.locator("#count-rejected")).to_have_text("1")
    expect(page.locator("#count-failed")).to_have_text("0")
    refused = page.locator("#file-rows tr").filter(has=page.get_by_role("rowheader", name=bad.name, exact=True))
    expect(refused.locator("td")).to_have_text("Rejected: not a recognised image file")
    expect(refused.locator("td")).to_have_class("state status-rejected")
    for path in good:
        row = page.locator("#file-rows tr").filter(has=page.get_by_role("rowheader", name=path.name, exact=True))
        expect(row.locator("td.status-done a")).to_have_attribute("href", re.compile(r"/submissions/\d+/$"))
    progress = page.get_by_label("Analysed")
    assert progress.evaluate("bar => [bar.value, bar.max]") == [4, 4]
    assert sorted(Submission.objects.values_list("original_name", flat=True)) == sorted(p.name for p in good)
    assert_accessible(page, "upload page with a refused file")


def test_it_shows_a_member_no_admin_buttons_and_refuses_a_forged_admin_request(
    page: Page, bob: User, active_head: HeadVersion
) -> None:
    candidate = head_version_copy(active_head, version=2)
    jobs = TrainingJob.objects.count()  # the active head's own
    log_in(page, "bob")

    page.goto("/registry/")
    expect(page.get_by_test_id("generators")).to_contain_text("tconv-s1")
    expect(page.get_by_role("link", name="Add a generator")).to_have_count(0)
    page.get_by_role("link", name="tconv-s1").first.click()
    expect(page.get_by_test_id("gallery").get_by_role("img")).to_have_count(10)
    for name in ("Edit", "Delete", "Upload"):
        expect(page.get_by_role("main").get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.locator("input[type=file]")).to_have_count(0)

    page.goto("/registry/heads/")
    expect(page.get_by_test_id("heads").get_by_role("row")).to_have_count(3)  # the header, v2 and v1
    expect(page.get_by_test_id("compare")).to_be_visible()  # members may read the comparison
    expect(page.get_by_role("main").get_by_role("button")).to_have_count(0)  # and press nothing
    expect(page.get_by_text("No training is running.")).to_be_visible()
    page.get_by_role("link", name="v2", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Head v2")
    expect(page.get_by_role("main").get_by_role("button")).to_have_count(0)

    # A forged request: bob's own session and a valid CSRF token, sent without any button.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": token}
    form: dict[str, str | float | bool] = {"csrfmiddlewaretoken": token}
    for url in ("/registry/heads/2/activate/", "/registry/heads/train/"):
        response = page.request.post(url, form=form, headers=headers)
        assert response.status == 403, (url, response.status)
        assert "CSRF" not in response.text()  # refused for who bob is, not for a bad token
    for url in ("/api/v1/heads/2/activate/", "/api/v1/heads/train/"):
        response = page.request.post(url, headers=headers)
        assert response.status == 403, (url, response.status)
        assert "registry admins" in response.json()["detail"]
    # The same session and token do what a member may: the refusals above are about permission.
    allowed = page.request.post("/api/v1/cases/", data={"title": "Allowed"}, headers=headers)
    assert allowed.status == 201, allowed.text()

    candidate.refresh_from_db()
    assert candidate.status == HeadVersion.Status.CANDIDATE
    assert HeadVersion.objects.get(version=1).status == HeadVersion.Status.ACTIVE
    assert TrainingJob.objects.count() == jobs
