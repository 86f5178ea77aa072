"""Provenance evidence beside the pixels: what the file itself says about where it came from.

`read_provenance` reads, within fixed bounds of size and time, the C2PA manifest (through
c2pa-python, which checks its signature, certificate chain and hash binding), the XMP/IPTC digital
source type, the text chunks that generator UIs write (AUTOMATIC1111, ComfyUI, InvokeAI, NovelAI)
and the EXIF camera and software tags. Each piece becomes a `Claim` (who says what, how strongly);
`reconcile` compares the claims with an attribution verdict. Nothing here trusts the file: a
damaged or hostile manifest is reported (validation `malformed` and a code), never raised.

Only a C2PA manifest signed by a certificate that chains to a configured trust anchor is strong
evidence; an untrusted signature is medium; everything else (text any tool can write) is weak.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import ExifTags, Image, UnidentifiedImageError

from attribution.images import ImageSource

Source = Literal["c2pa", "xmp", "png-text", "exif"]
Says = Literal["generated", "edited with AI", "camera capture", "edited"]
Strength = Literal["strong", "medium", "weak"]
Validation = Literal["valid", "untrusted", "invalid_signature", "hash_mismatch", "malformed"]
Decision = Literal["real", "known_generator", "unknown_generator"]
AgreementKind = Literal["agrees", "conflicts", "none"]

DEFAULT_MAX_FILE_BYTES = 64 << 20
DEFAULT_MAX_MANIFEST_BYTES = 4 << 20  # signed manifests with thumbnails and ingredients are well under 1 MiB
DEFAULT_MAX_TEXT_BYTES = 1 << 20  # one PNG text chunk or XMP packet, after decompression
DEFAULT_TIMEOUT_S = 2.0
MAX_TEXT_TOTAL_BYTES = 4 << 20
MAX_TEXT_CHUNKS = 256
MAX_XMP_PACKETS = 4

# Our own codes beside the reader's (C2PA's codes are camelCase words joined by dots, as these).
CODE_TOO_LARGE = "provenance.manifestTooLarge"
CODE_TIMEOUT = "provenance.readTimeout"
CODE_UNREADABLE = "provenance.manifestUnreadable"
CODE_REMOTE = "provenance.remoteManifestNotFetched"
CODE_READER_MISSING = "provenance.readerUnavailable"

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC digital source types (the last part of the NewsCodes URI) and what they say about the pixels.
_SOURCE_TYPE_SAYS: dict[str, Says] = {
    "trainedAlgorithmicMedia": "generated",
    "algorithmicMedia": "generated",
    "compositeWithTrainedAlgorithmicMedia": "edited with AI",
    "compositeSynthetic": "edited with AI",
    "digitalCapture": "camera capture",
    "computationalCapture": "camera capture",
    "negativeFilm": "camera capture",
    "positiveFilm": "camera capture",
    "print": "camera capture",
    "minorHumanEdits": "edited",
    "humanEdits": "edited",
    "compositeCapture": "edited",
    "composite": "edited",
    "algorithmicallyEnhanced": "edited",
}
_SAYS_RANK: dict[Says, int] = {"generated": 3, "edited with AI": 2, "camera capture": 1, "edited": 0}
_EDIT_ACTIONS = {
    "c2pa.edited", "c2pa.color_adjustments", "c2pa.cropped", "c2pa.drawing", "c2pa.filtered",
    "c2pa.orientation", "c2pa.resized", "c2pa.placed", "c2pa.removed", "c2pa.converted",
}
# Software names (EXIF Software, PNG "Software") that mean a generator made the image, or that it was edited.
_GENERATOR_SOFTWARE = re.compile(
    r"novelai|stable.?diffusion|midjourney|dall.?e|firefly|comfyui|invokeai|automatic1111|fooocus|imagen|"
    r"leonardo\.ai|ideogram|flux|draw ?things|diffusionbee", re.IGNORECASE
)
_EDITOR_SOFTWARE = re.compile(
    r"photoshop|lightroom|gimp|affinity|pixelmator|snapseed|capture one|darktable|rawtherapee|"
    r"paint\.net|canva|picsart|facetune|luminar", re.IGNORECASE
)
_MODEL_FILE_SUFFIX = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", re.IGNORECASE)
# "Key: value" pairs, a value possibly quoted; every repetition is bounded (no quadratic backtracking).
_A1111_SETTING = re.compile(r'\s{0,20}([\w ./-]{1,60}):\s{0,20}("(?:\\.|[^\\"]){0,2000}"|[^,]{0,2000})(?:,|$)')
_XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_FIELD = {
    "digital_source_type": "DigitalSourceType",
    "ai_system": "AISystemUsed",
    "ai_system_version": "AISystemVersionUsed",
    "creator_tool": "CreatorTool",
    "remote_manifest": "provenance",
}
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff", "GIF": "image/gif"}
_PIL_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, KeyError, ArithmeticError,
    UnidentifiedImageError, Image.DecompressionBombError, RecursionError,
)


@dataclass(frozen=True)
class Claim:
    """One statement the file makes about its origin: where it was found (`source`), what it says,
    the generator it names (as found: a product, a checkpoint name or a model hash), how much it
    can be believed, and the raw evidence (JSON-safe, size-capped)."""

    source: Source
    says: Says
    generator: str | None
    strength: Strength
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The API's claim object."""
        return {
            "source": self.source,
            "says": self.says,
            "generator": self.generator,
            "strength": self.strength,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class C2paManifest:
    """The active C2PA manifest as the reader found it. `validation` is `valid` (signature, chain
    to a trust anchor and hash binding all check), `untrusted` (all check but the signer is not in
    the trust anchors), `invalid_signature`, `hash_mismatch` (the bytes changed after signing) or
    `malformed` (unreadable, too large, too slow); `codes` are the reader's validation codes, failures
    first, and ours (`provenance.*`)."""

    validation: Validation
    codes: tuple[str, ...] = ()
    claim_generator: str | None = None
    claim_generator_version: str | None = None
    digital_source_type: str | None = None
    signer_issuer: str | None = None
    signer_common_name: str | None = None
    title: str | None = None
    actions: tuple[dict[str, Any], ...] = ()
    ingredients: tuple[dict[str, Any], ...] = ()
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The API's `c2pa` object: claim generator ("name version"), the short IPTC digital source
        type, the signer ({issuer, common_name} or null), validation and codes."""
        generator = " ".join(part for part in (self.claim_generator, self.claim_generator_version) if part)
        signer = (
            {"issuer": self.signer_issuer, "common_name": self.signer_common_name}
            if self.signer_issuer or self.signer_common_name
            else None
        )
        return {
            "claim_generator": generator or None,
            "digital_source_type": self.digital_source_type,
            "signer": signer,
            "validation": self.validation,
            "codes": list(self.codes),
        }


@dataclass(frozen=True)
class Agreement:
    """Whether the file's claims agree with a verdict, and one readable sentence saying why."""

    agreement: AgreementKind
    reason: str


@dataclass(frozen=True)
class Provenance:
    """Everything `read_provenance` found: the claims, the C2PA manifest (or None when the file
    has none) and notes on what could not be read (for logs; not part of the API object)."""

    claims: tuple[Claim, ...] = ()
    c2pa: C2paManifest | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self, agreement: Agreement | None = None) -> dict[str, Any]:
        """The API object: {"claims", "c2pa", "agreement", "reason"}; without an agreement the
        claims were not compared with a verdict ("none")."""
        agreement = agreement or Agreement("none", "The claims were not compared with a verdict.")
        return {
            "claims": [claim.as_dict() for claim in self.claims],
            "c2pa": self.c2pa.as_dict() if self.c2pa else None,
            "agreement": agreement.agreement,
            "reason": agreement.reason,
        }


