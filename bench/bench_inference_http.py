"""End-to-end Decide latency over HTTP and gRPC on loopback, at a fixed request rate.

Starts `python -m services.inference` against the broker (its own topic prefix, one campaign
with 2 segments x 8 catalog creatives and stats for each), then drives it from a separate
load-generator process, open loop: request i is due at t0 + i/RATE whatever happened before,
and its latency is measured from that due time (so queueing counts; no coordinated omission).
HTTP uses keep-alive connections with pre-built requests; gRPC one channel with concurrent
calls, started by one pacing thread as futures of the synchronous client (its C core does the
I/O; GRPC_CLIENT=aio uses the asyncio client instead, which costs the 2-core machine more CPU
beside the server and shows it in the tail). Each Decide is a full decision: pseudonymize,
segment, bandit choice, Decision record queued to admuse.decisions.

Baselines, same server, same run: GET /healthz (HTTP) and grpc.health.v1 Check (gRPC) — the
cost of the transport and framework alone. Prints p50/p99 medians over REPEATS runs and the
ratios, and the server's CPU time per request (from /proc, all its threads), which says what
the service costs whatever else the machine is doing.

Run: python bench/bench_inference_http.py  (broker from ADMUSE_KAFKA_BOOTSTRAP_SERVERS,
default 127.0.0.1:9092; RATE, SECONDS, REPEATS, APIS=http,grpc, GRPC_CLIENT=threads|aio from
the environment).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RATE = int(os.environ.get("RATE", "500"))
SECONDS = float(os.environ.get("SECONDS", "5"))
REPEATS = int(os.environ.get("REPEATS", "3"))
APIS = tuple(os.environ.get("APIS", "http,grpc").split(","))
CONNECTIONS = 32
API_KEY = "bench-key"
WARMUP = 300


# -- load generator (runs in its own process) ----------------------------------------------


async def _http_load(
    port: int, path: str, body: bytes | None, n: int, rate: int
) -> tuple[list[float], dict[str, int]]:
    method = "POST" if body is not None else "GET"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n"
    )
    request = head.encode() + (body or b"")
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def one(due: float) -> None:
        reader, writer = await pool.get()
        writer.write(request)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        if b" 200 " in status:
            latencies.append(time.perf_counter() - due)
        else:
            code = status.split(b" ")[1].decode() if b" " in status else "?"
            failures[code] = failures.get(code, 0) + 1
        pool.put_nowait((reader, writer))

    await _open_loop(one, n, rate)
    return latencies, failures


def _decide_requests() -> list:
    """64 gRPC Decide requests over two segments, reused round-robin by the load generators."""
    from services.inference.generated.admuse.v1 import decide_pb2

    return [
        decide_pb2.DecideRequest(
            campaign_id="bench", user_id=f"u{i}", context={"country": "DE" if i % 2 else "FR"}
        )
        for i in range(64)
    ]


async def _grpc_load(port: int, kind: str, n: int, rate: int) -> tuple[list[float], dict[str, int]]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.inference.generated.admuse.v1 import decide_pb2_grpc

    latencies: list[float] = []
    failures: dict[str, int] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        if kind == "decide":
            stub = decide_pb2_grpc.DecideServiceStub(channel)
            md = (("x-api-key", API_KEY),)
            reqs = _decide_requests()

            async def call(i: int) -> None:
                await stub.Decide(reqs[i % 64], metadata=md, timeout=30)
        else:
            health = health_pb2_grpc.HealthStub(channel)
            req = health_pb2.HealthCheckRequest(service="")

            async def call(i: int) -> None:
                await health.Check(req, timeout=30)

        counter = iter(range(n))

        async def one(due: float) -> None:
            try:
                await call(next(counter))
            except grpc.aio.AioRpcError as exc:
                failures[exc.code().name] = failures.get(exc.code().name, 0) + 1
                return
            latencies.append(time.perf_counter() - due)

        await _open_loop(one, n, rate)
    return latencies, failures


def _grpc_load_threads(
    port: int, kind: str, n: int, rate: int
) -> tuple[list[float], dict[str, int]]:
    """gRPC load from the synchronous client: each call is a C-core future started at its due
    time by one pacing thread; completions are timed in their callbacks."""
    import threading

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.inference.generated.admuse.v1 import decide_pb2_grpc

    latencies: list[float] = []
    failures: dict[str, int] = {}
    finished = threading.Semaphore(0)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        if kind == "decide":
            method = decide_pb2_grpc.DecideServiceStub(channel).Decide
            md: tuple[tuple[str, str], ...] | None = (("x-api-key", API_KEY),)
            reqs = _decide_requests()
        else:
            method = health_pb2_grpc.HealthStub(channel).Check
            md = None
            reqs = [health_pb2.HealthCheckRequest(service="")]
        grpc.channel_ready_future(channel).result(timeout=10)

        def done(fut: grpc.Future, due: float) -> None:
            now = time.perf_counter()
            exc = fut.exception()
            if exc is None:
                latencies.append(now - due)
            else:
                code = exc.code().name if isinstance(exc, grpc.Call) else type(exc).__name__
                failures[code] = failures.get(code, 0) + 1
            finished.release()

        start = time.perf_counter() + 0.05
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            fut = method.future(reqs[i % len(reqs)], metadata=md, timeout=30)
            fut.add_done_callback(lambda f, due=due: done(f, due))
        for _ in range(n):
            finished.acquire(timeout=60)
    return latencies, failures


async def _open_loop(one, n: int, rate: int) -> None:
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)


def loadgen_main(spec: dict) -> None:
    """Entry of the load-generator process: prints one JSON list of latencies (seconds)."""
    n = int(spec["n"])
    if spec["api"] == "http":
        body = (
            None
            if spec["kind"] == "baseline"
            else json.dumps(
                {"campaign_id": "bench", "user_id": "u-bench", "context": {"country": "DE"}}
            ).encode()
        )
        path = "/healthz" if spec["kind"] == "baseline" else "/v1/decide"
        lat, failures = asyncio.run(_http_load(spec["port"], path, body, n, spec["rate"]))
    elif os.environ.get("GRPC_CLIENT", "threads") == "threads":
        lat, failures = _grpc_load_threads(spec["port"], spec["kind"], n, spec["rate"])
    else:
        lat, failures = asyncio.run(_grpc_load(spec["port"], spec["kind"], n, spec["rate"]))
    print(json.dumps({"latencies": lat[WARMUP:], "failures": failures}))


# -- orchestration ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seed(kafka, prefix: str) -> None:
    from services.common.codec import SchemaRegistry
    from services.common.kafka import ensure_topics, make_producer
    from services.common.topics import Topics

    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, topics)
    reg = SchemaRegistry.load()
    campaign = {
        "campaign_id": "bench", "name": "bench", "revision": 1,
        "attributes": [{"name": "headline", "kind": "categorical",
                        "values": [f"h{i}" for i in range(8)], "min": None, "max": None},
                       {"name": "background", "kind": "color", "values": [], "min": None,
                        "max": None}],
        "segment_keys": ["country"], "reward": {"kind": "click"},
        "attribution_window_ms": 60_000, "holdout_share": 0.1, "forbidden": [],
        "min_contrast": 4.5, "allow_retire_catalog": False, "max_generated": 4,
        "updated_at": 0,
    }  # fmt: skip
    producer = make_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.campaigns.name, reg.codec("Campaign").encode(campaign), key=b"bench"
        )
        for i in range(8):
            cid = f"bench-c{i}"
            creative = {
                "creative_id": cid,
                "campaign_id": "bench",
                "origin": "catalog",
                "name": cid,
                "attributes": {"headline": f"h{i}", "background": "#ffffff"},
                "status": "live",
                "created_at": 0,
            }
            await producer.send_and_wait(
                topics.creatives.name, reg.codec("Creative").encode(creative), key=cid.encode()
            )
            for seg in ("country=DE", "country=FR", "*"):
                n, clicks = 1000 + 100 * i, 20 + 3 * i
                stats = {
                    "campaign_id": "bench",
                    "segment": seg,
                    "creative_id": cid,
                    "impressions": n,
                    "clicks": clicks,
                    "conversions": 0,
                    "reward_sum": float(clicks),
                    "alpha": 1.0 + clicks,
                    "beta": 1.0 + n - clicks,
                    "updated_at": int(time.time() * 1000),
                }
                await producer.send_and_wait(
                    topics.stats.name,
                    reg.codec("CreativeStats").encode(stats),
                    key=f"bench/{seg}/{cid}".encode(),
                )
    finally:
        await producer.stop()


def _start_service(kafka, prefix: str, workdir: Path) -> tuple[subprocess.Popen, int, int]:
    http_port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
           "ADMUSE_KAFKA_TOPIC_PREFIX": prefix, "ADMUSE_INFERENCE_API_KEYS": API_KEY,
           "ADMUSE_PSEUDONYM_SECRET": "bench", "ADMUSE_INFERENCE_HTTP_HOST": "127.0.0.1",
           "ADMUSE_INFERENCE_HTTP_PORT": str(http_port),
           "ADMUSE_INFERENCE_GRPC_PORT": str(grpc_port),
           "ADMUSE_INFERENCE_SPOOL_DIR": str(workdir / "spool"),
           "ADMUSE_MODEL_STORE_URL": f"file://{workdir / 'store'}",
           "ADMUSE_LOG_FORMAT": "json", "ADMUSE_LOG_LEVEL": "WARNING"}  # fmt: skip
    log = open(workdir / "inference.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.inference"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import urllib.request

    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, http_port, grpc_port
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                "inference did not become ready:\n"
                + (workdir / "inference.log").read_text()[-3000:]
            )
        time.sleep(0.2)


def _cpu_s(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / os.sysconf("SC_CLK_TCK")


def _run_load(api: str, kind: str, port: int) -> tuple[list[float], dict[str, int]]:
    n = int(RATE * SECONDS) + WARMUP
    spec = {"api": api, "kind": kind, "port": port, "n": n, "rate": RATE}
    out = subprocess.run(
        [sys.executable, __file__, "--loadgen", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout)
    return result["latencies"], result["failures"]


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def main() -> None:
    from services.common.settings import KafkaSettings

    kafka = KafkaSettings()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    asyncio.run(_seed(kafka.model_copy(update={"topic_prefix": prefix}), prefix))
    with tempfile.TemporaryDirectory() as tmp:
        proc, http_port, grpc_port = _start_service(kafka, prefix, Path(tmp))
        try:
            results: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
            n = int(RATE * SECONDS) + WARMUP
            failures: dict[tuple[str, str, str], int] = {}
            for _ in range(REPEATS):
                for api, port in (("http", http_port), ("grpc", grpc_port)):
                    if api not in APIS:
                        continue
                    for kind in ("baseline", "decide"):
                        cpu0 = _cpu_s(proc.pid)
                        lat, failed = _run_load(api, kind, port)
                        for code, count in failed.items():
                            failures[(api, kind, code)] = failures.get((api, kind, code), 0) + count
                        cpu_us = (_cpu_s(proc.pid) - cpu0) / n * 1e6
                        results.setdefault((api, kind), []).append(
                            (_pct(lat, 0.5), _pct(lat, 0.99), cpu_us)
                        )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(
        f"rate {RATE} req/s, {SECONDS:.0f} s per run (+{WARMUP} warm-up requests), "
        f"medians over {REPEATS} runs, latency from due time (ms), gRPC client "
        f"{os.environ.get('GRPC_CLIENT', 'threads')}"
    )
    for api in APIS:
        base = results[(api, "baseline")]
        dec = results[(api, "decide")]
        b50, b99, bcpu = (statistics.median(x[i] for x in base) for i in (0, 1, 2))
        d50, d99, dcpu = (statistics.median(x[i] for x in dec) for i in (0, 1, 2))
        label = "GET /healthz" if api == "http" else "health Check"
        print(
            f"{api:4}  baseline {label:13} p50 {b50:7.2f}  p99 {b99:7.2f}   "
            f"server CPU {bcpu:5.0f} us/req"
        )
        print(
            f"{api:4}  decide                 p50 {d50:7.2f}  p99 {d99:7.2f}   "
            f"server CPU {dcpu:5.0f} us/req   ratio p50 {d50 / b50:4.2f}x  "
            f"p99 {d99 / b99:4.2f}x  CPU {dcpu / bcpu:4.2f}x"
        )
        print(f"      per-run decide p99: {', '.join(f'{x[1]:.2f}' for x in dec)}")
    total = sum(failures.values())
    print(f"failed requests: {total}" + (f" {failures}" if total else " (all answered 200/OK)"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--loadgen":
        loadgen_main(json.loads(sys.argv[2]))
    else:
        main()
