"""The runtime of a model with a pretrained speech encoder (whisper_base_audio_only, say), side by
side from its checkpoint (PyTorch) and its ONNX export (no PyTorch: the head in ONNX Runtime, Whisper
in CTranslate2):

- cold `avemotion predict MODEL CLIP`: a new process each time, wall seconds and peak RSS, median
  of --repeats runs;
- the timeline's real-time factor (processing seconds / video seconds) on the timeline benchmark's
  long video (the six bundled clips looped to --seconds).

    python benchmarks/speech_runtime.py RUN/model.ckpt --weights WHISPER_DIR [--clip CLIP] [--seconds 60]

RUN is a run of `avemotion train` or of benchmarks/real_speech.py (its fold-1 run, for example);
CLIP defaults to the first bundled clip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from avemotion.datasets.synth import concatenate_clips
from avemotion.runtime.predict import load
from avemotion.samples import sample_videos
from avemotion.training.export import export_onnx

from harness import run_measured


def cold_predict(model: Path, clip: Path, weights: Path, repeats: int) -> dict:
    """Median wall seconds and peak RSS (MB) of `avemotion predict MODEL CLIP` in a new process."""
    command = [sys.executable, "-m", "avemotion.cli", "predict", str(model), str(clip), "--weights", str(weights)]
    runs = [run_measured(command) for _ in range(repeats)]
    failed = [run for run in runs if run.returncode]
    if failed:
        raise SystemExit(f"avemotion predict failed: {failed[0].last_line}")
    return {"seconds": statistics.median(run.seconds for run in runs),
            "peak_rss_mb": statistics.median(run.peak_rss_mb for run in runs)}


def timeline_speed(model: Path, weights: Path, video: Path, video_seconds: float) -> float:
    """The real-time factor of the model's timeline of the video (loading excluded)."""
    classifier = load(model, weights=weights)
    started = time.perf_counter()
    classifier.timeline(video, hop=0.5)
    return (time.perf_counter() - started) / video_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--weights", type=Path, required=True, help="the speech encoder's local folder")
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    clip = args.clip or sample_videos()[0]
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = export_onnx(args.checkpoint, Path(tmp) / "model.onnx")
        video = Path(tmp) / "long.mp4"
        pieces = concatenate_clips(sample_videos(), video, args.seconds)
        for kind, model in (("checkpoint", args.checkpoint), ("onnx", onnx_model)):
            figures[kind] = {**cold_predict(model, clip, args.weights, args.repeats),
                             "timeline_rtf": timeline_speed(model, args.weights, video, pieces[-1][1])}
    print(f"machine: {os.cpu_count()} cores; {args.checkpoint}; clip {clip.name}; "
          f"timeline of {pieces[-1][1]:.0f} s, hop 0.5 s")
    for kind, row in figures.items():
        print(f"{kind:<11} cold predict {row['seconds']:.2f} s, peak RSS {row['peak_rss_mb']:.0f} MB; "
              f"timeline real-time factor {row['timeline_rtf']:.3f}")
    print(f"checkpoint / ONNX cold predict: {figures['checkpoint']['seconds'] / figures['onnx']['seconds']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
