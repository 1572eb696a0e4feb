"""The model store reads only its own files: other schemes, hosts, `..` and symlinks that
leave the store are refused before anything is opened; big files before they are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.model_store import (
    ArtifactTooLarge,
    ChecksumMismatch,
    ModelStore,
    OutsideStore,
)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(f"file://{tmp_path / 'store'}")


def test_round_trip_and_checksum(store: ModelStore) -> None:
    ref = store.put("c/v1/a.bin", b"hello")
    assert store.get(ref.uri, ref.sha256) == b"hello"
    with pytest.raises(ChecksumMismatch):
        store.get(ref.uri, "0" * 64)


@pytest.mark.parametrize(
    "uri",
    [
        "file:///etc/passwd",
        "http://127.0.0.1:1/model.onnx",
        "https://example.invalid/x",
        "s3://bucket/x",
        "file://otherhost{root}/c/v1/a.bin",
        "file://{root}/c/../../etc/passwd",
        "file://{root}/c/./v1/a.bin",
        "file://{root}/c/v1/a.bin?x=1",
        "{root}/c/v1/a.bin",
        "file://{root}",
    ],
)
def test_uris_outside_the_store_are_refused(store: ModelStore, tmp_path: Path, uri: str) -> None:
    store.put("c/v1/a.bin", b"x")
    with pytest.raises(OutsideStore):
        store.get(uri.format(root=tmp_path / "store"))


def test_symlink_out_of_the_store_is_refused(store: ModelStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    ref = store.put("c/v1/a.bin", b"x")
    link = Path(ref.uri.removeprefix("file://")).parent / "evil.onnx"
    link.symlink_to(secret)
    with pytest.raises(OutsideStore):
        store.get(f"file://{link}")


def test_size_limit(store: ModelStore) -> None:
    ref = store.put("c/v1/big.bin", b"x" * 5000)
    with pytest.raises(ArtifactTooLarge):
        store.get(ref.uri, max_bytes=4999)
    assert len(store.get(ref.uri, max_bytes=5000)) == 5000
