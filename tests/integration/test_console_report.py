"""The console's experiment numbers are `admuse report`'s, on the same records of the real
broker: the report the console serves (and renders) equals the CLI's JSON, field for field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.codec import SchemaRegistry
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from services.console.app import create_app
from services.console.settings import Settings
from services.console.state import ConsoleState
from tests.integration.test_analysis_kafka import _cli, _seed_campaign

pytestmark = [pytest.mark.integration]


def _without_time(report: dict[str, Any]) -> str:
    """The report as canonical JSON text (NaN == NaN there), less the time it was made."""
    rest = {k: v for k, v in report.items() if k != "generated_at_ms"}
    return json.dumps(rest, sort_keys=True, default=str)


async def test_console_experiment_equals_admuse_report(
    kafka: KafkaSettings, topics: Topics, registry: SchemaRegistry, tmp_path: Path
) -> None:
    await _seed_campaign(kafka, topics, registry)
    out = tmp_path / "report.json"
    res = _cli(kafka, "report", "--campaign", "spring", "--json", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    cli = json.loads(out.read_text())

    settings = Settings(admin_keys="k", kafka=kafka)
    state = ConsoleState(settings, registry)
    await state.refresh()
    assert state.error is None, state.error
    app = create_app(settings, state)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console"
    ) as client:
        page = (await client.get("/signin")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        await client.post("/signin", data={"csrf": csrf, "key": "k"})
        served = (await client.get("/experiment/spring.json")).json()["report"]
        html = (await client.get("/experiment/spring")).text
    assert _without_time(json.loads(json.dumps(served, default=str))) == _without_time(cli)
    for arm in cli["arms"]:
        assert f"<td>{arm['impressions']}</td><td>{arm['outcomes']}</td>" in html
        assert f"{arm['rewarded']['rate']:.2%}" in html
    lift = cli["comparisons"]["optimized"]["lift"]
    assert f"{lift['estimate']:.1%}" in html
