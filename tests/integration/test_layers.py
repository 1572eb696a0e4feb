"""The layer contracts in pyproject.toml ([tool.importlinter]) hold for the code, and break —
failing `make lint` — as soon as a forbidden import is added: a runtime service importing
another, a tool reaching past a service's `__init__`, common importing a service."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # starts processes

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of services/ (sources only) and pyproject.toml, to add imports to."""
    dst = tmp_path_factory.mktemp("layers")
    shutil.copytree(
        ROOT / "services", dst / "services", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_code_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("services/inference/bandit.py", "import services.trainer.model", "> cli > simulator"),
        ("services/common/topics.py", "import services.ingestion", "> cli > simulator"),
        (
            "services/cli/report.py",
            "import services.analysis.stats",
            "tools use a service only through",
        ),
        ("services/domains/banner.py", "import services.inference.bandit", "> domains > common"),
        ("services/common/campaign.py", "import services.domains.music", "> domains > common"),
    ],
    ids=[
        "service-imports-service",
        "common-imports-service",
        "tool-past-init",
        "domain-imports-service",
        "common-imports-domain",
    ],
)
def test_a_forbidden_import_breaks_the_check(
    tree: Path, module: str, line: str, contract: str
) -> None:
    path = tree / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # forbidden\n")
    try:
        result = _lint(tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout
    assert line.split()[-1] in result.stdout  # the report names the offending import
