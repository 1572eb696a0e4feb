"""How long Decide is away when inference restarts: spawn → HTTP up → ready → first Decide.

The suite's own broker holds a synthetic campaign, eight catalog creatives and one model
(`admuse train` on 3,000 synthetic rewards). Then inference is started, killed (SIGKILL) and
started again `--runs` times per variant, alternating: the baseline is this tree at
`--baseline-rev` (default: main; `git archive`, run with the same virtual environment), the
candidate is the working tree. Per start it records, from the spawn, when the HTTP port first
answers, when /readyz turns 200 and when the first Decide answers 200, the CPU seconds the
process used until then (what a loaded machine inflates least), plus the phases inference
logs. The supervisor's first-restart delay comes on top (services/cli/supervise.py). Median
per variant and the ratio go to stdout and `<run>/restart.json`.

    .venv/bin/python bench/bench_inference_restart.py --port 29294 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.chaos.faults import Broker  # noqa: E402
from services.cli.stack import Stack, warm_up_coordinators  # noqa: E402
from services.common.codec import SchemaRegistry  # noqa: E402
from services.common.kafka import ensure_topics, make_producer, wait_for_broker  # noqa: E402
from services.common.settings import KafkaSettings  # noqa: E402
from services.common.topics import Topics  # noqa: E402
from services.trainer.synthetic import (  # noqa: E402
    synthetic_campaign,
    synthetic_catalog,
    synthetic_rewards,
)


async def _produce(
    kafka: KafkaSettings, topic: str, record: str, rows: list[dict], key: str
) -> None:
    codec = SchemaRegistry.load().codec(record)
    producer = make_producer(kafka)
    await producer.start()
    try:
        for row in rows:
            await producer.send(topic, codec.encode(row), key=str(row[key]).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _seed(stack: Stack, kafka: KafkaSettings) -> None:
    topics = Topics.from_settings(kafka)
    await wait_for_broker(kafka, 60)
    await ensure_topics(kafka, topics)
    await warm_up_coordinators(kafka)
    now_ms = int(time.time() * 1000)
    catalog = synthetic_catalog(n=8, created_at_ms=now_ms)
    await _produce(
        kafka, topics.campaigns.name, "Campaign", [synthetic_campaign(updated_at_ms=now_ms)],
        "campaign_id",
    )  # fmt: skip
    await _produce(kafka, topics.creatives.name, "Creative", catalog, "creative_id")
    rewards = synthetic_rewards(catalog, 3000, start_ms=now_ms - 600_000, step_ms=100)
    await _produce(kafka, topics.rewards.name, "Reward", rewards, "decision_id")
    env = {**stack.env_for("trainer"), "ADMUSE_TRAINER_GATE_MIN_CONDITION_MARGIN": "-1"}
    cli = [sys.executable, "-c", "from services.cli import app; app()", "train"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*cli, "--campaign", "spring", "--steps", "30"],
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"admuse train failed:\n{done.stdout.decode()}{done.stderr.decode()}")


def _baseline_tree(rev: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    generated = "services/inference/generated"  # make proto's output, not in git
    shutil.copytree(ROOT / generated, into / generated, dirs_exist_ok=True)
    return into


def _phases(log: Path, t0: float) -> dict[str, float]:
    """Seconds from the spawn to each logged start-up step (first occurrence)."""
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        event, ts = rec.get("event"), rec.get("timestamp")
        if not event or not ts or event in out:
            continue
        at = time.mktime(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        out[event] = round(at + float("0" + ts[19:].rstrip("Z")[:4]) - t0, 2)
    return out


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process used so far: what a loaded machine does not
    inflate the way it inflates wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one_start(tree: Path, env: dict[str, str], url: str, log: Path) -> dict[str, Any]:
    body = {"campaign_id": "spring", "user_id": "bench", "context": {"country": "DE"}}
    headers = {"X-API-Key": env["ADMUSE_INFERENCE_API_KEYS"]}
    with log.open("w") as out:
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.inference"],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        marks: dict[str, float] = {}
        try:
            with httpx.Client(timeout=2.0) as client:
                while "decide" not in marks and time.time() - t0 < 120:
                    try:
                        ready = client.get(f"{url}/readyz")
                    except httpx.HTTPError:
                        time.sleep(0.02)
                        continue
                    marks.setdefault("http", time.time() - t0)
                    if ready.status_code == 200:
                        marks.setdefault("ready", time.time() - t0)
                        got = client.post(f"{url}/v1/decide", json=body, headers=headers)
                        if got.status_code == 200:
                            marks["decide"] = time.time() - t0
                            marks["cpu"] = _cpu_s(proc.pid)
                    time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # as the fault suite kills it
            proc.wait()
    return {**{k: round(v, 2) for k, v in marks.items()}, "phases": _phases(log, t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=29294)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-rev", default="main")
    ap.add_argument("--run-dir", type=Path, default=None)
    args = ap.parse_args()
    run = args.run_dir or Path(tempfile.mkdtemp(prefix="bench-restart-"))
    broker = Broker(args.port, run / "kafka")
    stack = Stack(run, broker.bootstrap, f"bench{int(time.time())}.")
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, topic_prefix=stack.topic_prefix)
    asyncio.run(broker.up())
    try:
        asyncio.run(_seed(stack, kafka))
        trees = {"baseline": _baseline_tree(args.baseline_rev, run / "baseline"), "new": ROOT}
        # as the fault suite runs it: Decide answers once its Decision is acknowledged
        env = {**stack.env_for("inference"), "ADMUSE_INFERENCE_DECISION_ACK": "true"}
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
        for i in range(args.runs):
            for name, tree in trees.items():
                r = _one_start(tree, env, stack.decide_url, run / f"{name}-{i}.log")
                results[name].append(r)
                print(name, i, r, flush=True)
    finally:
        asyncio.run(broker.down())
    summary: dict[str, Any] = {"load_average": os.getloadavg(), "runs": results}
    for name, rows in results.items():
        summary[name] = {
            k: statistics.median(r[k] for r in rows if k in r)
            for k in ("http", "ready", "decide", "cpu")
        }
    for k in ("decide", "cpu"):
        summary[f"ratio_{k}"] = round(summary["new"][k] / summary["baseline"][k], 2)
    (run / "restart.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    print(f"details: {run / 'restart.json'}")


if __name__ == "__main__":
    main()
