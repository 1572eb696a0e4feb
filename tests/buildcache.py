"""Build helpers that tests share: build a tool once per version of its sources and keep it in
~/.cache/admuse/build/<name>-<hash of its sources> (ADMUSE_BUILD_CACHE_DIR), so CI's second
run and every later test run skip Maven and Go."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("ADMUSE_BUILD_CACHE_DIR", Path.home() / ".cache/admuse/build"))


def source_hash(project: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in project.rglob("*") if p.is_file() and "target" not in p.parts):
        h.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def cached_build(name: str, project: Path, build: Callable[[Path], None]) -> Path:
    """The output folder of `build(out)` for this version of `project` (built if missing)."""
    out = CACHE / f"{name}-{source_hash(project)}"
    if not (out / ".complete").exists():
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out
