"""Build (once per source version) and run the reference-implementation programs in
tests/interop/: Java programs built with Maven against artifacts from Maven Central (jars in
~/.m2, build output cached by tests/buildcache.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.buildcache import cached_build

HERE = Path(__file__).resolve().parent


def build(name: str, main_class: str) -> list[str]:
    """Compile tests/interop/<name> with Maven (cached); return the command that runs it."""
    project = HERE / name

    def mvn(out: Path) -> None:
        proc = subprocess.run(
            [
                "mvn", "-q", "-B", "-f", str(project / "pom.xml"), f"-Dinterop.out={out}",
                "compile", "dependency:build-classpath", f"-Dmdep.outputFile={out}/classpath.txt",
            ],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"Maven could not build {project}:\n{proc.stdout}\n{proc.stderr}")

    out = cached_build(f"java-{name}", project, mvn)
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