def read_provenance(
    source: ImageSource,
    *,
    trust_anchors_pem: str | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Provenance:
    """Read the provenance a file carries: C2PA, XMP digital source type, generator text chunks, EXIF.

    `trust_anchors_pem` is a PEM bundle of root certificates whose signers are trusted (None: no
    signer is trusted). A C2PA manifest store over `max_manifest_bytes` is not parsed, and the C2PA
    reader gets `timeout_s` (a reader still running then is left to finish in its thread, its result
    dropped); either is reported as `malformed` with a `provenance.*` code. Never fetches anything
    over the network. Raises `ValueError` only for an unusable `trust_anchors_pem`.
    """
    settings = _reader_settings(trust_anchors_pem)
    data = _read_bytes(source, max_file_bytes)
    if data is None:
        return Provenance(notes=(f"file larger than {max_file_bytes} bytes: provenance not read",))
    container = _container(data)
    notes: list[str] = []
    texts = _png_texts(data, max_text_bytes, notes) if container == "PNG" else {}

    manifest = _c2pa_manifest(data, container, settings, max_manifest_bytes, timeout_s, notes)
    claims: list[Claim] = []
    if manifest is not None and (claim := _c2pa_claim(manifest)) is not None:
        claims.append(claim)
    xmp_packets = _xmp_packets(data, container, max_text_bytes)
    if "XML:com.adobe.xmp" in texts:
        xmp_packets.append(texts["XML:com.adobe.xmp"])
    claims += _xmp_claims(xmp_packets)
    claims += _png_text_claims(texts, max_text_bytes, notes)
    claims += _exif_claims(data, container, max_text_bytes, notes)
    return Provenance(claims=tuple(claims), c2pa=manifest, notes=tuple(notes))


def reconcile(
    claims: Sequence[Claim],
    *,
    decision: Decision,
    label: str | None,
    aliases: Mapping[str, Sequence[str]],
) -> Agreement:
    """Compare the claims with a verdict (`decision`, and `label`, the registry generator slug of a
    known-generator verdict). `aliases` maps each registered generator slug to the names and model
    hashes it goes by (matched case-insensitively, ignoring punctuation; a name or alias of three
    characters or more also matches inside a longer model name).

    Only the strongest claims that say anything about origin count ("edited" alone says nothing).
    Among them one conflict makes the result `conflicts`; otherwise a match makes it `agrees`.
    """
    decisive = [claim for claim in claims if claim.says != "edited"]
    if not decisive:
        if claims:
            return Agreement(
                "none", "The file says only that it was edited, which neither supports nor contradicts the verdict."
            )
        return Agreement("none", "The file carries no provenance claims to compare with the verdict.")
    top = max(_STRENGTH_RANK[claim.strength] for claim in decisive)
    strongest = [claim for claim in decisive if _STRENGTH_RANK[claim.strength] == top]
    judged = [_judge(claim, decision, label, aliases) for claim in strongest]
    for kind, reason in judged:
        if kind == "conflicts":
            return Agreement("conflicts", reason)
    for kind, reason in judged:
        if kind == "agrees":
            return Agreement("agrees", reason)
    return Agreement("none", judged[0][1])


def provenance_report(
    provenance: Provenance,
    *,
    decision: Decision | None,
    label: str | None,
    aliases: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """`provenance.as_dict` with the agreement filled in by `reconcile` (no decision yet: "none")."""
    if decision is None:
        return provenance.as_dict(Agreement("none", "There is no verdict yet to compare the claims with."))
    return provenance.as_dict(reconcile(provenance.claims, decision=decision, label=label, aliases=aliases))


# ---------------------------------------------------------------------------------------------
# Reconciliation

_STRENGTH_RANK: dict[str, int] = {"weak": 0, "medium": 1, "strong": 2}


_SAYS_TEXT: dict[str, str] = {
    "generated": "the image was generated",
    "edited with AI": "the image was edited with AI",
    "camera capture": "the image is a camera capture",
    "edited": "the image was edited",
}


def _describe(claim: Claim) -> str:
    where = {"c2pa": "C2PA manifest", "xmp": "XMP metadata", "png-text": "PNG text", "exif": "EXIF"}[claim.source]
    if claim.source == "c2pa":
        trust = {"strong": "trusted ", "medium": "untrusted "}.get(claim.strength, "")
        failed = f" (which failed validation: {claim.detail.get('validation')})" if claim.strength == "weak" else ""
        where = f"{trust}{where}{failed}"
    named = f" by {claim.generator}" if claim.generator and claim.says in ("generated", "edited with AI") else ""
    return f"The {where} says {_SAYS_TEXT[claim.says]}{named}"


def _judge(
    claim: Claim, decision: Decision, label: str | None, aliases: Mapping[str, Sequence[str]]
) -> tuple[AgreementKind, str]:
    said = _describe(claim)
    if claim.says == "camera capture":
        if decision == "real":
            return "agrees", f"{said}, as the verdict (a real photograph) does."
        return "conflicts", f"{said}, but the verdict is {_verdict_text(decision, label)}."
    # generated, or edited with AI
    if decision == "real":
        return "conflicts", f"{said}, but the verdict is a real photograph."
    names = _claim_names(claim)
    matched = _matching_generator(names, aliases, prefer=label)
    if decision == "unknown_generator":
        if matched is not None:
            return "conflicts", f"{said}, a registered generator ({matched}), but the verdict is an unknown generator."
        if claim.generator:
            return "agrees", (
                f"{said}, which is not a registered generator, consistent with the verdict of an unknown generator."
            )
        return "agrees", f"{said} without naming a generator, consistent with the verdict of an unknown generator."
    # known_generator
    label = label or "a known generator"
    if matched is not None and matched == label:
        return "agrees", f"{said}, which is registered as {label}, the generator the verdict names."
    if matched is not None:
        return "conflicts", f"{said}, registered as {matched}, but the verdict names {label}."
    if claim.generator:
        return "agrees", (
            f"{said}, as the verdict does, but that name is not registered for {label}, "
            "so the generator is unconfirmed."
        )
    return "agrees", f"{said} without naming a generator; the verdict names {label}."


def _verdict_text(decision: Decision, label: str | None) -> str:
    if decision == "known_generator":
        return f"the generator {label}"
    if decision == "unknown_generator":
        return "an unknown generator"
    return "a real photograph"


def _claim_names(claim: Claim) -> list[str]:
    names = [claim.generator] if claim.generator else []
    for key in ("model", "model_hash", "checkpoints", "software_agent", "claim_generator"):
        value = claim.detail.get(key)
        values = value if isinstance(value, list) else [value]
        names += [str(item) for item in values if isinstance(item, str) and item]
    return names


def _normalise(name: str) -> str:
    return "".join(character for character in name.casefold() if character.isalnum())


def _matching_generator(
    names: Sequence[str], aliases: Mapping[str, Sequence[str]], *, prefer: str | None
) -> str | None:
    """The registered slug one of the claim's names matches (the preferred slug wins a tie)."""
    keys = [_normalise(name) for name in names if _normalise(name)]
    best: tuple[int, str] | None = None
    for slug, slug_aliases in aliases.items():
        for alias in (slug, *slug_aliases):
            wanted = _normalise(alias)
            if not wanted:
                continue
            hit = any(key == wanted or (len(wanted) >= 3 and wanted in key) for key in keys)
            if hit:
                score = len(wanted) + (10_000 if slug == prefer else 0)
                if best is None or score > best[0]:
                    best = (score, slug)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------
# Reading the file


def _read_bytes(source: ImageSource, limit: int) -> bytes | None:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | os.PathLike):
        with open(source, "rb") as stream:
            data = stream.read(limit + 1)
    else:
        if source.seekable():
            source.seek(0)
        data = source.read(limit + 1)
    return None if len(data) > limit else data


def _container(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, payload start, payload end) of each JPEG header segment up to the scan."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return
        (length,) = struct.unpack_from(">H", data, position + 2)
        if length < 2:
            return
        yield marker, position + 4, min(position + 2 + length, len(data))
        position += 2 + length


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, data start, data end) of each PNG chunk (CRCs are not checked)."""
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        start = position + 8
        yield kind, start, min(start + length, len(data))
        if kind == b"IEND":
            return
        position = start + length + 4


def _riff_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    position = 12
    while position + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, position)
        start = position + 8
        yield kind, start, min(start + length, len(data))
        position = start + length + (length & 1)


def _manifest_bytes(data: bytes, container: str | None) -> int | None:
    """The size of the embedded C2PA manifest store (None: the file has none), found by walking the
    container's segments or chunks without parsing the manifest (every manifest store is a JUMBF box
    labelled "c2pa")."""
    if container == "JPEG":
        segments = [(start, end) for marker, start, end in _jpeg_segments(data) if marker == 0xEB]  # APP11
        if not any(b"c2pa" in data[start:end] for start, end in segments):
            return None
        return sum(end - start for start, end in segments)
    if container == "PNG":
        sizes = [end - start for kind, start, end in _png_chunks(data) if kind == b"caBX"]
        return sum(sizes) if sizes else None
    if container == "WEBP":
        sizes = [end - start for kind, start, end in _riff_chunks(data) if kind == b"C2PA"]
        return sum(sizes) if sizes else None
    if container in ("TIFF", "GIF") and b"jumb" in data and b"c2pa" in data:
        return len(data)  # no cheap walk: the whole file bounds the manifest
    return None


@functools.lru_cache(maxsize=16)
def _reader_settings(trust_anchors_pem: str | None) -> str:
    """The c2pa reader's settings: verify, never fetch (remote manifests, OCSP), and trust only the
    given anchors."""
    settings: dict[str, Any] = {
        "verify": {
            "verify_after_reading": True,
            "verify_trust": True,
            "remote_manifest_fetch": False,
            "ocsp_fetch": False,
        },
        "core": {"allowed_network_hosts": []},
    }
    if trust_anchors_pem is not None:
        if "-----BEGIN CERTIFICATE-----" not in trust_anchors_pem:
            raise ValueError("trust_anchors_pem holds no PEM certificate")
        settings["trust"] = {"trust_anchors": trust_anchors_pem}
    text = json.dumps(settings)
    _check_settings(text)
    return text


def _check_settings(settings: str) -> None:
    c2pa = _c2pa_module()
    if c2pa is None:
        return
    try:
        c2pa.Context.from_json(settings).close()
    except c2pa.C2paError as error:
        raise ValueError(f"unusable C2PA trust anchors: {error}") from None


def _c2pa_module() -> Any:
    try:
        import c2pa
    except ImportError:  # the reader is an optional native library: everything else still works
        return None
    return c2pa


def _c2pa_manifest(
    data: bytes,
    container: str | None,
    settings: str,
    max_manifest_bytes: int,
    timeout_s: float,
    notes: list[str],
) -> C2paManifest | None:
    size = _manifest_bytes(data, container)
    if size is None or container is None:
        return None
    if size > max_manifest_bytes:
        notes.append(f"C2PA manifest store of {size} bytes exceeds the limit of {max_manifest_bytes}")
        return C2paManifest("malformed", (CODE_TOO_LARGE,), message=f"manifest store of {size} bytes not read")
    c2pa = _c2pa_module()
    if c2pa is None:
        notes.append("c2pa-python is not installed: the C2PA manifest was not read")
        return C2paManifest("malformed", (CODE_READER_MISSING,), message="no C2PA reader installed")

    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            with c2pa.Reader(_MIME[container], io.BytesIO(data), context=c2pa.Context.from_json(settings)) as reader:
                outcome["json"] = reader.json()
        except c2pa.C2paError as error:
            outcome["error"] = error
        except BaseException as error:  # a bug here, re-raised in the caller's thread
            outcome["bug"] = error

    # Not a daemon: the reader calls back into Python to read the stream, and a daemon thread doing
    # that while the interpreter exits makes the native library abort the process.
    thread = threading.Thread(target=read, name="c2pa-reader", daemon=False)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        notes.append(f"the C2PA reader took longer than {timeout_s} s")
        return C2paManifest("malformed", (CODE_TIMEOUT,), message=f"not read within {timeout_s} s")
    if "bug" in outcome:
        raise outcome["bug"]
    if "error" in outcome:
        error = outcome["error"]
        message = str(error)[:300]
        # ManifestNotFound lands here too: the container holds a "c2pa" box the reader cannot use.
        code = CODE_REMOTE if type(error).__name__.endswith("RemoteManifest") else CODE_UNREADABLE
        notes.append(f"C2PA manifest unreadable: {message}")
        return C2paManifest("malformed", (code,), message=message)
    try:
        store = json.loads(outcome["json"])
    except (ValueError, RecursionError) as error:
        return C2paManifest("malformed", (CODE_UNREADABLE,), message=f"reader output not JSON ({error})"[:300])
    return _parse_store(store)


def _parse_store(store: Any) -> C2paManifest:
    if not isinstance(store, dict):
        return C2paManifest("malformed", (CODE_UNREADABLE,), message="manifest store is not an object")
    manifests: dict[str, Any] = store["manifests"] if isinstance(store.get("manifests"), dict) else {}
    active = manifests.get(str(store.get("active_manifest")))
    failures, others = _validation_codes(store)
    validation = _validation(failures, str(store.get("validation_state") or ""))
    codes = tuple(dict.fromkeys([*failures, *others]))[:50]
    if not isinstance(active, dict):
        return C2paManifest("malformed", codes + (CODE_UNREADABLE,), message="no active manifest")
    generator, version = _claim_generator(active)
    signature: dict[str, Any] = active["signature_info"] if isinstance(active.get("signature_info"), dict) else {}
    actions = _actions(active)
    source_types = [action["digital_source_type"] for action in actions if action.get("digital_source_type")]
    ranked = sorted(source_types, key=lambda uri: -_SAYS_RANK.get(_SOURCE_TYPE_SAYS.get(_term(uri), "edited"), -1))
    ingredients = tuple(
        _capped({key: item.get(key) for key in ("title", "format", "relationship", "active_manifest")})
        for item in (active.get("ingredients") or [])[:20]
        if isinstance(item, dict)
    )
    return C2paManifest(
        validation=validation,
        codes=codes,
        claim_generator=_text(generator, 200),
        claim_generator_version=_text(version, 100),
        digital_source_type=_term(ranked[0]) if ranked else None,
        signer_issuer=_text(signature.get("issuer"), 200),
        signer_common_name=_text(signature.get("common_name"), 200),
        title=_text(active.get("title"), 200),
        actions=tuple(actions),
        ingredients=ingredients,
    )


def _validation_codes(store: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The active manifest's failure codes, and its other codes (informational, then success)."""
    results = store.get("validation_results")
    active = results.get("activeManifest") if isinstance(results, dict) else None
    if isinstance(active, dict):
        def codes(kind: str) -> list[str]:
            return [str(item.get("code")) for item in active.get(kind) or [] if isinstance(item, dict)]

        return codes("failure"), codes("informational") + codes("success")
    status = store.get("validation_status") or []
    return [str(item.get("code")) for item in status if isinstance(item, dict)], []


