"""The process's provenance credentials, from the settings: the signer and the watermark secret.

An operator's signer that can't be read is a configuration error (``ProvenanceError``): a job that
should be signed with it fails with that reason rather than writing an unsigned file. The embedded
default is made on first use and always works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from core.errors import ConfigError
from core.provenance.keys import SigningKeys, embedded_keys, local_watermark_secret
from core.settings import Settings, get_settings

T = TypeVar("T")


class ProvenanceError(ConfigError):
    """Signing or watermarking is configured but can't work; the message says what to fix."""


@dataclass(frozen=True)
class Provenance:
    keys: SigningKeys
    watermark_secret: bytes
    trust_anchors: tuple[
        Path, ...
    ]  # CA files verify trusts: the embedded CA and ONBRAND_C2PA_TRUST

    def __repr__(self) -> str:
        return f"Provenance({self.keys!r}, trust_anchors={self.trust_anchors!r})"


def from_settings(settings: Settings) -> Provenance:
    given = (
        settings.c2pa_cert or settings.c2pa_cert_pem,
        settings.c2pa_key or settings.c2pa_key_pem,
    )
    if any(given) and not all(given):
        raise ProvenanceError(
            "Set both the C2PA certificate chain (ONBRAND_C2PA_CERT or ONBRAND_C2PA_CERT_PEM) and "
            "its key (ONBRAND_C2PA_KEY or ONBRAND_C2PA_KEY_PEM), or neither for the local default."
        )
    anchors: list[Path] = []
    if all(given):
        try:
            chain = (
                settings.c2pa_cert.read_bytes()
                if settings.c2pa_cert
                else (settings.c2pa_cert_pem or "").encode()
            )
            key = (
                settings.c2pa_key.read_bytes()
                if settings.c2pa_key
                else settings.c2pa_key_pem.get_secret_value().encode()  # type: ignore[union-attr]
            )
        except OSError as exc:
            raise ProvenanceError(f"The C2PA signer can't be read: {exc}") from exc
        if b"BEGIN CERTIFICATE" not in chain or b"PRIVATE KEY" not in key:
            raise ProvenanceError(
                "The C2PA certificate chain or key is not PEM (expected BEGIN CERTIFICATE and "
                "BEGIN PRIVATE KEY blocks)."
            )
        keys = SigningKeys(chain, key, settings.c2pa_alg, settings.c2pa_tsa_url)
    else:
        keys = _local(lambda: embedded_keys(settings.data_dir, settings.c2pa_tsa_url), settings)
        if keys.trust_anchor is not None:
            anchors.append(keys.trust_anchor)
    if settings.c2pa_trust is not None:
        anchors.append(settings.c2pa_trust)
    if settings.watermark_secret is not None:
        secret = settings.watermark_secret.get_secret_value().encode()
        if len(secret) < 16:
            raise ProvenanceError("ONBRAND_WATERMARK_SECRET must be at least 16 characters.")
    else:
        secret = _local(lambda: local_watermark_secret(settings.data_dir), settings)
    return Provenance(keys, secret, tuple(anchors))


def _local(make: Callable[[], T], settings: Settings) -> T:
    try:
        return make()
    except OSError as exc:
        raise ProvenanceError(
            f"The local signing keys in {settings.data_dir / 'provenance'} can't be made or read "
            f"({exc.strerror or exc}); make the data directory writable or configure a signer."
        ) from exc


_current: Provenance | None = None
_lock = threading.Lock()


def current() -> Provenance:
    """The process's provenance: set by ``configure``, else built once from ``get_settings``."""
    global _current
    with _lock:
        if _current is None:
            _current = from_settings(get_settings())
        return _current


def configure(provenance: Provenance | None) -> None:
    """Use ``provenance`` from now on (``None``: build it from the settings when next asked)."""
    global _current
    with _lock:
        _current = provenance


_built: dict[int, tuple[Settings, Provenance]] = {}


def provenance_of(settings: Settings) -> Provenance:
    """``from_settings(settings)``, built once per settings object (chat adapters ask per
    request)."""
    with _lock:
        kept = _built.get(id(settings))
        if kept is not None and kept[0] is settings:
            return kept[1]
    made = from_settings(settings)
    with _lock:
        _built[id(settings)] = (settings, made)
    return made
