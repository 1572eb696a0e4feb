"""Build (once per source version) and run the reference-implementation programs in
tests/interop/: Java programs built with Maven against artifacts from Maven Central.

The build output is cached under ~/.cache/admuse/interop/<name>-<hash of pom + sources>, the
jars in ~/.m2, so only the first run on a machine pays for Maven.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ADMUSE_INTEROP_CACHE_DIR", Path.home() / ".cache/admuse/interop"))


def _source_hash(project: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in project.rglob("*") if p.is_file() and "target" not in p.parts):
        h.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build(name: str, main_class: str) -> list[str]:
    """Compile tests/interop/<name> with Maven (cached); return the command that runs it."""
    project = HERE / name
    out = CACHE / f"{name}-{_source_hash(project)}"
    if not (out / ".complete").exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        proc = subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(project / "pom.xml"), f"-Dinterop.out={tmp}",
                "compile", "dependency:build-classpath", f"-Dmdep.outputFile={tmp}/classpath.txt",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"Maven could not build {project}:\n{proc.stdout}\n{proc.stderr}")
        (tmp / ".complete").touch()
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    classpath = f"{out / 'classes'}:{(out / 'classpath.txt').read_text().strip()}"
    return ["java", "-cp", classpath, main_class]


def run(cmd: list[str], *args: str, timeout_s: float = 120) -> str:
    """Run a built program; its stdout, or an AssertionError carrying its stderr."""
    proc = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args[:2])} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    return proc.stdout