def _validation(failures: Sequence[str], state: str) -> Validation:
    serious = [code for code in failures if not code.endswith(".untrusted")]
    if any(
        code.startswith(("claimSignature.", "signingCredential.", "timeStamp."))
        or code == "assertion.hashedURI.mismatch"
        for code in serious
    ):
        return "invalid_signature"
    if any(code.startswith("assertion.") and "Hash." in code and code.endswith(".mismatch") for code in serious):
        return "hash_mismatch"
    if serious or state.casefold() == "invalid":
        return "malformed"
    return "valid" if state.casefold() == "trusted" else "untrusted"


def _claim_generator(manifest: dict[str, Any]) -> tuple[str | None, str | None]:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        return _text(info[0].get("name"), 200), _text(info[0].get("version"), 100)
    legacy = manifest.get("claim_generator")  # "Adobe_Firefly/0.1 c2pa-rs/0.32"
    if isinstance(legacy, str) and legacy:
        name, _, version = legacy.split(" ")[0].partition("/")
        return name.replace("_", " "), version or None
    return None, None


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, dict) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        data: dict[str, Any] = assertion["data"] if isinstance(assertion.get("data"), dict) else {}
        for action in (data.get("actions") or [])[:50]:
            if not isinstance(action, dict):
                continue
            agent = action.get("softwareAgent")
            agent_name = agent.get("name") if isinstance(agent, dict) else agent
            found.append(
                {
                    "action": _text(action.get("action"), 100),
                    "digital_source_type": _text(action.get("digitalSourceType"), 200),
                    "software_agent": _text(agent_name, 200),
                }
            )
    return found[:50]


