"""Preprocessing speed and memory: our engine against a naive reference, side by side in one run.

The corpus is the bundled real clips copied under new CREMA-D names (default 300 clips), laid out
as the original release: VideoFlash/*.flv and AudioWAV/*.wav (16 kHz, as CREMA-D ships them). Each
contender runs in a fresh child process so its peak RSS is its own (itself and its workers):

  engine:  `avemotion.media.preprocess`, default workers (all cores), one sequential decode per clip,
           audio from the WAV files;
  engine, own track: the same with the audio decoded from each .flv's own MP3 track;
  naive:   one process that seeks each of the 8 frames with OpenCV and loads the WAV with librosa
           at 16 kHz (librosa cannot open .flv without a system ffmpeg).

    python benchmarks/preprocess.py [--clips 300] [--workers N]
    python benchmarks/preprocess.py --corpus SYNTH_DIR --naive-clips 744   # e.g. `avemotion synth`
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from avemotion.datasets.cremad import EMOTIONS, STATEMENTS
from avemotion.samples import sample_videos


def build_corpus(folder: Path, clips: int) -> Path:
    """Copy the six sample clips (and a 16 kHz WAV of each) under new names until `clips` exist."""
    import soundfile

    from avemotion.media.features import load_audio

    videos = sample_videos()
    (folder / "VideoFlash").mkdir(parents=True, exist_ok=True)
    (folder / "AudioWAV").mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        source = videos[i % len(videos)]
        actor, statement = 2001 + i // (len(STATEMENTS) * len(EMOTIONS)), STATEMENTS[(i // 6) % 12]
        name = f"{actor}_{statement}_{source.stem.split('_')[2]}_XX"
        shutil.copy(source, folder / "VideoFlash" / f"{name}.flv")
        soundfile.write(folder / "AudioWAV" / f"{name}.wav", load_audio(source), 16_000, subtype="PCM_16")
    return folder


def run_engine(metadata: str, cache: str, workers: int | None) -> dict:
    from avemotion.datasets.index import read_metadata
    from avemotion.media.preprocess import preprocess

    table = read_metadata(metadata)
    started = time.perf_counter()
    report = preprocess(table, cache, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    assert report.done == len(table) and not report.failures, report.summary()
    return {"clips": len(table), "seconds": seconds}


def run_naive(metadata: str, clips: str = "0") -> dict:
    import cv2
    import librosa
    import numpy as np

    from avemotion.datasets.index import read_metadata

    table = read_metadata(metadata)
    table = table.head(int(clips)) if int(clips) else table
    started = time.perf_counter()
    for path, audio_path in zip(table["video_path"], table["audio_path"]):
        capture = cv2.VideoCapture(path)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for position in np.linspace(0, count - 1, 8).round().astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(position))
            ok, frame = capture.read()
            if ok:
                frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (224, 224)))
        capture.release()
        waveform, _ = librosa.load(audio_path, sr=16_000, mono=True)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(
            y=waveform, sr=16_000, n_fft=1024, hop_length=256, n_mels=64))
        cv2.resize(mel, (128, 64))
    return {"clips": len(table), "seconds": time.perf_counter() - started}


def measure(contender: str, *args: str) -> dict:
    """Run one contender in a child process; return its timing and peak RSS (itself + its workers)."""
    command = [sys.executable, __file__, "--child", contender, *args]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(contender: str, args: list[str]) -> None:
    result = run_engine(args[0], args[1], int(args[2]) or None) if contender == "engine" else run_naive(*args)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mb"] = max(own, workers) / 1024  # ru_maxrss is in KiB on Linux
    result["parent_rss_mb"], result["largest_worker_rss_mb"] = own / 1024, workers / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--workers", type=int, default=0, help="0: the engine's default (all cores)")
    parser.add_argument("--corpus", type=Path, help="an existing folder of clips (with AudioWAV) "
                        "instead of copies of the samples")
    parser.add_argument("--naive-clips", type=int, default=0,
                        help="run the naive reference on only the first N clips (0: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = args.corpus or build_corpus(tmp / "clips", args.clips)
        metadata = tmp / "metadata.csv"
        subprocess.run([sys.executable, "-m", "avemotion", "index", str(corpus), "-o", str(metadata)],
                       check=True, capture_output=True)
        own_track = tmp / "metadata_own_track.csv"
        pd.read_csv(metadata).drop(columns="audio_path").to_csv(own_track, index=False)
        engine = measure("engine", str(metadata), str(tmp / "cache"), str(args.workers))
        engine_own = measure("engine", str(own_track), str(tmp / "cache_own"), str(args.workers))
        naive = measure("naive", str(metadata), str(args.naive_clips))
    workers = args.workers or os.cpu_count()
    source = f"from {args.corpus}" if args.corpus else "(bundled samples under new names)"
    print(f"machine: {os.cpu_count()} cores; {engine['clips']} clips {source}")
    print(f"{'contender':<32}{'clips/s':>10}{'peak RSS MB':>14}")
    rows = [(f"engine ({workers} workers)", engine), (f"engine, own track ({workers} workers)", engine_own),
            ("naive reference (1 process)", naive)]
    for name, result in rows:
        print(f"{name:<32}{result['clips'] / result['seconds']:>10.1f}{result['peak_rss_mb']:>14.0f}")
    speedup = (engine["clips"] / engine["seconds"]) / (naive["clips"] / naive["seconds"])
    print(f"engine / naive: {speedup:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"workers": workers, "engine": engine, "engine_own_track": engine_own,
                                         "naive": naive, "speedup": speedup}, indent=2))


if __name__ == "__main__":
    main()
