"""Prediction latency of effnet_lstm on this CPU: checkpoint load time, and per-clip end-to-end
latency (decode + features + network) with PyTorch and with ONNX Runtime, median over the six
bundled clips, one clip at a time. Random weights at full size (224x224): speed does not depend on
the weights' values.

    python benchmarks/predict.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from avemotion.runtime.predict import load
from avemotion.samples import sample_videos
from avemotion.training.export import export_onnx

from harness import random_checkpoint


def median_latency(classifier, repeats: int) -> float:
    """Median seconds to predict one clip, over every sample clip and `repeats` rounds."""
    classifier.predict(sample_videos()[0])  # warm-up
    timings = []
    for _ in range(repeats):
        for video in sample_videos():
            started = time.perf_counter()
            result = classifier.predict(video)
            timings.append(time.perf_counter() - started)
            assert result.ok, result.error
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_checkpoint(Path(tmp) / "model.ckpt")
        onnx_path = export_onnx(checkpoint, Path(tmp) / "model.onnx")
        started = time.perf_counter()
        classifier = load(checkpoint)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        onnx_classifier = load(checkpoint, onnx=onnx_path)
        onnx_load_seconds = time.perf_counter() - started
        torch_latency = median_latency(classifier, args.repeats)
        onnx_latency = median_latency(onnx_classifier, args.repeats)
    print(f"machine: {os.cpu_count()} cores, {args.threads} torch threads; effnet_lstm, 224x224, "
          "clips of ~2.3 s (480x360 VP6 + MP3)")
    print(f"checkpoint load:                 {load_seconds:.2f} s (PyTorch), "
          f"{onnx_load_seconds:.2f} s (with the ONNX Runtime session)")
    print(f"per clip, end to end, PyTorch:   {torch_latency:.3f} s")
    print(f"per clip, end to end, ONNX RT:   {onnx_latency:.3f} s")
    print(f"PyTorch / ONNX Runtime:          {torch_latency / onnx_latency:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"load_s": load_seconds, "onnx_load_s": onnx_load_seconds,
                                         "torch_latency_s": torch_latency,
                                         "onnx_latency_s": onnx_latency}, indent=2))


if __name__ == "__main__":
    main()
