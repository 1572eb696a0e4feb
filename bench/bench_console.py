"""First paint of the console's pages on the demo's data (#17), in Debian's chromium.

Starts `admuse demo --keep` (the demo scenario, BUDGET seconds of traffic; broker on
ADMUSE_KAFKA_BOOTSTRAP_SERVERS, started by the demo if none answers), waits until the traffic
is done and the console stays up, signs in, then loads each page LOADS times in a fresh tab and
reads `first-contentful-paint` from the Performance API. Baseline, same run and browser: a
static page of the console with its stylesheet (/static/baseline.html). Prints the medians,
the ratio to the baseline and the load average; Ctrl-C's the demo at the end.

Run: ADMUSE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python bench/bench_console.py
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

BUDGET = os.environ.get("BUDGET", "90")
LOADS = int(os.environ.get("LOADS", "7"))
CAMPAIGN = "demo-spring"
FCP = """() => new Promise(done => {
  const seen = performance.getEntriesByName('first-contentful-paint');
  if (seen.length) return done(seen[0].startTime);
  new PerformanceObserver(list => done(list.getEntries()[0].startTime))
    .observe({type: 'paint', buffered: true});
})"""


def first_paint(page: Page, url: str) -> float:
    page.goto(url, wait_until="load")
    return float(page.evaluate(FCP))


def main() -> None:
    run = Path(tempfile.mkdtemp(prefix="bench-console-"))
    cmd = [sys.executable, "-c", "from services.cli import app; app()", "demo", "--keep"]
    cmd += ["--budget", BUDGET, "--run-dir", str(run), "--no-live"]
    log = (run / "demo.out").open("w")
    demo = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while "the console stays up" not in (run / "demo.out").read_text():
            if demo.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((run / "demo.out").read_text()[-3000:])
            time.sleep(1)
        access = dict(line.split("=", 1) for line in (run / "console.env").read_text().splitlines())
        url = f"http://127.0.0.1:{access['ADMUSE_CONSOLE_HTTP_PORT']}"
        pages = {
            "baseline (static page)": "/static/baseline.html",
            "campaigns": "/campaigns",
            "campaign": f"/campaigns/{CAMPAIGN}",
            "experiment": f"/experiment/{CAMPAIGN}",
            "creatives": f"/creatives?campaign={CAMPAIGN}",
            "models": "/models",
            "operations": "/operations",
        }
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--no-sandbox"],
            )
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{url}/signin")
            page.fill("input[name=key]", access["ADMUSE_CONSOLE_ADMIN_KEYS"])
            page.click("main button[type=submit]")
            page.wait_for_url(f"{url}/campaigns")
            page.close()
            medians = {}
            for name, path in pages.items():
                times = []
                for _ in range(LOADS):
                    tab = context.new_page()
                    times.append(first_paint(tab, url + path))
                    tab.close()
                medians[name] = statistics.median(times)
            browser.close()
        base = medians["baseline (static page)"]
        load = os.getloadavg()
        print(f"first-contentful-paint, median of {LOADS} loads, demo data ({BUDGET}s traffic)")
        for name, ms in medians.items():
            print(f"  {name:24s} {ms:7.1f} ms   x{ms / base:5.2f} of baseline")
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
        worst = max(v for k, v in medians.items() if not k.startswith("baseline"))
        print(f"slowest page {worst:.0f} ms: {'under' if worst < 1000 else 'OVER'} 1 s")
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(180)
        log.close()


if __name__ == "__main__":
    main()
