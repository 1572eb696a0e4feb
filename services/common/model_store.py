"""Model store: content-addressed artifacts behind an fsspec URL (file:// by default).

`put` writes bytes and returns their sha256. `get` reads an artifact back, but only one that
lies inside this store: a URI of another scheme or host (``http://…``, ``s3://other``), a
path with ``..`` segments or a local path whose real location (symlinks resolved) is outside
the store's folder is refused before anything is opened, and a file larger than `max_bytes`
is refused before it is read. Bytes whose sha256 differs from the expected one are refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import fsspec

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ArtifactRef",
    "ArtifactTooLarge",
    "ChecksumMismatch",
    "ModelStore",
    "OutsideStore",
    "sha256_hex",
]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class ChecksumMismatch(ValueError):
    """Stored bytes do not match the recorded sha256 (corrupt or tampered artifact)."""


class OutsideStore(ValueError):
    """An artifact URI that does not name a file inside this model store (never opened)."""


class ArtifactTooLarge(ValueError):
    """An artifact larger than the per-file limit (never read whole)."""


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
        self._local = self._protocol() in ("file", "local")

    def put(self, relpath: str, data: bytes) -> ArtifactRef:
        """Write `data` at `base/relpath` atomically where the filesystem allows."""
        path = f"{self._root}/{relpath.lstrip('/')}"
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.partial"
        with self._fs.open(tmp, "wb") as fh:
            fh.write(data)
        self._fs.mv(tmp, path)
        return ArtifactRef(self._url_of(path), sha256_hex(data), len(data))

    def get(
        self, uri: str, expected_sha256: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> bytes:
        """Read an artifact of this store by the URI `put` returned; verify its sha256 when
        given. Raises `OutsideStore`, `ArtifactTooLarge`, `ChecksumMismatch` or OSError."""
        path = self.confine(uri)
        size = self._fs.size(path)
        if size is not None and size > max_bytes:
            raise ArtifactTooLarge(f"artifact {uri} has {size} bytes, more than {max_bytes}")
        with self._fs.open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ArtifactTooLarge(f"artifact {uri} has more than {max_bytes} bytes")
        if expected_sha256 is not None:
            actual = sha256_hex(data)
            if actual != expected_sha256:
                raise ChecksumMismatch(
                    f"artifact {uri} has sha256 {actual}, expected {expected_sha256}; "
                    "it is corrupt or was replaced — republish the model"
                )
        return data

    def confine(self, uri: str) -> str:
        """The store path `uri` names, or `OutsideStore` — decided from the text alone (and,
        for a local store, the real path), without opening anything."""
        parts = urlsplit(uri)
        if parts.query or parts.fragment or "\\" in uri or "\x00" in uri:
            raise OutsideStore(f"artifact URI {uri[:200]!r} has a query, fragment or odd bytes")
        if any(seg in ("..", ".") for seg in parts.path.split("/")):
            raise OutsideStore(f"artifact URI {uri[:200]!r} has '.' or '..' segments")
        if self._local:
            if parts.scheme != "file" or parts.netloc:
                raise OutsideStore(f"artifact URI {uri[:200]!r} is not a file:/// path")
            root = os.path.realpath(self._root)
            real = os.path.realpath(parts.path)
            if not real.startswith(root + os.sep):
                raise OutsideStore(f"artifact URI {uri[:200]!r} is outside the store {root}")
            return real
        prefix = self._url_of(self._root).rstrip("/") + "/"
        if not uri.startswith(prefix):
            raise OutsideStore(f"artifact URI {uri[:200]!r} is outside the store {prefix}")
        return f"{self._root}/{uri[len(prefix) :]}"

    def list_dir(self, relpath: str) -> list[str]:
        """Names directly under `base/relpath` ([] when it does not exist)."""
        path = f"{self._root}/{relpath.strip('/')}" if relpath.strip("/") else self._root
        try:
            entries = self._fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def uri_of(self, relpath: str) -> str:
        return self._url_of(f"{self._root}/{relpath.lstrip('/')}")

    def _protocol(self) -> str:
        protocol = self._fs.protocol
        return protocol if isinstance(protocol, str) else protocol[0]

    def _url_of(self, path: str) -> str:
        if self._protocol() in ("file", "local"):
            return f"file://{path}"
        return self._fs.unstrip_protocol(path)
