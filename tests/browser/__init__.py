"""Tests in a real headless Chromium, driven by Playwright, against the live server and a real worker.

Helpers the browser tests share: logging in through the form, test images, a true drag-and-drop of
files, and the axe-core accessibility check.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin
from playwright.sync_api import Page, ViewportSize

from tests.fixtures import PASSWORD, REPO_ROOT

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
ARTIFACTS = REPO_ROOT / "test-artifacts"  # ignored by git; CI keeps it for inspection
AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
# axe-core's impact levels that fail a test; "moderate" and "minor" are reported, not failed.
FAILING_IMPACTS = ("serious", "critical")
SOFTWARE_TAG = "browser-test-camera 1.0"  # a PNG text chunk the verdict page lists among the metadata

PageFactory = Callable[..., Page]  # the `new_page` fixture: new_page(viewport=DESKTOP) -> Page


def artifact_path(name: str) -> Path:
    """Where a screenshot called `name` goes: test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") + ".png")


def screenshot(page: Page, name: str) -> None:
    """The whole page as test-artifacts/<name>.png, its lazy images loaded as if scrolled to."""
    page.evaluate(
        """async () => {
            const images = [...document.images];
            images.forEach((img) => { img.loading = "eager"; });
            await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
                img.addEventListener("load", done); img.addEventListener("error", done);
            })));
        }"""
    )
    page.screenshot(path=str(artifact_path(name)), full_page=True)


def log_in(page: Page, username: str, *, next_url: str = "") -> None:
    """Log in through the login form, as a person does (labels, typing, the button)."""
    page.goto("/accounts/login/" + (f"?next={next_url}" if next_url else ""))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def upload_images(synth_dir: Path, out_dir: Path, classes: list[str], per_class: int, *, start: int = 10) -> list[Path]:
    """PNG files from the synthetic benchmark, `per_class` of each class from index `start` (the active
    head's references are the first ten), saved again with a `Software` text chunk and a name of their own."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for label in classes:
        for source in sorted((synth_dir / label).glob("*.png"))[start : start + per_class]:
            info = PngImagePlugin.PngInfo()
            info.add_text("Software", SOFTWARE_TAG)
            path = out_dir / f"{label}-{source.stem}.png"
            with Image.open(source) as image:
                image.save(path, pnginfo=info)
            paths.append(path)
    return paths


def not_an_image(out_dir: Path, name: str = "notes.png") -> Path:
    """A text file with an image's name: the upload check refuses it."""
    path = out_dir / name
    path.write_bytes(b"meeting notes, not a picture\n" * 4)
    return path


def drop_files(page: Page, selector: str, paths: list[Path]) -> None:
    """Drag files onto an element as a person does from a file manager: a DataTransfer holding the files,
    dispatched with dragenter, dragover and drop (Playwright's documented way to drop files)."""
    payload = [{"name": p.name, "type": "image/png", "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    data_transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, { type: f.type }));
            }
            return transfer;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": data_transfer})
    page.dispatch_event(selector, "dragover", {"dataTransfer": data_transfer})
    assert "dragging" in (page.get_attribute(selector, "class") or ""), "no feedback while dragging"
    page.dispatch_event(selector, "drop", {"dataTransfer": data_transfer})
    data_transfer.dispose()


@cache
def _axe_source() -> str:
    return AXE_JS.read_text()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now: id, impact, help and the offending nodes."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the page's Content-Security-Policy forbids inline scripts,
        # which a <script> tag added with the source would be.
        page.evaluate(_axe_source())
    return page.evaluate(
        """async () => {
            const results = await axe.run(document, { resultTypes: ["violations"] });
            return results.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " :: " + n.failureSummary),
            }));
        }"""
    )


def assert_accessible(page: Page, where: str) -> None:
    """Fail on serious or critical axe-core violations, naming each rule and its first nodes."""
    failing = [v for v in axe_violations(page) if v["impact"] in FAILING_IMPACTS]
    if failing:
        lines = [f"{where} ({page.url}): {len(failing)} serious or critical accessibility violation(s)"]
        for v in failing:
            lines.append(f"- [{v['impact']}] {v['id']}: {v['help']}")
            lines.extend(f"    {node}" for node in v["nodes"])
        raise AssertionError("\n".join(lines))
