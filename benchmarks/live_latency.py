"""Camera-mode latency: from the end of a captured window to its label on the page, in headless
Chromium whose fake camera and microphone play a bundled real clip, against `avemotion serve` on
loopback. Prints the median and 95th percentile over the updates the page shows (the same number
the page displays), and the server's share of it.

    python benchmarks/live_latency.py MODEL [--updates 30] [--screenshot live.png]

MODEL is a checkpoint or an exported model, for example the demo's
demo-output/runs/resnet18_vit_lstm/model.ckpt. Needs Debian's chromium (/usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from avemotion.samples import sample_videos

from harness import fake_camera, headless_chromium, served


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        camera = fake_camera(sample_videos()[0], Path(tmp))
        latencies, server_ms = [], []
        with served(args.model) as (url, _), sync_playwright() as playwright:
            browser = headless_chromium(playwright, *camera)
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            page.goto(f"{url}/")
            page.click("#camera")
            for update in range(1, args.updates + 1):
                page.wait_for_function(
                    f"Number(document.getElementById('live').dataset.updates || 0) >= {update}",
                    timeout=60_000)
                latencies.append(int(page.get_attribute("#latency", "data-ms")))
                server_ms.append(float(page.inner_text("#latency").split("server ")[1].split(" ms")[0]))
            if args.screenshot:
                page.screenshot(path=str(args.screenshot), full_page=True)
            browser.close()
    figures = {"updates": len(latencies), "median_ms": float(np.median(latencies)),
               "p95_ms": float(np.percentile(latencies, 95)), "server_median_ms": float(np.median(server_ms))}
    print(f"{args.model}: {len(latencies)} updates, latency from the end of a captured window to its label: "
          f"median {figures['median_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms "
          f"(server median {figures['server_median_ms']:.0f} ms)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
