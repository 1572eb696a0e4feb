"""A console app over a fixed snapshot (no Kafka): pages, security and escaping are tested
on what a person would see. Names and attributes carry markup, so any unescaped value shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest

from services.analysis.dataset import LoggedData
from services.analysis.report import build_report
from services.common.codec import SchemaRegistry
from services.console.app import create_app
from services.console.experiment import ctr_series
from services.console.ops import Operations
from services.console.settings import Settings
from services.console.snapshot import CampaignView, Snapshot, _segment_effects
from services.console.state import ConsoleState

EVIL = '<script>alert("x")</script>'
KEY = "admin-key-for-tests"
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def rewards(n: int = 3000, seed: int = 1) -> LoggedData:
    rng = np.random.default_rng(seed)
    arm = rng.choice(["control", "catalog", "optimized"], n, p=[0.2, 0.4, 0.4])
    p = np.where(arm == "optimized", 0.12, np.where(arm == "catalog", 0.09, 0.06))
    return LoggedData.from_columns(
        context=rng.choice(["device=mobile", "device=desktop"], n).tolist(),
        action=rng.choice(["c-a", "c-b", "gen-1"], n).tolist(),
        reward=(rng.random(n) < p).astype(float),
        propensity=np.full(n, 0.5),
        timestamp_ms=(1_796_000_000_000 + np.arange(n) * 100).tolist(),
        arm=arm.tolist(),
        extra={"shown": np.ones(n, dtype=bool)},
    )


def creative(cid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "creative_id": cid,
        "campaign_id": "camp",
        "origin": "generated" if cid.startswith("gen") else "catalog",
        "name": EVIL if cid == "c-a" else cid,
        "attributes": {"headline": EVIL, "background": "#112233", "font_scale": 1.2},
        "status": status,
        "stage": None,
        "segment": "device=mobile" if cid.startswith("gen") else None,
        "model_version": "v1" if cid.startswith("gen") else None,
        "predicted_reward": 0.1,
        "prior_alpha": 1.0,
        "prior_beta": 1.0,
        "created_at": NOW,
        "retired_at": None,
        "pinned": None,
        "approved_at": None,
        "reviewed_by": None,
        **extra,
    }


def snapshot() -> Snapshot:
    data = rewards()
    report = build_report(
        "camp",
        data,
        decision_arms=np.array([data.arms[a] for a in data.arm], dtype=object),
        expected_control_share=0.2,
        expected_catalog_share=0.4,
        attributes={"c-a": {"headline": EVIL}, "c-b": {"headline": "B"}},
    )
    campaign = {
        "campaign_id": "camp",
        "name": EVIL,
        "revision": 3,
        "attributes": [
            {"name": "headline", "kind": "categorical", "values": [EVIL], "min": None, "max": None}
        ],
        "segment_keys": ["device"],
        "holdout_share": 0.2,
        "catalog_share": 0.4,
        "state": "active",
        "approval": "required",
        "fallback_creative_id": "c-a",
    }
    creatives = {
        c["creative_id"]: c
        for c in (creative("c-a", "live"), creative("c-b", "live"), creative("gen-1", "pending"))
    }
    models = [
        {"campaign_id": "camp", "version": "20261205T0900Z-a", "published_at": NOW},
        {"campaign_id": "camp", "version": "20261205T0910Z-b", "published_at": NOW},
    ]
    view = CampaignView(
        report,
        ctr_series(data),
        12,
        {"optimized": {"n": 10, "expected_ctr": 0.1, "regret_per_impression": 0.02}},
        _segment_effects(data, {"c-a": {"headline": EVIL}, "c-b": {"headline": "B"}}),
    )
    return Snapshot(1_796_000_400_000, {"camp": campaign}, creatives, models, {"camp": view}, 0.2)


def operations() -> Operations:
    return Operations(
        1_796_000_400_000,
        {"inference": {"state": "up", "restarts": 1, "exits": [-9], "gave_up": False, "pid": 42}},
        {"admuse-ingestion": {"admuse.events.raw": 7}},
        {"admuse.events": {0: 1_796_000_399_000, 1: None}},
        {"schema_violation": 2},
        {
            "schema_violation": [
                {
                    "source": "raw[0]@1",
                    "service": "ingestion",
                    "field": "user_id",
                    "message": EVIL,
                    "failed_at": NOW,
                    "value": '{"user_id": "•••"}',
                }
            ]
        },
    )


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(admin_keys=f"{KEY},second-key", model_store_url=f"file://{tmp_path}/store")


@pytest.fixture
def state(settings: Settings) -> ConsoleState:
    st = ConsoleState(settings, SchemaRegistry.load())
    st.snapshot, st.ops = snapshot(), operations()
    return st


@pytest.fixture
async def client(settings: Settings, state: ConsoleState) -> Any:
    app = create_app(settings, state)  # no lifespan: the snapshot stays as set
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as c:
        yield c


def token(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient) -> str:
    """Signs in; returns the session's CSRF token."""
    csrf = token((await client.get("/signin")).text)
    r = await client.post("/signin", data={"csrf": csrf, "key": KEY, "next": "/campaigns"})
    assert r.status_code == 303, r.text
    return csrf