def _c2pa_claim(manifest: C2paManifest) -> Claim | None:
    if manifest.validation == "malformed" and not manifest.actions:
        return None
    strength: Strength = {"valid": "strong", "untrusted": "medium"}.get(manifest.validation, "weak")  # type: ignore[assignment]
    best: tuple[Says, dict[str, Any]] | None = None
    for action in manifest.actions:
        says = _SOURCE_TYPE_SAYS.get(_term(action.get("digital_source_type") or ""))
        if says is None and action.get("action") in _EDIT_ACTIONS:
            says = "edited"
        if says is not None and (best is None or _SAYS_RANK[says] > _SAYS_RANK[best[0]]):
            best = (says, action)
    if best is None:
        return None
    says, action = best
    generator = action.get("software_agent") or manifest.claim_generator
    detail = {
        "validation": manifest.validation,
        "claim_generator": manifest.claim_generator,
        "claim_generator_version": manifest.claim_generator_version,
        "software_agent": action.get("software_agent"),
        "digital_source_type": action.get("digital_source_type"),
        "signer": {"issuer": manifest.signer_issuer, "common_name": manifest.signer_common_name},
        "title": manifest.title,
        "actions": list(manifest.actions[:10]),
        "ingredients": list(manifest.ingredients[:10]),
    }
    return Claim("c2pa", says, generator if says != "camera capture" else None, strength, _capped(detail))


