"""Provenance beside the pixels: real C2PA manifests signed here, generator text chunks, XMP, EXIF,
hostile manifests, and reconciliation with verdicts."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from attribution.provenance import (
    CODE_TIMEOUT,
    CODE_TOO_LARGE,
    CODE_UNREADABLE,
    Agreement,
    Claim,
    Provenance,
    provenance_report,
    read_provenance,
    reconcile,
)
from tests.attribution.c2pa_fixtures import CAPTURE, SigningChain, generator_manifest, make_chain, sign

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def picture(seed: int = 0, size: tuple[int, int] = (96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def text_info(keyword: str, text: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(keyword, text)
    return info


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_png_chunks(png: bytes, *chunks: bytes) -> bytes:
    """`png` with `chunks` inserted right after IHDR."""
    header_end = 8 + 8 + 13 + 4
    return png[:header_end] + b"".join(chunks) + png[header_end:]


@pytest.fixture(scope="session")
def chain() -> SigningChain:
    return make_chain(organisation="Adobe Test", signer_name="Firefly Signer")


@pytest.fixture(scope="session")
def other_chain() -> SigningChain:
    return make_chain(organisation="Someone Else")


@pytest.fixture(scope="session")
def signed_jpeg(chain: SigningChain) -> bytes:
    return sign(encode(picture(), "JPEG", quality=90), "image/jpeg", generator_manifest(), chain)


def start_of_scan(jpeg: bytes) -> int:
    position = 2
    while jpeg[position + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", jpeg, position + 2)
        position += 2 + length
    return position


# --- C2PA ------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_it_reads_a_trusted_generator_manifest(chain: SigningChain, image_format: str) -> None:
    signed = sign(encode(picture(), image_format), MIME[image_format], generator_manifest(), chain)

    provenance = read_provenance(signed, trust_anchors_pem=chain.root_pem)

    assert provenance.c2pa is not None
    c2pa = provenance.as_dict()["c2pa"]
    assert c2pa["validation"] == "valid"
    assert c2pa["claim_generator"] == "Adobe Firefly 3.1"
    assert c2pa["digital_source_type"] == "trainedAlgorithmicMedia"
    assert c2pa["signer"] == {"issuer": "Adobe Test", "common_name": "Firefly Signer"}
    assert "signingCredential.trusted" in c2pa["codes"]
    assert "assertion.dataHash.match" in c2pa["codes"] or image_format != "JPEG"
    [claim] = provenance.claims
    assert (claim.source, claim.says, claim.generator) == ("c2pa", "generated", "Adobe Firefly")
    assert claim.strength == "strong"
    assert claim.detail["actions"][0]["action"] == "c2pa.created"


def test_it_calls_every_signer_untrusted_without_trust_anchors(signed_jpeg: bytes) -> None:
    provenance = read_provenance(signed_jpeg)

    assert provenance.c2pa is not None
    assert provenance.c2pa.validation == "untrusted"
    assert provenance.c2pa.codes[0] == "signingCredential.untrusted"
    assert provenance.claims[0].strength == "medium"


def test_it_calls_a_signer_from_another_root_untrusted(signed_jpeg: bytes, other_chain: SigningChain) -> None:
    provenance = read_provenance(signed_jpeg, trust_anchors_pem=other_chain.root_pem)

    assert provenance.c2pa is not None and provenance.c2pa.validation == "untrusted"


def test_it_reports_pixels_changed_after_signing(signed_jpeg: bytes, chain: SigningChain) -> None:
    # The signed file's headers (manifest included) with another picture's scan: same size and tables.
    other = encode(picture(seed=1), "JPEG", quality=90)
    tampered = signed_jpeg[: start_of_scan(signed_jpeg)] + other[start_of_scan(other) :]
    before = np.asarray(Image.open(io.BytesIO(signed_jpeg)).convert("RGB"))
    after = np.asarray(Image.open(io.BytesIO(tampered)).convert("RGB"))
    assert before.shape == after.shape and not np.array_equal(before, after)

    provenance = read_provenance(tampered, trust_anchors_pem=chain.root_pem)

    assert provenance.c2pa is not None
    assert provenance.c2pa.validation == "hash_mismatch"
    assert provenance.c2pa.codes[0] == "assertion.dataHash.mismatch"
    assert provenance.claims[0].strength == "weak"
    assert provenance.claims[0].detail["validation"] == "hash_mismatch"


def test_it_reports_a_broken_signature(signed_jpeg: bytes, chain: SigningChain) -> None:
    app11 = signed_jpeg.index(b"\xff\xeb")
    (length,) = struct.unpack_from(">H", signed_jpeg, app11 + 2)
    damaged = bytearray(signed_jpeg)
    damaged[app11 + 2 + length - 3] ^= 0x01  # the last bytes of the manifest are the COSE signature

    provenance = read_provenance(bytes(damaged), trust_anchors_pem=chain.root_pem)

    assert provenance.c2pa is not None
    assert provenance.c2pa.validation == "invalid_signature"
    assert "claimSignature.mismatch" in provenance.c2pa.codes
    assert provenance.claims[0].strength == "weak"


def test_it_reads_a_camera_manifest(chain: SigningChain) -> None:
    manifest = generator_manifest(generator="Leica Camera", version="1.0", source_type=CAPTURE)
    signed = sign(encode(picture(), "JPEG"), "image/jpeg", manifest, chain)

    [claim] = read_provenance(signed, trust_anchors_pem=chain.root_pem).claims

    assert (claim.says, claim.generator, claim.strength) == ("camera capture", None, "strong")


def test_it_reports_a_truncated_manifest_without_harm(signed_jpeg: bytes) -> None:
    app11 = signed_jpeg.index(b"\xff\xeb")
    (length,) = struct.unpack_from(">H", signed_jpeg, app11 + 2)
    kept = 100  # the segment now ends in the middle of the JUMBF boxes
    truncated = (
        signed_jpeg[: app11 + 2] + struct.pack(">H", kept) + signed_jpeg[app11 + 4 : app11 + 2 + kept]
        + signed_jpeg[app11 + 2 + length :]
    )

    provenance = read_provenance(truncated)

    assert provenance.c2pa is not None
    assert provenance.c2pa.validation == "malformed"
    assert provenance.c2pa.codes == (CODE_UNREADABLE,)
    assert provenance.claims == ()
    json.dumps(provenance.as_dict())


def test_it_refuses_to_parse_a_huge_manifest(chain: SigningChain) -> None:
    signed = sign(encode(picture(), "JPEG"), "image/jpeg", generator_manifest(padding=300_000), chain)

    start = time.perf_counter()
    provenance = read_provenance(signed, max_manifest_bytes=100_000)

    assert time.perf_counter() - start < 1
    assert provenance.c2pa is not None
    assert (provenance.c2pa.validation, provenance.c2pa.codes) == ("malformed", (CODE_TOO_LARGE,))
    assert provenance.claims == ()
    assert read_provenance(signed).c2pa.validation == "untrusted"  # type: ignore[union-attr]


def test_it_bounds_many_hostile_jumbf_segments() -> None:
    jpeg = encode(picture(), "JPEG")
    segment = b"\xff\xeb" + struct.pack(">H", 65535) + b"JP" + b"\x00\x01" + b"jumbc2pa" + b"\x00" * (65535 - 14)
    hostile = jpeg[:2] + segment * 100 + jpeg[2:]  # 6.5 MB of bogus manifest

    provenance = read_provenance(hostile)

    assert provenance.c2pa is not None and provenance.c2pa.codes == (CODE_TOO_LARGE,)
    assert read_provenance(hostile, max_manifest_bytes=1 << 30).c2pa.validation == "malformed"  # type: ignore[union-attr]


def test_it_gives_up_on_a_reader_over_its_time_budget(signed_jpeg: bytes) -> None:
    slow = signed_jpeg + bytes(48 << 20)  # the reader hashes every byte: tens of milliseconds

    start = time.perf_counter()
    provenance = read_provenance(slow, timeout_s=0.002)

    assert time.perf_counter() - start < 1
    assert provenance.c2pa is not None and provenance.c2pa.codes == (CODE_TIMEOUT,)
    assert provenance.c2pa.validation == "malformed" and provenance.claims == ()


def test_it_refuses_unusable_trust_anchors(signed_jpeg: bytes) -> None:
    with pytest.raises(ValueError, match="trust"):
        read_provenance(signed_jpeg, trust_anchors_pem="not a certificate")


# --- Generator text, XMP, EXIF ---------------------------------------------------------------

A1111 = (
    "a lighthouse at dusk, oil painting\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 96x64, "
    'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: "detail: 1a2b", Version: v1.6.0'
)


def test_it_reads_automatic1111_parameters_from_png() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111)

    [claim] = read_provenance(encode(picture(), "PNG", pnginfo=info)).claims

    assert (claim.source, claim.says, claim.generator, claim.strength) == (
        "png-text", "generated", "v1-5-pruned-emaonly", "weak"
    )
    assert claim.detail["model_hash"] == "6ce0161689"
    assert claim.detail["settings"]["Sampler"] == "DPM++ 2M Karras"
    assert claim.detail["settings"]["Lora hashes"] == "detail: 1a2b"


def test_it_reads_automatic1111_parameters_from_jpeg_exif() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + A1111.encode("utf-16-be")  # UserComment, as A1111 writes it

    [claim] = read_provenance(encode(picture(), "JPEG", exif=exif)).claims

    assert (claim.source, claim.generator, claim.detail["keyword"]) == ("exif", "v1-5-pruned-emaonly", "UserComment")


def test_it_reads_a_comfyui_graph() -> None:
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/sd_xl_base_1.0.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "pixel.safetensors", "model": ["4", 0]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["10", 0]}},
    }
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps({"nodes": []}), zip=True)

    [claim] = read_provenance(encode(picture(), "PNG", pnginfo=info)).claims

    assert (claim.says, claim.generator) == ("generated", "sd_xl_base_1.0")
    assert claim.detail["checkpoints"] == ["SDXL/sd_xl_base_1.0.safetensors"]
    assert claim.detail["loras"] == ["pixel.safetensors"] and claim.detail["nodes"] == 3


def test_it_reads_a_comfyui_workflow_without_a_prompt() -> None:
    workflow = {"nodes": [{"type": "CheckpointLoaderSimple", "widgets_values": ["flux1-dev.sft"]}]}
    info = PngImagePlugin.PngInfo()
    info.add_itxt("workflow", json.dumps(workflow), zip=True)

    [claim] = read_provenance(encode(picture(), "PNG", pnginfo=info)).claims

    assert claim.generator == "flux1-dev"


def test_it_reads_invokeai_and_novelai_metadata() -> None:
    invoke = PngImagePlugin.PngInfo()
    invoke.add_text(
        "invokeai_metadata", json.dumps({"model": {"name": "Juggernaut XL", "hash": "blake3:abc123", "base": "sdxl"}})
    )
    novel = PngImagePlugin.PngInfo()
    novel.add_text("Software", "NovelAI")
    novel.add_text("Source", "NovelAI Diffusion V4.5 4BDE2A90")
    novel.add_text("Comment", json.dumps({"prompt": "a cat", "steps": 28, "sampler": "k_euler"}))

    [invoke_claim] = read_provenance(encode(picture(), "PNG", pnginfo=invoke)).claims
    [novel_claim] = read_provenance(encode(picture(), "PNG", pnginfo=novel)).claims

    assert (invoke_claim.generator, invoke_claim.detail["model_hash"]) == ("Juggernaut XL", "blake3:abc123")
    assert novel_claim.generator == "NovelAI Diffusion V4.5 4BDE2A90"
    assert novel_claim.detail["settings"]["steps"] == 28


XMP = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
    'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
    'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/{term}" '
    'xmp:CreatorTool="Adobe Photoshop 25.0"><Iptc4xmpExt:AISystemUsed>DALL-E 3</Iptc4xmpExt:AISystemUsed>'
    '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP", "TIFF"])
def test_it_reads_the_iptc_digital_source_type_from_xmp(image_format: str) -> None:
    packet = XMP.format(term="trainedAlgorithmicMedia").encode()
    params = {"tiffinfo": {700: packet}} if image_format == "TIFF" else {"xmp": packet}  # 700: TIFF's XMP tag
    data = encode(picture(), image_format, **params)

    [claim] = read_provenance(data).claims

    assert (claim.source, claim.says, claim.generator, claim.strength) == ("xmp", "generated", "DALL-E 3", "weak")
    assert claim.detail["creator_tool"] == "Adobe Photoshop 25.0"


def test_it_reads_compressed_xmp_from_png() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.format(term="compositeWithTrainedAlgorithmicMedia"), zip=True)

    [claim] = read_provenance(encode(picture(), "PNG", pnginfo=info)).claims

    assert (claim.says, claim.generator) == ("edited with AI", "DALL-E 3")


def test_it_reads_a_hostile_xmp_packet_quickly() -> None:
    body = ":DigitalSourceType rdf:li " * 30_000 + ":DigitalSourceType> " + "x" * 200_000  # 0.95 MB, no > or <
    webp = encode(picture(), "WEBP", xmp=f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{body}</x:xmpmeta>'.encode())

    start = time.perf_counter()
    provenance = read_provenance(webp)

    assert time.perf_counter() - start < 2
    assert provenance.claims == ()


def test_it_reads_the_camera_and_editor_from_exif() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x0131] = "Adobe Photoshop Lightroom Classic 13.0 (Windows)"

    claims = read_provenance(encode(picture(), "JPEG", exif=exif)).claims

    assert [(claim.source, claim.says, claim.strength) for claim in claims] == [
        ("exif", "edited", "weak"), ("exif", "camera capture", "weak")
    ]
    assert claims[1].detail["camera"] == "Canon Canon EOS R5"


def test_it_finds_nothing_in_a_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    path.write_bytes(encode(picture(), "PNG"))

    provenance = read_provenance(path)

    assert provenance == Provenance()
    assert provenance.as_dict() == {
        "claims": [], "c2pa": None, "agreement": "none", "reason": "The claims were not compared with a verdict."
    }


def test_it_survives_hostile_text_chunks() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MiB of zeros in about 64 KiB
    deep = "[" * 100_000 + "]" * 100_000
    png = with_png_chunks(
        encode(picture(), "PNG"),
        png_chunk(b"zTXt", b"parameters\x00\x00" + bomb),
        png_chunk(b"tEXt", b"prompt\x00" + deep.encode()),
        png_chunk(b"iTXt", b"workflow\x00\x01"),  # cut short
        png_chunk(b"tEXt", b"sd-metadata\x00{not json"),
        png_chunk(b"tEXt", b"Comment\x00" + b"a " * 400_000 + b"Steps: 1"),  # not Software: NovelAI, ignored
    )
    slow_settings = "a " * 400_000 + ", Steps: 1"  # unbounded, each "a" would scan the whole line for a colon

    provenance = read_provenance(png)

    assert provenance.claims == ()
    assert any("parameters" in note for note in provenance.notes)
    start = time.perf_counter()
    [claim] = read_provenance(encode(picture(), "PNG", pnginfo=text_info("parameters", slow_settings))).claims
    assert time.perf_counter() - start < 2
    assert claim.generator is None and claim.detail["settings"]["Steps"] == "1"


def test_it_does_not_read_a_file_over_the_limit() -> None:
    provenance = read_provenance(encode(picture(), "PNG"), max_file_bytes=100)

    assert provenance.claims == () and provenance.notes


def test_the_api_object_has_the_contract_shape(signed_jpeg: bytes, chain: SigningChain) -> None:
    provenance = read_provenance(signed_jpeg, trust_anchors_pem=chain.root_pem)

    report = provenance_report(
        provenance, decision="known_generator", label="firefly", aliases={"firefly": ["Adobe Firefly"]}
    )

    assert json.loads(json.dumps(report)) == report
    assert list(report) == ["claims", "c2pa", "agreement", "reason"]
    assert list(report["claims"][0]) == ["source", "says", "generator", "strength", "detail"]
    assert list(report["c2pa"]) == ["claim_generator", "digital_source_type", "signer", "validation", "codes"]
    assert report["agreement"] == "agrees"
    assert provenance_report(provenance, decision=None, label=None, aliases={})["agreement"] == "none"


def test_the_module_imports_no_web_framework() -> None:
    code = (
        "import sys, attribution.provenance\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'celery', 'kombu'))\n"
        "assert not leaked, leaked\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- Reconciliation ---------------------------------------------------------------------------

ALIASES = {
    "firefly": ["Adobe Firefly"],
    "sdxl": ["sd_xl_base", "31e35c80fc"],
    "dalle": ["DALL-E", "DALL·E"],
}


def claim(says: str, generator: str | None = None, strength: str = "weak", **detail: Any) -> Claim:
    return Claim("c2pa" if strength != "weak" else "png-text", says, generator, strength, detail)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claims", "decision", "label", "expected"),
    [
        ([claim("camera capture")], "known_generator", "sdxl", "conflicts"),
        ([claim("camera capture")], "unknown_generator", None, "conflicts"),
        ([claim("camera capture")], "real", "real", "agrees"),
        ([claim("generated", "Adobe Firefly", "strong")], "real", "real", "conflicts"),
        ([claim("edited with AI", "Adobe Firefly", "medium")], "real", "real", "conflicts"),
        ([claim("generated", "Adobe Firefly", "strong")], "known_generator", "firefly", "agrees"),
        ([claim("generated", "Adobe Firefly", "strong")], "known_generator", "sdxl", "conflicts"),
        ([claim("generated", "SD_XL_BASE_1.0")], "known_generator", "sdxl", "agrees"),
        ([claim("generated", "some-merge", model_hash="31E35C80FC")], "known_generator", "sdxl", "agrees"),
        ([claim("generated", "some-merge")], "known_generator", "sdxl", "agrees"),
        ([claim("generated", None)], "known_generator", "sdxl", "agrees"),
        ([claim("generated", "Midjourney v6")], "unknown_generator", None, "agrees"),
        ([claim("generated", "DALL-E 3")], "unknown_generator", None, "conflicts"),
        ([claim("edited")], "real", "real", "none"),
        ([], "real", "real", "none"),
        # the strongest claims decide: a trusted manifest outweighs a camera tag anyone can write
        (
            [claim("generated", "Adobe Firefly", "strong"), claim("camera capture")],
            "known_generator", "firefly", "agrees",
        ),
        ([claim("generated", "sd_xl_base_1.0"), claim("camera capture")], "known_generator", "sdxl", "conflicts"),
    ],
)
def test_it_reconciles_claims_with_the_verdict(
    claims: list[Claim], decision: Any, label: str | None, expected: str
) -> None:
    agreement = reconcile(claims, decision=decision, label=label, aliases=ALIASES)

    assert agreement.agreement == expected
    assert agreement.reason.endswith(".") and "\n" not in agreement.reason


def test_the_reason_is_a_readable_sentence() -> None:
    agreement = reconcile(
        [claim("generated", "Adobe Firefly", "strong")], decision="known_generator", label="sdxl", aliases=ALIASES
    )

    assert agreement == Agreement(
        "conflicts",
        "The trusted C2PA manifest says the image was generated by Adobe Firefly, registered as firefly, "
        "but the verdict names sdxl.",
    )
