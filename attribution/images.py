"""Opening untrusted image files: safe decoding, RGB conversion, file facts and hashes.

Every failure a user can cause (not an image, a format we do not accept, a
decompression bomb, a truncated file) raises `ImageRejected` with a message meant
for that user. Files are opened with Pillow restricted to the allowed formats, so
a renamed EPS never reaches Ghostscript and a renamed PSD never reaches its parser.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TypeAlias

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

ImageSource: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes]
"""A path, the file's bytes, or a binary file object (read from its start)."""

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning limit: about 0.25 GiB of RGB pixels
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
MAX_METADATA_ENTRIES = 200
MAX_METADATA_CHARS = 1000

# Pillow names multi-picture JPEGs (most phone photos) "MPO"; they are JPEG files.
_SAME_FORMAT = {"MPO": "JPEG"}
# EXIF tags left out of the metadata: pointers to other directories (the Exif directory's
# own tags are read instead) and the vendors' binary MakerNote blob.
_SKIPPED_TAGS = {int(ifd) for ifd in ExifTags.IFD if ifd != ExifTags.IFD.IFD1}
# Decoder failures Pillow raises on damaged files (its fuzzers treat the same set as expected).
# What Pillow's decoders raise on damaged files: besides OSError, a TIFF whose later frame lacks its
# dimensions raises TypeError when its frames are counted, and some plugins raise KeyError or arithmetic
# errors on nonsense header values.
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, KeyError, ArithmeticError
)


class ImageRejected(ValueError):
    """The file cannot be used as an image; the message says why, for the user."""


@dataclass(frozen=True)
class ImageInfo:
    """Facts about an image file: Pillow's format name, the stored size (before any EXIF
    rotation), frame count, colour mode and text metadata (EXIF tags by name and PNG/XMP
    text entries, JSON-serialisable strings)."""

    format: str
    width: int
    height: int
    n_frames: int
    mode: str
    metadata: dict[str, str] = field(default_factory=dict)


def open_image(
    source: ImageSource,
    *,
    allowed_formats: frozenset[str] = ALLOWED_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode the first frame of an image file as an RGB image, rotated upright by its
    EXIF orientation; transparency is composited on white.

    Raises `ImageRejected` for non-images, disallowed formats, images with more than
    `max_pixels` pixels (checked before decoding), zero-size and truncated or corrupt files.
    """
    with _decoded(source, allowed_formats, max_pixels) as image:
        return _to_rgb(ImageOps.exif_transpose(image))


def inspect_image(
    source: ImageSource,
    *,
    allowed_formats: frozenset[str] = ALLOWED_FORMATS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Validate an uploaded file (its first frame is fully decoded) and describe it.

    Raises `ImageRejected` in the same cases as `open_image`.
    """
    with _decoded(source, allowed_formats, max_pixels) as image:
        metadata = _metadata(image)
        image_format = image.format or "unknown"
        return ImageInfo(
            format=_SAME_FORMAT.get(image_format, image_format),
            width=image.width,
            height=image.height,
            n_frames=int(getattr(image, "n_frames", 1)),
            mode=image.mode,
            metadata=metadata,
        )


def sha256_of(source: ImageSource) -> str:
    """Hex SHA-256 of the file's bytes; files are read in chunks, never whole."""
    digest = hashlib.sha256()
    with _binary_stream(source) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _binary_stream(source: ImageSource) -> Iterator[IO[bytes]]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            yield stream
    else:
        if source.seekable():
            source.seek(0)
        yield source


@contextmanager
def _decoded(source: ImageSource, allowed_formats: frozenset[str], max_pixels: int) -> Iterator[Image.Image]:
    """The opened image with its first frame decoded; every failure that the file causes,
    here or in the body of the `with`, becomes `ImageRejected`. A missing path is not the
    user's file failing and raises `FileNotFoundError`."""
    formats = {_SAME_FORMAT.get(name.upper(), name.upper()) for name in allowed_formats}
    Image.init()
    if unknown := formats - Image.OPEN.keys():
        raise ValueError(f"Pillow cannot open the formats {sorted(unknown)}")
    with _binary_stream(source) as stream, warnings.catch_warnings(), _truncated_files_refused():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(stream, formats=sorted(formats)) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise ImageRejected("image has zero width or height")
                if width * height > max_pixels:
                    raise ImageRejected(
                        f"image too large: {width} x {height} pixels exceeds the limit of {max_pixels}"
                    )
                image.load()
                yield image
        except ImageRejected:
            raise
        except UnidentifiedImageError:
            raise ImageRejected(_unrecognised(stream, formats)) from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
            # Pillow's own limit fired (before the size was known to us): its message has the counts.
            found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(error))
            pixels, limit = found.groups() if found else ("too many", str(Image.MAX_IMAGE_PIXELS))
            raise ImageRejected(f"image too large: {pixels} pixels exceeds the limit of {limit}") from None
        except _DECODE_ERRORS as error:
            raise ImageRejected(f"truncated or corrupt image ({error})") from None


@contextmanager
def _truncated_files_refused() -> Iterator[None]:
    """Pillow's LOAD_TRUNCATED_IMAGES is process-wide and other libraries turn it on (importing WeasyPrint
    does): while a file is checked here it is off, so a truncated file is refused whatever was imported."""
    saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _unrecognised(stream: IO[bytes], allowed: set[str]) -> str:
    """Name the format by its magic bytes alone (no parser runs) when Pillow knows it."""
    allowed_list = ", ".join(sorted(allowed))
    stream.seek(0)
    prefix = stream.read(16)
    for name, (_, accept) in Image.OPEN.items():
        if name in allowed or accept is None:
            continue
        try:
            matched = bool(accept(prefix))
        except (struct.error, IndexError, ValueError):
            continue
        if matched:
            return f"format {name} is not allowed (allowed: {allowed_list})"
    return "not a recognised image file"


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA", "P"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, ...


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale to 8-bit 'L' (Pillow's own conversion clips)."""
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (low >= 0 and 255 < high <= 65535):
        values = values / 257
    elif image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255
    elif low < 0 or high > 255:
        values = (values - low) * (255 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _metadata(image: Image.Image) -> dict[str, str]:
    """EXIF tags by name (GPS left out: it locates people and says nothing of origin), then
    the text entries Pillow reads (PNG tEXt/zTXt/iTXt such as Stable Diffusion's
    "parameters", JPEG/GIF comments, XMP)."""
    exif = image.getexif()
    tags = [*exif.items(), *exif.get_ifd(ExifTags.IFD.Exif).items()]
    entries: list[tuple[str, object]] = [
        (ExifTags.TAGS.get(tag, f"Tag{tag}"), value) for tag, value in tags if tag not in _SKIPPED_TAGS
    ]
    entries += [
        (key, value)
        for key, value in image.info.items()
        if isinstance(key, str) and (isinstance(value, str) or key in ("comment", "xmp"))
    ]
    metadata: dict[str, str] = {}
    for key, value in entries:
        if len(metadata) >= MAX_METADATA_ENTRIES:
            break
        metadata.setdefault(_clean_text(key), _clean_text(value))
    return metadata


def _clean_text(value: object) -> str:
    # NUL characters are stripped: PostgreSQL's jsonb cannot store them.
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.replace("\x00", "")[:MAX_METADATA_CHARS]
