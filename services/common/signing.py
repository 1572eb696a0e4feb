"""Ed25519 signatures of a model version's artifacts (the trainer signs, inference verifies).

What is signed is a manifest, canonical JSON (sorted keys, no spaces)::

    {"format": 1, "campaign_id": …, "version": …, "key_id": …,
     "files": {"generator": {"name": "generator.onnx", "sha256": …, "size": …},
               "reward_model": {…}, "metadata": {…}}}

and stored next to the artifacts as ``signature.json`` = ``{"manifest": …, "signature":
base64}``. A verifier trusts a set of public keys, each known by its key id (the first 16 hex
digits of the sha256 of the raw 32-byte public key), so keys rotate by adding the new public
key to the verifiers, switching the signer, then dropping the old key.

Keys travel as text: base64 of the raw 32 bytes (what `admuse keys generate` prints) or PEM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "SIGNATURE_FILE",
    "SignatureError",
    "Signer",
    "TrustedKeys",
    "generate_key_pair",
    "key_id_of",
]

SIGNATURE_FILE = "signature.json"
_RAW = serialization.Encoding.Raw
_MAX_SIGNATURE_BYTES = 64 * 1024


class SignatureError(ValueError):
    """A signature that does not verify; `reason` is a stable code for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(_RAW, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair() -> tuple[str, str, str]:
    """(private key text, public key text, key id), both keys as base64 of the raw bytes."""
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = private.public_key()
    pub = public.public_bytes(_RAW, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(pub).decode(), key_id_of(public)


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


class Signer:
    """The trainer's private key."""

    def __init__(self, private_text: str) -> None:
        text = private_text.strip()
        try:
            if text.startswith("-----BEGIN"):
                key = serialization.load_pem_private_key(text.encode(), password=None)
            else:
                key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
        except (ValueError, TypeError, binascii.Error) as exc:
            raise ValueError(
                "the signing key is not an Ed25519 private key (base64 of 32 bytes, or PEM); "
                "make one with `admuse keys generate`"
            ) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the signing key is not an Ed25519 key")
        self._key = key
        self.key_id = key_id_of(key.public_key())

    def public_text(self) -> str:
        raw = self._key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign(self, campaign_id: str, version: str, files: Mapping[str, tuple[str, bytes]]) -> bytes:
        """signature.json for artifacts given as role → (file name, bytes)."""
        manifest = {
            "format": 1,
            "campaign_id": campaign_id,
            "version": version,
            "key_id": self.key_id,
            "files": {
                role: {
                    "name": name,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                }
                for role, (name, data) in files.items()
            },
        }
        signature = base64.b64encode(self._key.sign(_canonical(manifest))).decode()
        return json.dumps({"manifest": manifest, "signature": signature}, indent=1).encode()


class TrustedKeys:
    """The public keys a verifier accepts, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id_of(k): k for k in keys}

    @classmethod
    def parse(cls, text: str) -> TrustedKeys:
        """Public keys separated by commas or whitespace (base64 raw), or PEM blocks."""
        keys: list[Ed25519PublicKey] = []
        pem_end = "-----END PUBLIC KEY-----"
        rest = text
        while "-----BEGIN PUBLIC KEY-----" in rest:
            head, _, tail = rest.partition(pem_end)
            block = head[head.index("-----BEGIN PUBLIC KEY-----") :] + pem_end
            key = serialization.load_pem_public_key(block.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("a trusted key is not an Ed25519 public key")
            keys.append(key)
            rest = head[: head.index("-----BEGIN PUBLIC KEY-----")] + tail
        for item in rest.replace(",", " ").split():
            try:
                raw = base64.b64decode(item, validate=True)
                keys.append(Ed25519PublicKey.from_public_bytes(raw))
            except (ValueError, binascii.Error) as exc:
                raise ValueError(
                    f"trusted key {item[:12]!r}… is not base64 of a 32-byte Ed25519 public key"
                ) from exc
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, blob: bytes, campaign_id: str, version: str) -> dict[str, dict[str, Any]]:
        """The signed files (role → name, sha256, size) of `signature.json`, or SignatureError."""
        if len(blob) > _MAX_SIGNATURE_BYTES:
            raise SignatureError("bad_signature", "signature.json is too large")
        try:
            doc = json.loads(blob)
            manifest, signature = doc["manifest"], base64.b64decode(doc["signature"], validate=True)
            key_id = manifest["key_id"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SignatureError("bad_signature", f"signature.json is malformed ({exc})") from exc
        key = self._keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise SignatureError(
                "untrusted_key", f"signed by key {str(key_id)[:32]!r}, trusted: {self.key_ids}"
            )
        try:
            key.verify(signature, _canonical(manifest))
        except InvalidSignature:
            raise SignatureError("bad_signature", "the signature does not verify") from None
        if manifest.get("campaign_id") != campaign_id or manifest.get("version") != version:
            raise SignatureError(
                "bad_signature",
                f"signed for {manifest.get('campaign_id')!r} {manifest.get('version')!r}, "
                f"published as {campaign_id!r} {version!r}",
            )
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise SignatureError("bad_signature", "the manifest lists no files")
        return files
