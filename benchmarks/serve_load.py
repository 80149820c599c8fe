"""The web server under load, on loopback only: `avemotion serve` with an effnet_lstm checkpoint
(random weights at 224x224; speed does not depend on the weights' values) takes 64 concurrent uploads
of the real bundled clips, then 200 sequential ones. Prints the answers by status, throughput,
p50/p95 latency and the server's peak RSS, and checks that the server is still alive and answering
/health and that no request got a 5xx other than 503. Bounded: every request times out after 120 s.

    python benchmarks/serve_load.py [--concurrent 64] [--sequential 200] [--concurrency 0] [--queue 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from avemotion.samples import sample_videos

from harness import peak_rss_mb, random_checkpoint, served

TIMEOUT_S = 120


def upload(url: str, video: Path) -> tuple[int, float]:
    """One upload: its status (0 when no answer came) and its latency in seconds."""
    started = time.perf_counter()
    try:
        response = httpx.post(f"{url}/predict", files={"file": (video.name, video.read_bytes())},
                              timeout=TIMEOUT_S)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    return status, time.perf_counter() - started


def summarise(results: list[tuple[int, float]], seconds: float) -> dict:
    """Answers by status; throughput and latency of the successful ones."""
    latencies = [latency for status, latency in results if status == 200]
    return {
        "requests": len(results),
        "status": dict(sorted(Counter(str(status) for status, _ in results).items())),
        "seconds": seconds,
        "answered_per_second": len(latencies) / seconds,
        "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "p95_s": float(np.percentile(latencies, 95)) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrent", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=0, help="the server's --concurrency")
    parser.add_argument("--queue", type=int, default=16, help="the server's --queue")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    videos = sample_videos()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_checkpoint(Path(tmp) / "model.ckpt")
        options = ("--concurrency", str(args.concurrency), "--queue", str(args.queue))
        with served(checkpoint, *options) as (url, server):
            upload(url, videos[0])  # warm-up
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrent) as pool:
                burst = list(pool.map(lambda i: upload(url, videos[i % len(videos)]), range(args.concurrent)))
            figures = {"burst": summarise(burst, time.perf_counter() - started)}
            started = time.perf_counter()
            steady = [upload(url, videos[i % len(videos)]) for i in range(args.sequential)]
            figures["sequential"] = summarise(steady, time.perf_counter() - started)
            health = httpx.get(f"{url}/health", timeout=10)
            figures["alive_after"] = server.poll() is None and health.status_code == 200
            figures["server_peak_rss_mb"] = peak_rss_mb(server.pid)
    errors = sum(status == 0 or (status >= 500 and status != 503) for status, _ in burst + steady)
    figures["unexpected_errors"] = errors
    for phase in ("burst", "sequential"):
        f = figures[phase]
        print(f"{phase:<10} {f['requests']} requests in {f['seconds']:.1f} s: statuses {f['status']}, "
              f"{f['answered_per_second']:.2f} answered/s, p50 {f['p50_s']:.2f} s, p95 {f['p95_s']:.2f} s")
    print(f"server peak RSS {figures['server_peak_rss_mb']:.0f} MB; alive and answering /health "
          f"afterwards: {figures['alive_after']}; 5xx other than 503, or no answer: {errors}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
