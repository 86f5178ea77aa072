"""The Content-Security-Policy in a real browser (issue #18, finding 4): the pages' own scripts still run
under it (the delete confirmation of app.js, the training job's nonce-carrying script, Swagger UI from our
static files), and Chromium reports no violation."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import ConsoleMessage, Dialog, Page, expect

from tests.browser import log_in
from webapp.registry import services as registry
from webapp.registry.models import Generator, TrainingJob


def watch_violations(page: Page) -> list[str]:
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    return violations


def test_the_pages_scripts_run_under_the_policy(page: Page, staff: User) -> None:
    violations = watch_violations(page)
    generator = registry.generator_create(actor=staff, name="Gen Z", slug="gen-z", family="gan")
    job = TrainingJob.objects.create(requested_by=staff, status=TrainingJob.Status.DONE, progress=1.0, step="")
    log_in(page, "staff")

    # app.js asks before a delete; dismissed, nothing is deleted.
    page.goto(f"/registry/generators/{generator.slug}/")
    asked: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("main").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{page.url}")
    assert asked == ["Delete Gen Z and its reference images?"]
    assert Generator.objects.filter(pk=generator.pk).exists()

    # The training job's inline script carries the nonce: it runs (a finished job shows no step).
    page.goto(f"/registry/training-jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_be_visible()

    # Swagger UI from drf-spectacular-sidecar's files renders the operations.
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()

    assert violations == []
