"""The upload checks, file by file: what is accepted, and the message for what is not."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from PIL import Image

from tests.webapp import image_bytes, uploaded
from webapp.common.uploads import UploadRejected, display_name, upload_count_validate, upload_validate


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real 1-bit PNG of width x height black pixels: a few tens of KB that decode to 400 MB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * ((1 + (width + 7) // 8) * height), 9)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def animated_gif(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("photo.jpg", "JPEG", "JPEG"),
        ("drawing.png", "PNG", "PNG"),
        ("web.webp", "WEBP", "WEBP"),
        ("scan.bmp", "BMP", "BMP"),
        ("scan.tiff", "TIFF", "TIFF"),
        ("named-wrongly.gif", "PNG", "PNG"),  # the bytes decide, not the name
    ],
)
def test_it_accepts_the_allowed_formats(name: str, fmt: str, expected: str) -> None:
    data = image_bytes(fmt, size=(40, 30), seed=1)
    checked = upload_validate(uploaded_file=uploaded(name, data))
    assert (checked.info.format, checked.info.width, checked.info.height) == (expected, 40, 30)
    assert checked.sha256 == hashlib.sha256(data).hexdigest()
    assert checked.size_bytes == len(data)
    assert checked.name == name


def test_it_accepts_an_animated_gif_and_counts_its_frames() -> None:
    checked = upload_validate(uploaded_file=uploaded("anim.gif", animated_gif(3)))
    assert (checked.info.format, checked.info.n_frames, checked.extension) == ("GIF", 3, ".gif")


def test_it_keeps_png_text_chunks_as_metadata() -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a cat, Steps: 20, Sampler: Euler a")
    checked = upload_validate(uploaded_file=uploaded("sd.png", image_bytes("PNG", pnginfo=info)))
    assert checked.info.metadata["parameters"].startswith("a cat")


def test_it_rejects_an_empty_file() -> None:
    with pytest.raises(UploadRejected, match=r"empty \(0 bytes\)"):
        upload_validate(uploaded_file=uploaded("empty.jpg", b""))


@override_settings(UPLOAD_MAX_BYTES=1024 * 1024)
def test_it_rejects_a_file_over_the_size_limit_without_reading_it() -> None:
    class Unreadable(SimpleUploadedFile):
        def read(self, *args: object) -> bytes:
            raise AssertionError("an oversized file must be refused before it is read")

    big = Unreadable("big.png", b"\x89PNG" + b"\x00" * (1024 * 1024 + 1))
    with pytest.raises(UploadRejected, match=r"the file is 1\.0 MB, over the limit of 1\.0 MB"):
        upload_validate(uploaded_file=big)


def test_it_rejects_a_decompression_bomb() -> None:
    bomb = png_bomb()
    assert len(bomb) < 100_000
    with pytest.raises(UploadRejected, match=r"image too large: .*pixels exceeds the limit"):
        upload_validate(uploaded_file=uploaded("bomb.png", bomb))


@override_settings(UPLOAD_MAX_PIXELS=100)
def test_the_pixel_limit_is_a_setting() -> None:
    with pytest.raises(UploadRejected, match="exceeds the limit of 100"):
        upload_validate(uploaded_file=uploaded("small.png", image_bytes("PNG", size=(11, 10))))


def test_it_rejects_a_truncated_jpeg() -> None:
    data = image_bytes("JPEG", size=(64, 64))
    with pytest.raises(UploadRejected, match="truncated or corrupt"):
        upload_validate(uploaded_file=uploaded("cut.jpg", data[: len(data) // 2]))


def test_it_rejects_a_text_file_named_jpg() -> None:
    with pytest.raises(UploadRejected, match="not a recognised image file"):
        upload_validate(uploaded_file=uploaded("notes.jpg", b"just some text, not a picture\n" * 10))


def test_it_rejects_a_pdf_renamed_jpg() -> None:
    with pytest.raises(UploadRejected, match="not a recognised image file"):
        upload_validate(uploaded_file=uploaded("doc.jpg", b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"))


def test_it_names_a_known_format_that_is_not_allowed() -> None:
    psd = (
        b"8BPS\x00\x01"
        + b"\x00" * 6
        + b"\x00\x03"
        + struct.pack(">II", 8, 8)
        + b"\x00\x08\x00\x03"
        + b"\x00" * 64
    )
    with pytest.raises(UploadRejected, match="format PSD is not allowed"):
        upload_validate(uploaded_file=uploaded("layers.jpg", psd))


def test_the_stored_name_drops_any_folder() -> None:
    assert display_name("C:\\Users\\eve\\..\\secret.png") == "secret.png"
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("") == "unnamed"
    assert len(display_name("x" * 400 + ".png")) == 255


@override_settings(UPLOAD_MAX_FILES=3)
def test_it_limits_the_files_per_request() -> None:
    upload_count_validate(count=3)
    with pytest.raises(UploadRejected, match="4 files in one request: at most 3"):
        upload_count_validate(count=4)
    with pytest.raises(UploadRejected, match="no file"):
        upload_count_validate(count=0)
