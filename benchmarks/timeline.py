"""Timeline speed on a long real video, side by side with the naive way, and the timeline page's picture.

The video is the six bundled real clips one after another, looped to about a minute (the true
emotion changes every ~2.3 s). `effnet_lstm` at 224x224 with random weights (speed does not depend
on the weights' values) makes its timeline with `avemotion timeline`'s engine, and then the naive
way: each window cut out as a clip (decoded and encoded again) and given to `predict`. Both print
their real-time factor (processing seconds / video seconds).

With --demo DIR (a folder written by `avemotion demo`), the demo's fused model then makes the
timeline of a long SYNTHETIC video: its held-out test actors' clips one after another. The share of
windows whose top label is the emotion of the clip at the window's centre is printed, and the
picture drawn: windows following what is on screen, on drawn faces, not a measure of recognition.

    python benchmarks/timeline.py [--seconds 60] [--threads 2] [--demo demo-output --picture docs/timeline.png]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch

from avemotion.datasets.synth import concatenate_clips, write_media
from avemotion.media.features import load_audio
from avemotion.runtime.predict import load
from avemotion.runtime.timeline import plot_timeline
from avemotion.samples import sample_videos

from harness import random_checkpoint

WINDOW, HOP = 2.5, 0.5


def demo_timeline(demo: Path, work: Path, seconds: float, picture: Path | None) -> float:
    """The demo's fused model on its test actors' synthetic clips in a row; the share of windows whose
    top label is the emotion of the clip at the window's centre."""
    run = demo / "runs" / "resnet18_vit_lstm"
    split = pd.read_csv(run / "split.csv").query("split == 'test'")
    clips = [demo / "synthetic-corpus" / "VideoFlash" / f"{clip}.flv" for clip in split["clip"]]
    clips = [clips[i] for i in np.random.default_rng(0).permutation(len(clips))]  # emotions shuffled
    video = work / "synthetic-long.mp4"
    pieces = concatenate_clips(clips, video, seconds, size=(160, 120))
    table = load(run / "model.ckpt").timeline(video, hop=HOP)
    centres = (table["start_s"] + table["end_s"]) / 2
    truth = [next(source.stem.split("_")[2] for start, end, source in pieces if start <= t < end)
             for t in centres]
    if picture:
        picture.parent.mkdir(parents=True, exist_ok=True)
        plot_timeline(table, picture, title=f"{pieces[-1][1]:.0f} s of SYNTHETIC clips of held-out actors, "
                      f"by the demo's {run.name} (top label = the clip's emotion in "
                      f"{np.mean(table['label'].to_numpy() == np.array(truth)):.0%} of windows)")
    return float(np.mean(table["label"].to_numpy() == np.array(truth)))


def naive_timeline(classifier, video: Path, duration: float, work: Path) -> int:
    """Each window cut out as its own clip (decoded, encoded again) and predicted; the windows done."""
    audio = load_audio(video)
    windows = int((duration - WINDOW) // HOP) + 1
    for index in range(windows):
        start = index * HOP
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            frames = []
            for frame in container.decode(stream):
                if frame.time >= start + WINDOW - 1e-6:
                    break
                if frame.time >= start - 1e-6:
                    frames.append(frame.to_ndarray(format="rgb24"))
        stretch = audio[round(start * 16_000) : round((start + WINDOW) * 16_000)]
        clip = write_media(work / f"window-{index}.mp4", frames, fps=30, audio=stretch)
        result = classifier.predict(clip)
        assert result.ok, result.error
        clip.unlink()
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--demo", type=Path, help="a folder written by `avemotion demo`")
    parser.add_argument("--picture", type=Path, help="with --demo: write its timeline picture here")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "long.mp4"
        pieces = concatenate_clips(sample_videos(), video, args.seconds)
        duration = pieces[-1][1]
        classifier = load(random_checkpoint(work / "random.ckpt"))
        classifier.timeline(sample_videos()[0], window=WINDOW, hop=HOP)  # warm-up
        started = time.perf_counter()
        table = classifier.timeline(video, window=WINDOW, hop=HOP)
        engine = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        windows = naive_timeline(classifier, video, duration, work)
        naive = time.perf_counter() - started
        figures = {"video_s": duration, "windows": len(table), "engine_s": engine, "naive_s": naive,
                   "engine_rtf": engine / duration, "naive_rtf": naive / duration, "speedup": naive / engine,
                   "peak_rss_mb": peak_mb}
        assert windows == len(table)
        print(f"{duration:.1f} s video, {len(table)} windows of {WINDOW} s every {HOP} s, effnet_lstm 224x224, "
              f"{args.threads} threads")
        print(f"timeline engine: {engine:.1f} s, real-time factor {engine / duration:.3f}, "
              f"peak RSS {peak_mb:.0f} MB")
        print(f"naive (cut each window, predict it): {naive:.1f} s, real-time factor {naive / duration:.3f}")
        print(f"engine / naive: {naive / engine:.1f}x faster")
        if args.demo:
            figures["demo_agreement"] = demo_timeline(args.demo, work, args.seconds, args.picture)
            print(f"the demo's model on its held-out actors' synthetic clips: top label = the clip's "
                  f"emotion at the window centre in {figures['demo_agreement']:.0%} of windows")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
