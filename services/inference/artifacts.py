"""Fetching a published model's artifacts so that only what the trainer signed is loaded.

Order matters: the record's URIs are confined to the model store first (an ``http://`` or
``file:///etc/passwd`` URI is refused without being opened), then ``signature.json`` is read
(small) and its Ed25519 signature checked against the trusted public keys, and only then the
three artifacts are read (each under the size limit) and compared with the sha256 values in
the *signed* manifest — a sha256 recomputed in the ModelPublished record proves nothing.
Finally the quality gate's verdict in the signed metadata must say ``passed``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.common.model_store import ModelStore
from services.common.signing import SignatureError, TrustedKeys
from services.inference.models import ModelRejected

__all__ = ["ROLES", "fetch_verified"]

ROLES = ("generator", "reward_model", "metadata")
_SIGNATURE_MAX_BYTES = 64 * 1024


def fetch_verified(
    store: ModelStore, keys: TrustedKeys, record: Mapping[str, Any], max_bytes: int
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(metadata, role → bytes) of a ModelPublished record, or an exception naming why not."""
    artifacts = {a["name"]: a for a in record["artifacts"]}
    missing = [r for r in ROLES if r not in artifacts]
    if missing:
        raise ModelRejected("missing_artifact", f"ModelPublished lacks {', '.join(missing)}")
    for role in (*ROLES, "signature"):
        if role in artifacts:
            store.confine(artifacts[role]["uri"])  # every URI, before anything is opened
    if "signature" not in artifacts:
        raise SignatureError("unsigned", "the ModelPublished record has no signature artifact")
    if not keys:
        raise SignatureError("untrusted_key", "no trusted keys (ADMUSE_INFERENCE_TRUSTED_KEYS)")
    blob = store.get(artifacts["signature"]["uri"], max_bytes=_SIGNATURE_MAX_BYTES)
    signed = keys.verify(blob, record["campaign_id"], record["version"])
    blobs = {}
    for role in ROLES:
        entry = signed.get(role)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise SignatureError("bad_signature", f"the signed manifest does not cover {role}")
        blobs[role] = store.get(artifacts[role]["uri"], entry["sha256"], max_bytes=max_bytes)
    metadata = json.loads(blobs["metadata"])
    if not isinstance(metadata, dict):
        raise ValueError("metadata.json is not a JSON object")
    quality = metadata.get("quality")
    if not isinstance(quality, dict) or quality.get("passed") is not True:
        reasons = quality.get("reasons") if isinstance(quality, dict) else "no verdict"
        raise ModelRejected("quality_gate", f"the trainer's quality gate did not pass: {reasons}")
    return metadata, blobs