# ---------------------------------------------------------------------------------------------
# XMP


def _xmp_packets(data: bytes, container: str | None, limit: int) -> list[str]:
    """XMP packets where the container keeps them (JPEG APP1, the WebP "XMP " chunk; PNG's iTXt is read
    with the other text chunks), or, in other containers, wherever an `<x:xmpmeta>` packet is found."""
    if container == "JPEG":
        regions = [
            data[start + len(_XMP_JPEG_HEADER) : end]
            for marker, start, end in _jpeg_segments(data)
            if marker == 0xE1 and data.startswith(_XMP_JPEG_HEADER, start)
        ]
    elif container == "WEBP":
        regions = [data[start:end] for kind, start, end in _riff_chunks(data) if kind == b"XMP "]
    elif container == "PNG":
        return []
    else:
        regions = [data]
    packets: list[str] = []
    for region in regions:
        position = 0
        while len(packets) < MAX_XMP_PACKETS:
            found = [at for tag in (b"<x:xmpmeta", b"<x:xapmeta") if (at := region.find(tag, position)) >= 0]
            if not found:
                break
            start = min(found)
            end = region.find(b"meta>", start + 10, start + limit)
            while end >= 0 and region[end - 7 : end] not in (b"</x:xmp", b"</x:xap"):
                end = region.find(b"meta>", end + 5, start + limit)
            if end < 0:
                break
            packets.append(region[start : end + 5].decode("utf-8", "replace"))
            position = end + 5
    return packets


