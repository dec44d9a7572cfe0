"""Who signs, and the watermark's secret: the operator's certificate chain and key, or the
embedded default made once in the data directory.

The embedded default (``$ONBRAND_DATA_DIR/provenance/``) is a local certificate authority and a
signing certificate it issued (EC P-256; the C2PA SDK refuses a bare self-signed signer), plus a
32-byte watermark secret. ``ca.pem`` is the file verifiers trust (``onbrand verify --trust``); it
is fine for trials and not publicly trusted. The folder is made complete in a temporary folder
beside it and renamed into place, so two processes that start at once end up with one set (the
loser of the rename reads the winner's); private files are mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CA_FILE: Final = "ca.pem"
CHAIN_FILE: Final = "signer-chain.pem"
KEY_FILE: Final = "signer.key"
WATERMARK_FILE: Final = "watermark.key"
FOLDER: Final = "provenance"


@dataclass(frozen=True)
class SigningKeys:
    """A signer: the certificate chain (leaf first) and its private key, both PEM."""

    chain_pem: bytes
    key_pem: bytes
    alg: str = "es256"
    tsa_url: str | None = None
    trust_anchor: Path | None = None  # the embedded CA's file; None for an operator's chain
    embedded: bool = False

    def __repr__(self) -> str:  # never print the key
        return f"SigningKeys(alg={self.alg!r}, embedded={self.embedded}, tsa_url={self.tsa_url!r})"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _make_local_ca() -> tuple[bytes, bytes, bytes]:
    """A fresh CA certificate, a signing chain (leaf + CA) and the leaf's key, all PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=3650)
    suffix = secrets.token_hex(4)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"{common} {suffix}"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "onbrand (local, not public)"),
            ]
        )

    def usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("onbrand local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("onbrand signer"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_pem, leaf.public_bytes(pem) + ca_pem, key_pem


def local_folder(data_dir: Path) -> Path:
    """``data_dir/provenance`` with a local CA, signer and watermark secret, made on first use."""
    folder = data_dir / FOLDER
    if (folder / WATERMARK_FILE).exists():
        return folder
    data_dir.mkdir(parents=True, exist_ok=True)
    part = data_dir / f".{FOLDER}-{secrets.token_hex(6)}"
    part.mkdir(mode=0o700)
    try:
        ca_pem, chain_pem, key_pem = _make_local_ca()
        (part / CA_FILE).write_bytes(ca_pem)
        (part / CHAIN_FILE).write_bytes(chain_pem)
        _write_private(part / KEY_FILE, key_pem)
        _write_private(part / WATERMARK_FILE, secrets.token_bytes(32))
        with contextlib.suppress(FileExistsError, OSError):
            part.rename(folder)  # atomic; fails when another process got there first
    finally:
        shutil.rmtree(part, ignore_errors=True)
    if not (folder / WATERMARK_FILE).exists():
        raise OSError(f"could not create {folder}")
    return folder


def embedded_keys(data_dir: Path, tsa_url: str | None = None) -> SigningKeys:
    folder = local_folder(data_dir)
    return SigningKeys(
        chain_pem=(folder / CHAIN_FILE).read_bytes(),
        key_pem=(folder / KEY_FILE).read_bytes(),
        tsa_url=tsa_url,
        trust_anchor=folder / CA_FILE,
        embedded=True,
    )


def local_watermark_secret(data_dir: Path) -> bytes:
    return (local_folder(data_dir) / WATERMARK_FILE).read_bytes()
