"""Opening untrusted files: modes, orientation, frames, bombs, damaged files, formats, metadata."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, PngImagePlugin

from attribution.images import ImageRejected, inspect_image, open_image, sha256_of

ALLOWED = "BMP, GIF, JPEG, PNG, TIFF, WEBP"


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 8-bit greyscale pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_it_rotates_upright_by_exif_orientation() -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored rotated: display turns it 90 degrees clockwise
    data = encode(image, "JPEG", exif=exif, quality=95)

    upright = open_image(data)

    assert upright.size == (20, 40)
    pixels = np.asarray(upright)
    top, bottom = pixels[5, 10], pixels[35, 10]
    assert top[0] > 200 and top[1] < 60  # the red left half is now on top
    assert bottom.min() > 200
    info = inspect_image(data)
    assert (info.width, info.height) == (40, 20)  # as stored in the file
    assert info.metadata["Orientation"] == "6"


def _grey16() -> Image.Image:
    return Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))


@pytest.mark.parametrize(
    ("image", "image_format", "expected"),
    [
        # RGBA: opaque blue, fully transparent red (becomes white), half-transparent red.
        (
            Image.fromarray(np.array([[[0, 0, 255, 255], [255, 0, 0, 0], [255, 0, 0, 128]]], dtype=np.uint8)),
            "PNG",
            [(0, 0, 255), (255, 255, 255), (255, 127, 127)],
        ),
        (
            Image.fromarray(np.array([[[10, 255], [10, 0], [0, 128]]], dtype=np.uint8), mode="LA"),
            "PNG",
            [(10, 10, 10), (255, 255, 255), (127, 127, 127)],
        ),
        (_grey16(), "PNG", [(0, 0, 0), (128, 128, 128), (255, 255, 255)]),
        (
            Image.fromarray(np.array([[0, 1028, 65535]], dtype=np.int32)),
            "TIFF",
            [(0, 0, 0), (4, 4, 4), (255, 255, 255)],
        ),
        (
            Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)),
            "TIFF",
            [(0, 0, 0), (128, 128, 128), (255, 255, 255)],
        ),
        (Image.new("CMYK", (3, 1), (0, 255, 255, 0)), "TIFF", [(255, 0, 0)] * 3),
        (Image.new("L", (3, 1), 77), "PNG", [(77, 77, 77)] * 3),
    ],
    ids=["RGBA", "LA", "I;16", "I", "F", "CMYK", "L"],
)
def test_it_converts_every_mode_to_rgb(
    image: Image.Image, image_format: str, expected: list[tuple[int, int, int]]
) -> None:
    data = encode(image, image_format)
    assert Image.open(io.BytesIO(data)).mode == image.mode  # the file really is in that mode

    rgb = open_image(data)

    assert rgb.mode == "RGB"
    got = [rgb.getpixel((x, 0)) for x in range(3)]
    assert np.abs(np.array(got, dtype=int) - np.array(expected)).max() <= 1


def test_it_composites_palette_transparency_on_white() -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 128, 0, 200, 0, 0] + [0, 0, 0] * 254)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    data = encode(palette, "PNG", transparency=1)

    rgb = open_image(data)

    assert [rgb.getpixel((0, 0)), rgb.getpixel((1, 0))] == [(0, 128, 0), (255, 255, 255)]


def test_it_reads_the_first_frame_of_an_animated_gif() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])

    assert open_image(data).getpixel((4, 4)) == (255, 0, 0)
    info = inspect_image(data)
    assert (info.format, info.n_frames) == ("GIF", 2)


def test_it_accepts_paths_bytes_and_file_objects_alike(tmp_path: Path) -> None:
    data = encode(noise(16, 12), "PNG")
    path = tmp_path / "image.png"
    path.write_bytes(data)
    stream = io.BytesIO(data)
    stream.read(5)  # a file object is read from its start wherever it stands

    images = [open_image(path), open_image(str(path)), open_image(data), open_image(stream)]

    reference = np.asarray(images[0])
    assert all(np.array_equal(np.asarray(image), reference) for image in images)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_of(path) == sha256_of(data) == sha256_of(stream) == expected


def test_it_rejects_a_header_claiming_a_huge_image_without_decoding_it() -> None:
    started = time.perf_counter()
    with pytest.raises(ImageRejected, match=r"^image too large: 400000000 pixels exceeds the limit of \d+"):
        inspect_image(png_header(20_000, 20_000))
    with pytest.raises(ImageRejected, match="image too large"):
        open_image(png_header(20_000, 20_000))
    assert time.perf_counter() - started < 1


def test_it_rejects_images_over_max_pixels_with_their_size() -> None:
    data = encode(noise(100, 100), "PNG")

    with pytest.raises(ImageRejected, match=r"^image too large: 100 x 100 pixels exceeds the limit of 5000$"):
        open_image(data, max_pixels=5000)
    assert inspect_image(data, max_pixels=10_000).width == 100


def test_it_rejects_a_truncated_jpeg() -> None:
    data = encode(noise(64, 64), "JPEG", quality=90)

    with pytest.raises(ImageRejected, match=r"^truncated or corrupt image"):
        open_image(data[: len(data) // 2])
    with pytest.raises(ImageRejected, match=r"^truncated or corrupt image"):
        inspect_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "content",
    [b"", b"just some text, not an image\n", png_header(0, 5)],
    ids=["empty", "text", "zero-width"],
)
def test_it_rejects_what_is_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.png"
    path.write_bytes(content)

    with pytest.raises(ImageRejected, match="^not a recognised image file$"):
        open_image(path)
    with pytest.raises(ImageRejected, match="^not a recognised image file$"):
        inspect_image(path)


def test_it_rejects_a_tiff_whose_second_frame_has_no_dimensions() -> None:
    # Found by the upload fuzz: counting the frames makes Pillow raise TypeError ("Missing dimensions").
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), "red").save(buffer, "TIFF", save_all=True, append_images=[Image.new("RGB", (12, 10))])
    data = bytearray(buffer.getvalue())
    # Directory entries: tag 256 (ImageWidth, little-endian), any type, count 1.
    count_one = struct.pack("<I", 1)
    widths = [i for i in range(len(data) - 8) if data[i : i + 2] == b"\x00\x01" and data[i + 4 : i + 8] == count_one]
    second = widths[1]  # the ImageWidth entry of the second frame's directory, renamed to an unknown tag
    data[second : second + 2] = b"\x00\x0f"
    with pytest.raises(ImageRejected, match="truncated or corrupt image"):
        inspect_image(bytes(data))


def test_a_missing_path_is_not_the_users_image_failing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.png")


@pytest.mark.parametrize("image_format", ["ICO", "PPM", "EPS", "PCX"])
def test_it_names_a_disallowed_format_even_when_renamed(tmp_path: Path, image_format: str) -> None:
    path = tmp_path / "looks-fine.png"
    path.write_bytes(encode(Image.new("RGB", (16, 16), "green"), image_format))
    message = f"^format {image_format} is not allowed \\(allowed: {ALLOWED}\\)$"

    with pytest.raises(ImageRejected, match=message):
        inspect_image(path)
    with pytest.raises(ImageRejected, match=message):
        open_image(path)


def test_it_applies_the_callers_allowed_formats() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")

    with pytest.raises(ImageRejected, match=r"^format PNG is not allowed \(allowed: JPEG\)$"):
        inspect_image(data, allowed_formats=frozenset({"JPEG"}))
    assert inspect_image(data, allowed_formats=frozenset({"PNG"})).format == "PNG"


def test_a_multi_picture_jpeg_from_a_phone_counts_as_jpeg() -> None:
    frames = [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")]
    data = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    info = inspect_image(data, allowed_formats=frozenset({"JPEG"}))

    assert (info.format, info.n_frames) == ("JPEG", 2)


def test_it_reads_png_text_chunks_and_exif_tags_as_json_safe_strings() -> None:
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a cat in a hat\nSteps: 20, Sampler: Euler a, Seed: 42")
    text.add_text("Comment", "compressed " * 200, zip=True)
    text.add_itxt("Title", "chat \u00e9crit\x00 par IA")
    exif = Image.Exif()
    exif[ExifTags.Base.Software] = "Adobe Firefly"
    exif[ExifTags.Base.Make] = "Canon"
    data = encode(noise(8, 8), "PNG", pnginfo=text, exif=exif)

    info = inspect_image(data)

    assert (info.format, info.width, info.height, info.n_frames, info.mode) == ("PNG", 8, 8, 1, "RGB")
    assert info.metadata["parameters"].startswith("a cat in a hat\nSteps: 20")
    assert info.metadata["Software"] == "Adobe Firefly"
    assert info.metadata["Make"] == "Canon"
    assert info.metadata["Title"] == "chat \u00e9crit par IA"  # NUL removed (jsonb cannot hold it)
    assert len(info.metadata["Comment"]) == 1000
    assert json.loads(json.dumps(info.metadata)) == info.metadata


def test_it_keeps_at_most_200_metadata_entries() -> None:
    text = PngImagePlugin.PngInfo()
    for index in range(250):
        text.add_text(f"key{index:03d}", str(index))

    metadata = inspect_image(encode(Image.new("L", (4, 4)), "PNG", pnginfo=text)).metadata

    assert len(metadata) == 200
    assert metadata["key000"] == "0"
