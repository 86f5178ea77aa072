"""Browser fixtures: one headless Chromium for the session, one real Celery worker for the package, and
pages on pytest-django's live server (threads of this process, on the test database) that save a
screenshot of their last state under test-artifacts/ whether the test passed or not."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize
from pytest_django.live_server_helper import LiveServer

from tests.browser import DESKTOP, PageFactory, screenshot
from tests.fixtures import WorkerProcess, purge_broker

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# A browser download is not possible here: Debian's chromium, started without anything that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"CHROMIUM UNAVAILABLE: no browser at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread: Django would take the tests'
    # own ORM calls for calls from async code and refuse them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package", autouse=True)
def _worker_process(django_db_setup: None) -> Iterator[WorkerProcess]:
    """One worker for every browser test, started before anything else so that its engine loads while
    the session makes its benchmark and trains the active head. Each test's data is committed (the live
    server implies transactional_db) and flushed after it; a task left over from an earlier test finds
    no row and does nothing."""
    purge_broker()
    process = WorkerProcess()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def browser_worker(_worker_process: WorkerProcess) -> WorkerProcess:
    """The package's worker, ready."""
    _worker_process.wait_ready()
    return _worker_process


@pytest.fixture
def new_page(browser: Browser, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[PageFactory]:
    """A factory of pages in fresh browser contexts (own cookies: one user each) at a viewport size.
    Each page's last state is saved as test-artifacts/<test>[-<n>].png, also when the test failed."""
    opened: list[tuple[BrowserContext, Page]] = []
    errors: list[str] = []

    def make(viewport: ViewportSize = DESKTOP) -> Page:
        context = browser.new_context(base_url=live_server.url, viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        opened.append((context, page))
        return page

    yield make
    for index, (context, page) in enumerate(opened):
        suffix = f"-{index + 1}" if len(opened) > 1 else ""
        try:
            screenshot(page, request.node.name + suffix)
        except Exception as error:  # a crashed page leaves no picture; the test's own failure says why
            print(f"no screenshot of {request.node.name}{suffix}: {error}")
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def page(new_page: PageFactory) -> Page:
    """One desktop-sized page."""
    return new_page()
