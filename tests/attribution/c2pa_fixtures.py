"""Real C2PA test material: an ES256 certificate chain made with `cryptography` and images signed
by c2pa-python with it, offline (no timestamp authority). Used by the provenance tests and bench."""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CAPTURE = "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"


@dataclass(frozen=True)
class SigningChain:
    """A root CA (PEM) and a leaf signer: its chain (leaf then root, PEM) and private key (PKCS#8 PEM)."""

    root_pem: str
    chain_pem: str
    key_pem: str


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )


def _key_usage(*, signer: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signer, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=not signer, crl_sign=not signer, encipher_only=False, decipher_only=False,
    )


def make_chain(*, organisation: str = "Provenance Test Org", signer_name: str = "Test Signer") -> SigningChain:
    """A P-256 root CA and a leaf with the email-protection EKU, valid from yesterday for 30 days."""
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{organisation} Root CA", organisation)
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(signer=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(signer_name, organisation))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signer=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )

    def pem(certificate: x509.Certificate) -> str:
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningChain(root_pem=pem(root), chain_pem=pem(leaf) + pem(root), key_pem=key_pem)


def generator_manifest(
    *, generator: str = "Adobe Firefly", version: str = "3.1", source_type: str = TRAINED, padding: int = 0
) -> dict[str, Any]:
    """A manifest definition whose one action creates the image with `source_type`; `padding` bytes of
    a custom assertion make the manifest store large."""
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": source_type,
                        "softwareAgent": {"name": generator, "version": version},
                    }
                ]
            },
        }
    ]
    if padding:
        assertions.append({"label": "org.example.padding", "data": {"pad": "x" * padding}})
    return {
        "claim_generator_info": [{"name": generator, "version": version}],
        "title": "image.jpg",
        "assertions": assertions,
    }


def sign(image: bytes, mime: str, manifest: dict[str, Any], chain: SigningChain) -> bytes:
    """`image` with `manifest` embedded and signed by the chain's leaf (ES256, no timestamp)."""
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.chain_pem.encode(), chain.key_pem.encode(), None)
    context = c2pa.Context.from_json(
        json.dumps(
            {
                "verify": {"verify_after_sign": False, "remote_manifest_fetch": False},
                "builder": {"thumbnail": {"enabled": False}},
            }
        )
    )
    output = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=context) as builder:
        builder.sign(signer, mime, io.BytesIO(image), output)
    return output.getvalue()
