"""Ed25519 manifests: what the trainer signs verifies with the trusted public key only."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization

from services.common.signing import SignatureError, Signer, TrustedKeys, generate_key_pair

FILES = {"generator": ("generator.onnx", b"g" * 10), "metadata": ("metadata.json", b"{}")}


def _pair() -> tuple[Signer, TrustedKeys]:
    private, public, _ = generate_key_pair()
    return Signer(private), TrustedKeys.parse(public)


def test_signed_manifest_verifies_and_lists_sha256s() -> None:
    signer, keys = _pair()
    files = keys.verify(signer.sign("c1", "v1", FILES), "c1", "v1")
    assert files["generator"]["size"] == 10 and len(files["generator"]["sha256"]) == 64
    assert keys.key_ids == [signer.key_id]


@pytest.mark.parametrize(
    ("campaign", "version"), [("c2", "v1"), ("c1", "v2")], ids=["campaign", "version"]
)
def test_signature_is_bound_to_campaign_and_version(campaign: str, version: str) -> None:
    signer, keys = _pair()
    with pytest.raises(SignatureError) as err:
        keys.verify(signer.sign("c1", "v1", FILES), campaign, version)
    assert err.value.reason == "bad_signature"


def test_edited_manifest_does_not_verify() -> None:
    signer, keys = _pair()
    doc = json.loads(signer.sign("c1", "v1", FILES))
    doc["manifest"]["files"]["generator"]["sha256"] = "0" * 64
    with pytest.raises(SignatureError) as err:
        keys.verify(json.dumps(doc).encode(), "c1", "v1")
    assert err.value.reason == "bad_signature"


def test_other_key_is_untrusted_and_rotation_accepts_both() -> None:
    old, _ = _pair()
    new_private, new_public, _ = generate_key_pair()
    new = Signer(new_private)
    with pytest.raises(SignatureError) as err:
        TrustedKeys.parse(new_public).verify(old.sign("c", "v", FILES), "c", "v")
    assert err.value.reason == "untrusted_key"
    both = TrustedKeys.parse(f"{old.public_text()}, {new_public}")
    for signer in (old, new):
        both.verify(signer.sign("c", "v", FILES), "c", "v")


def test_pem_keys_are_accepted() -> None:
    private, _, _ = generate_key_pair()
    signer = Signer(private)
    raw = base64.b64decode(signer.public_text())
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pem = (
        Ed25519PublicKey.from_public_bytes(raw)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    TrustedKeys.parse(pem).verify(signer.sign("c", "v", FILES), "c", "v")


@pytest.mark.parametrize("blob", [b"", b"{}", b"[1]", b'{"manifest": {}, "signature": "!!"}'])
def test_malformed_signature_files_are_refused(blob: bytes) -> None:
    _, keys = _pair()
    with pytest.raises(SignatureError):
        keys.verify(blob, "c", "v")


def test_bad_key_text_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="admuse keys generate"):
        Signer("not a key")
    with pytest.raises(ValueError, match="32-byte"):
        TrustedKeys.parse("AAAA")