@functools.lru_cache(maxsize=16)
def _xmp_pattern(name: str) -> re.Pattern[str]:
    # Every repetition is bounded, so that a hostile packet cannot make the search quadratic.
    attribute = rf':{name}\s{{0,20}}=\s{{0,20}}"([^"]{{0,1000}})"'
    resource = rf':{name}\b[^>]{{0,300}}?rdf:resource\s{{0,20}}=\s{{0,20}}"([^"]{{0,1000}})"'
    container = r"(?:<rdf:(?:Alt|Seq|Bag)>\s{0,200}<rdf:li[^>]{0,300}>)?"
    element = rf":{name}\s{{0,20}}>\s{{0,200}}{container}([^<]{{1,1000}})<"
    return re.compile(f"{attribute}|{resource}|{element}")


def _xmp_value(packet: str, name: str) -> str | None:
    """A property's value in any of XMP's spellings: attribute, element text, rdf:resource or rdf:li."""
    found = _xmp_pattern(name).search(packet)
    if found is None:
        return None
    return _text(next(group for group in found.groups() if group is not None).strip(), 300)


def _xmp_claims(packets: Sequence[str]) -> list[Claim]:
    claims: list[Claim] = []
    for packet in packets:
        values = {key: _xmp_value(packet, name) for key, name in _XMP_FIELD.items()}
        source_type = values["digital_source_type"]
        says = _SOURCE_TYPE_SAYS.get(_term(source_type or ""))
        if says is None:
            continue
        generator = values["ai_system"] if says in ("generated", "edited with AI") else None
        detail = {key: value for key, value in values.items() if value}
        claims.append(Claim("xmp", says, generator, "weak", _capped(detail)))
    return claims


def _term(uri: str) -> str:
    """The IPTC term of a digital source type URI (or of the term itself)."""
    return uri.rstrip("/").rsplit("/", 1)[-1].strip()


# ---------------------------------------------------------------------------------------------
# PNG text chunks


def _png_texts(data: bytes, limit: int, notes: list[str]) -> dict[str, str]:
    """PNG tEXt, zTXt and iTXt entries by keyword (the first of each), decompressed within `limit`."""
    texts: dict[str, str] = {}
    total = 0
    count = 0
    for kind, start, end in _png_chunks(data):
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        count += 1
        if count > MAX_TEXT_CHUNKS or total > MAX_TEXT_TOTAL_BYTES:
            notes.append("too many PNG text chunks: the rest were skipped")
            break
        keyword, _, body = data[start:end].partition(b"\x00")
        try:
            text = _png_text_body(kind, body, limit)
        except (zlib.error, ValueError, IndexError) as error:
            notes.append(f"PNG {kind.decode()} chunk {keyword[:40]!r} unreadable: {error}")
            continue
        if text is None:
            notes.append(f"PNG {kind.decode()} chunk {keyword[:40]!r} over {limit} bytes: skipped")
            continue
        total += len(text)
        texts.setdefault(keyword[:80].decode("latin-1"), text)
    return texts


