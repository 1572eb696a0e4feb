"""What `admuse demo` shows while it runs, and how it starts the services."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from services.cli.demo_view import live_view, status_line
from services.cli.stack import Stack
from services.common.settings import KafkaSettings
from services.simulator.player import LiveStats
from services.simulator.watch import CreativeWatch


def test_live_view_shows_arms_models_and_creatives() -> None:
    stats = LiveStats()
    for arm, n, clicks in (("control", 300, 21), ("optimized", 700, 140)):
        a = stats.arm(arm)
        a.impressions, a.clicks = n, clicks
        a.expected_reward, a.oracle_reward = n * 0.1, n * 0.3
    stats.requests, stats.generated_served = 1000, 42
    stats.latencies_ms.extend([3.0, 4.0, 5.0])
    watch = CreativeWatch(KafkaSettings(), "c1")
    now = datetime.now(UTC)
    for cid, origin, status in (
        ("h1", "catalog", "live"),
        ("g1", "generated", "live"),
        ("g2", "generated", "retired"),
        ("x", "catalog", "live"),
    ):
        watch.on_creative(
            {
                "creative_id": cid,
                "campaign_id": "c1" if cid != "x" else "other",
                "origin": origin,
                "status": status,
                "created_at": now,
            }
        )
    watch.models.append({"version": "20261127T101500Z-3f2a"})
    supervisor = SimpleNamespace(
        status=lambda: {
            "inference": {"state": "up", "restarts": 0},
            "trainer": {"state": "DOWN (restarting)", "restarts": 2},
        },
        line=lambda: "inference up, trainer DOWN",
    )
    stats.events_sent, stats.events_unsent = 900, 7
    console = Console(record=True, width=140)
    console.print(live_view(SimpleNamespace(stats=stats), watch, supervisor, 180))
    text = console.export_text()
    assert "optimized" in text and "20.00%" in text and "7.00%" in text
    assert "models published: 1 (latest 20261127T101500Z-3f2a)" in text
    assert "1 catalog live, 2 generated admitted (1 live), 1 retired" in text
    assert "generated impressions 42" in text
    assert "inference up" in text and "trainer DOWN (restarting) (2 restarts)" in text
    assert "events sent 900, not sent 7" in text
    assert "CTR" in text and "engagement" not in text
    engagement = {"rate": "engagement", "outcomes": "engaged"}
    console = Console(record=True, width=140)
    console.print(live_view(SimpleNamespace(stats=stats), watch, supervisor, 180, engagement))
    listened = console.export_text()
    assert "engagement" in listened and "engaged" in listened and "CTR" not in listened
    line = status_line(stats, watch, 180, supervisor, engagement)
    assert "control 300 imp 7.0% engagement" in line and "CTR" not in line


def test_stack_gives_each_service_its_ports_secrets_and_run_folders(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "127.0.0.1:9092", "demo-x.", {"ADMUSE_LOG_LEVEL": "DEBUG"})
    inference, ingestion = stack.env_for("inference"), stack.env_for("ingestion")
    assert inference["ADMUSE_INFERENCE_API_KEYS"] == stack.api_key
    assert inference["ADMUSE_INFERENCE_HTTP_PORT"] == str(stack.inference_port)
    assert inference["ADMUSE_PSEUDONYM_SECRET"] == ingestion["ADMUSE_PSEUDONYM_SECRET"]
    assert len(stack.pseudonym_secret) >= 32
    assert stack.env_for("features")["ADMUSE_FEATURES_STATE_DIR"].startswith(str(tmp_path))
    for name in ("ingestion", "features", "trainer", "inference"):
        env = stack.env_for(name)
        assert env["ADMUSE_KAFKA_TOPIC_PREFIX"] == "demo-x."
        assert env["ADMUSE_MODEL_STORE_URL"] == f"file://{tmp_path.resolve()}/model-store"
        assert env["ADMUSE_LOG_LEVEL"] == "DEBUG"
    assert Stack(tmp_path, "b", "p.").api_key != stack.api_key
    from services.common.signing import Signer

    signer = Signer(stack.env_for("trainer")["ADMUSE_TRAINER_SIGNING_KEY"])
    assert inference["ADMUSE_INFERENCE_TRUSTED_KEYS"] == signer.public_text()
    assert "ADMUSE_TRAINER_SIGNING_KEY" not in inference | ingestion


def test_stack_sets_only_variables_the_services_read(tmp_path: Path) -> None:
    import importlib

    from services.common.settings import env_vars

    stack = Stack(tmp_path, "127.0.0.1:9092", "demo-x.")
    for name in ("ingestion", "features", "trainer", "inference"):
        settings = importlib.import_module(f"services.{name}.settings").Settings
        known = env_vars(settings)
        ours = {
            k
            for k in stack.env_for(name)
            if k.startswith(f"ADMUSE_{name.upper()}_") and k not in os.environ
        }
        assert ours <= known, f"{name} does not read {sorted(ours - known)}"
