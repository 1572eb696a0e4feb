"""Model store: content-addressed artifacts behind an fsspec URL (file:// by default).

`put` writes bytes and returns their sha256; `get` reads them back and refuses bytes whose
sha256 differs from what the publisher recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import fsspec

__all__ = ["ArtifactRef", "ChecksumMismatch", "ModelStore", "sha256_hex"]


class ChecksumMismatch(ValueError):
    """Stored bytes do not match the recorded sha256 (corrupt or tampered artifact)."""


@dataclass(frozen=True)
class ArtifactRef:
    uri: str
    sha256: str
    size: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore:
    """Artifacts under a base URL, e.g. file:///srv/models or s3://bucket/models."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._fs, self._root = fsspec.core.url_to_fs(self.base_url)

    def put(self, relpath: str, data: bytes) -> ArtifactRef:
        """Write `data` at `base/relpath` atomically where the filesystem allows."""
        path = f"{self._root}/{relpath.lstrip('/')}"
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.partial"
        with self._fs.open(tmp, "wb") as fh:
            fh.write(data)
        self._fs.mv(tmp, path)
        return ArtifactRef(self._url_of(path), sha256_hex(data), len(data))

    def get(self, uri: str, expected_sha256: str | None = None) -> bytes:
        """Read an artifact by the URI `put` returned; verify its sha256 when given."""
        fs, path = fsspec.core.url_to_fs(uri)
        with fs.open(path, "rb") as fh:
            data = fh.read()
        if expected_sha256 is not None:
            actual = sha256_hex(data)
            if actual != expected_sha256:
                raise ChecksumMismatch(
                    f"artifact {uri} has sha256 {actual}, expected {expected_sha256}; "
                    "it is corrupt or was replaced — republish the model"
                )
        return data

    def _url_of(self, path: str) -> str:
        protocol = self._fs.protocol if isinstance(self._fs.protocol, str) else self._fs.protocol[0]
        if protocol in ("file", "local"):
            return f"file://{path}"
        return self._fs.unstrip_protocol(path)