def _png_text_body(kind: bytes, body: bytes, limit: int) -> str | None:
    if kind == b"tEXt":
        return body[:limit].decode("latin-1") if len(body) <= limit else None
    if kind == b"zTXt":
        return _inflate(body[1:], limit, "latin-1")
    compressed, _method = body[0], body[1]
    _language, _, rest = body[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    if compressed:
        return _inflate(text, limit, "utf-8")
    return text.decode("utf-8", "replace") if len(text) <= limit else None


def _inflate(compressed: bytes, limit: int, encoding: str) -> str | None:
    inflater = zlib.decompressobj()
    text = inflater.decompress(compressed, limit)
    if inflater.unconsumed_tail:
        return None  # a decompression bomb, or just too long
    return text.decode(encoding, "replace")


def _png_text_claims(texts: Mapping[str, str], limit: int, notes: list[str]) -> list[Claim]:
    claims: list[Claim] = []
    if (parameters := texts.get("parameters")) is not None:
        claim = _a1111_claim("png-text", parameters, "parameters") or _fooocus_claim(parameters, limit)
        if claim is not None:
            claims.append(claim)
    if "prompt" in texts or "workflow" in texts:
        claim = _comfyui_claim(texts, limit, notes)
        if claim is not None:
            claims.append(claim)
    for keyword in ("invokeai_metadata", "sd-metadata"):
        if keyword in texts and (claim := _invokeai_claim(keyword, texts[keyword], limit)) is not None:
            claims.append(claim)
            break
    software = texts.get("Software", "")
    if "novelai" in software.casefold():
        claims.append(_novelai_claim(texts, limit))
    elif software:
        claims += _software_claims("png-text", software, {"keyword": "Software"})
    return claims


def _a1111_claim(source: Source, text: str, keyword: str) -> Claim | None:
    """AUTOMATIC1111 (and Forge, SD.Next): the prompt, "Negative prompt: ...", then "Steps: 20, ..., Model: x"."""
    lines = text.strip().splitlines()
    if not lines or "Steps:" not in lines[-1]:
        return None
    settings: dict[str, str] = {}
    for match in _A1111_SETTING.finditer(lines[-1][-20_000:]):  # the settings end the text
        key, value = match.group(1).strip(), match.group(2).strip()
        if key and len(settings) < 60:
            settings[key] = value.strip('"')
    if "Steps" not in settings:
        return None
    model, model_hash = settings.get("Model"), settings.get("Model hash")
    prompt = "\n".join(line for line in lines[:-1] if not line.startswith("Negative prompt:"))
    detail = {
        "keyword": keyword,
        "model": model,
        "model_hash": model_hash,
        "version": settings.get("Version"),
        "settings": settings,
        "prompt": prompt,
    }
    return Claim(source, "generated", model or model_hash, "weak", _capped(detail))


def _fooocus_claim(text: str, limit: int) -> Claim | None:
    document = _json(text, limit)
    if not isinstance(document, dict):
        return None
    model = document.get("base_model") or document.get("Base Model")
    if not isinstance(model, str):
        return None
    name = _MODEL_FILE_SUFFIX.sub("", model)
    detail = {"keyword": "parameters", "model": model, "version": document.get("version") or document.get("Version")}
    return Claim("png-text", "generated", name, "weak", _capped(detail))


def _comfyui_claim(texts: Mapping[str, str], limit: int, notes: list[str]) -> Claim | None:
    """ComfyUI: `prompt` (the API graph, node id to {class_type, inputs}) and `workflow` (the UI graph)."""
    checkpoints: list[str] = []
    loras: list[str] = []
    nodes = 0
    prompt = _json(texts.get("prompt", ""), limit)
    if isinstance(prompt, dict):
        for node in list(prompt.values())[:5000]:
            if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
                continue
            nodes += 1
            for key, value in node["inputs"].items():
                if not isinstance(value, str):
                    continue
                if key in ("ckpt_name", "unet_name", "model_name"):
                    checkpoints.append(value)
                elif key == "lora_name":
                    loras.append(value)
    workflow = _json(texts.get("workflow", ""), limit)
    if not nodes and isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        for node in workflow["nodes"][:5000]:
            if not isinstance(node, dict):
                continue
            nodes += 1
            kind = str(node.get("type", ""))
            values = node.get("widgets_values") if isinstance(node.get("widgets_values"), list) else []
            first = values[0] if values and isinstance(values[0], str) else None
            if first and ("Checkpoint" in kind or "UNETLoader" in kind):
                checkpoints.append(first)
            elif first and "Lora" in kind:
                loras.append(first)
    if not nodes:
        if "prompt" in texts and not isinstance(prompt, dict):
            notes.append("PNG `prompt` text is not a ComfyUI graph")
        return None
    unique = list(dict.fromkeys(checkpoints))
    generator = _MODEL_FILE_SUFFIX.sub("", unique[0].replace("\\", "/").rsplit("/", 1)[-1]) if unique else None
    detail = {
        "keyword": "prompt" if isinstance(prompt, dict) else "workflow",
        "tool": "ComfyUI",
        "checkpoints": unique[:10],
        "loras": list(dict.fromkeys(loras))[:10],
        "nodes": nodes,
    }
    return Claim("png-text", "generated", generator, "weak", _capped(detail))


def _invokeai_claim(keyword: str, text: str, limit: int) -> Claim | None:
    document = _json(text, limit)
    if not isinstance(document, dict):
        return None
    model = document.get("model")
    name = model_hash = None
    if isinstance(model, dict):  # InvokeAI 3+: {"name" or "model_name", "hash", "base"}
        name = model.get("name") or model.get("model_name")
        model_hash = model.get("hash")
    if keyword == "sd-metadata":  # InvokeAI 2: "model_weights", "model_hash"
        name = document.get("model_weights") or (model if isinstance(model, str) else None)
        model_hash = document.get("model_hash")
    detail = {
        "keyword": keyword,
        "tool": "InvokeAI",
        "model": name if isinstance(name, str) else None,
        "model_hash": model_hash if isinstance(model_hash, str) else None,
        "app_version": document.get("app_version"),
    }
    generator = detail["model"] or detail["model_hash"]
    return Claim("png-text", "generated", generator, "weak", _capped(detail))


def _novelai_claim(texts: Mapping[str, str], limit: int) -> Claim:
    comment = _json(texts.get("Comment", ""), limit)
    source = texts.get("Source")
    detail: dict[str, Any] = {"keyword": "Software", "software": texts.get("Software"), "source": source}
    if isinstance(comment, dict):
        detail["settings"] = {key: comment.get(key) for key in ("steps", "sampler", "scale", "seed", "width", "height")}
    return Claim("png-text", "generated", _text(source, 200) or "NovelAI", "weak", _capped(detail))


def _json(text: str, limit: int) -> Any:
    if not text or len(text) > limit or text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------------------------------------
# EXIF


def _exif_claims(data: bytes, container: str | None, limit: int, notes: list[str]) -> list[Claim]:
    if container is None:
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=[container]) as image:  # headers only; no pixels decoded
                exif = image.getexif()
                tags = dict(exif.items())
                tags.update(exif.get_ifd(ExifTags.IFD.Exif).items())
    except _PIL_ERRORS as error:
        notes.append(f"EXIF unreadable: {str(error)[:200]}")
        return []
    make = _text(_exif_text(tags.get(ExifTags.Base.Make)), 100)
    model = _text(_exif_text(tags.get(ExifTags.Base.Model)), 100)
    software = _text(_exif_text(tags.get(ExifTags.Base.Software)), 200)
    claims: list[Claim] = []
    for tag, key in ((ExifTags.Base.UserComment, "UserComment"), (ExifTags.Base.ImageDescription, "ImageDescription")):
        text = _exif_text(tags.get(tag), limit)
        if text and (claim := _a1111_claim("exif", text, key)) is not None:
            claims.append(claim)
            break
    if software:
        claims += _software_claims("exif", software, {"software": software, "make": make, "model": model})
    if make or model:
        camera = " ".join(part for part in (make, model) if part)
        detail = {"make": make, "model": model, "camera": camera, "software": software}
        claims.append(Claim("exif", "camera capture", None, "weak", _capped(detail)))
    return claims


