"""Cold start of the real Kafka broker (jars cached): fresh data folder → format → ready.

Also measures a warm restart on an already formatted folder, and as the same-run baseline a bare
JVM start on the same classpath (`kafka.tools.StorageTool random-uuid`), which no broker start
can beat. Prints medians over REPEATS runs. Uses its own ports and data folders.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAFKA = ROOT / "deploy" / "kafka" / "kafka.sh"
REPEATS = int(os.environ.get("REPEATS", "3"))


def _env(data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ADMUSE_KAFKA_PORT": "29092",
        "ADMUSE_KAFKA_CONTROLLER_PORT": "29093",
        "ADMUSE_KAFKA_DATA_DIR": str(data),
        "PYTHON": sys.executable,
    }


def _timed(*cmd: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    subprocess.run([str(KAFKA), "fetch"], check=True)
    version = next(
        line.split(">")[1].split("<")[0]
        for line in (KAFKA.parent / "pom.xml").read_text().splitlines()
        if "<kafka.version>" in line
    )
    cp = str(Path.home() / ".cache" / "admuse" / f"kafka-{version}" / "*")
    baseline, cold, warm = [], [], []
    for _ in range(REPEATS):
        baseline.append(
            _timed(
                "java", "-cp", cp, "kafka.tools.StorageTool", "random-uuid", env=dict(os.environ)
            )
        )
        data = Path(tempfile.mkdtemp(prefix="admuse-kafka-bench-"))
        env = _env(data)
        try:
            cold.append(_timed(str(KAFKA), "up", env=env))
            subprocess.run([str(KAFKA), "down"], env=env, check=True, stdout=subprocess.DEVNULL)
            warm.append(_timed(str(KAFKA), "up", env=env))
            subprocess.run([str(KAFKA), "down"], env=env, check=True, stdout=subprocess.DEVNULL)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    b, c, w = (statistics.median(x) for x in (baseline, cold, warm))
    print(f"Kafka {version}, {REPEATS} runs, medians:")
    print(f"  bare JVM start (baseline)      {b:6.2f} s")
    print(
        f"  cold start (format+start+ready) {c:6.2f} s  = {c / b:4.1f}x baseline  (target < 30 s)"
    )
    print(f"  warm restart (formatted folder) {w:6.2f} s  = {w / b:4.1f}x baseline")


if __name__ == "__main__":
    main()