def _software_claims(source: Source, software: str, detail: dict[str, Any]) -> list[Claim]:
    if _GENERATOR_SOFTWARE.search(software):
        return [Claim(source, "generated", _text(software, 200), "weak", _capped({**detail, "software": software}))]
    if _EDITOR_SOFTWARE.search(software):
        return [Claim(source, "edited", None, "weak", _capped({**detail, "software": software}))]
    return []


def _exif_text(value: Any, limit: int = 1000) -> str | None:
    """An EXIF value as text; UserComment's 8-byte character-code prefix is honoured."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value[: limit * 2 + 8]
        prefix, body = value[:8], value[8:]
        if prefix.startswith(b"UNICODE"):
            # UTF-16 in the file's byte order, which the tag does not record: pick the order with ASCII.
            big, little = body[0::2].count(0), body[1::2].count(0)
            text = body.decode("utf-16-be" if big >= little else "utf-16-le", "replace")
        elif prefix.startswith((b"ASCII", b"JIS", b"\x00\x00\x00\x00\x00\x00\x00\x00")):
            text = body.decode("utf-8", "replace")
        else:
            text = value.decode("utf-8", "replace")
    else:
        text = str(value)
    text = text.replace("\x00", "").strip()
    return text[:limit] or None


# ---------------------------------------------------------------------------------------------
# Size caps


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    return text[:limit] if text else None


def _capped(value: Any, *, depth: int = 0) -> Any:
    """A JSON-safe copy with strings cut to 500 characters, lists to 20 items, objects to 40 keys and
    nesting to 4 levels; None values are dropped from objects."""
    if isinstance(value, str):
        return value.replace("\x00", "")[:500]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if depth >= 4:
        return None
    if isinstance(value, Mapping):
        items = [(str(key)[:100], item) for key, item in value.items() if item is not None][:40]
        return {key: _capped(item, depth=depth + 1) for key, item in items}
    if isinstance(value, list | tuple):
        return [_capped(item, depth=depth + 1) for item in list(value)[:20]]
    return str(value)[:500]
