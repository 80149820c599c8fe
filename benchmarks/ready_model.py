"""The ready model's honest numbers: each part on whole corpora it was not fitted on, the whole on the
bundled clips, and what judging costs.

    pip install -e '.[train,speech,bench]'
    python benchmarks/ready_model.py --whisper WHISPER_DIR [--fer2013 FER2013_DIR] [--faces-json FACES_JSON]
        [--cross-corpus WORK --corpus crema-d=… ravdess=… …  --documents CREMAD_METADATA_DIR]

1. **Voice** (with --cross-corpus): benchmarks/cross_corpus.py's tables for the shipped head's recipe
   (every layer of Whisper base, the hidden-layer head, no normalisation) beside the every-layer SVM:
   leave one corpus out over six corpora, and the two shareable corpora on the four others. Results
   already in WORK are read, not fitted again. (The head beside the SVM on CREMA-D's five folds:
   benchmarks/studies/compact_voice_head.py.)
2. **Face** (with --fer2013): the shipped face.onnx (float16) on FER2013's 3,589 PrivateTest faces,
   which neither its training nor its choices saw, beside the `fer` package's models as
   benchmarks/faces.py measured them (--faces-json: that benchmark's faces.json).
3. **The bundled clips**: actor 1001's six talking faces judged by the face, the voice and both
   (a sanity check, not a result).
4. **Cost**: a cold `avemotion predict clip.flv` (a new process; Whisper's ONNX export already cached)
   in wall seconds and peak memory, and a voice file and a face image the same way; the timeline's
   real-time factor on a video of at least 60 s made from the bundled clips.
5. **The picture** (with --picture PATH): the ready model's timeline of the six bundled clips in a
   row, as `avemotion timeline` draws it, and how many windows name the clip at their centre.

WHISPER_DIR holds the transformers `whisper-base/` (or is it). Printed, and written to
WORK/ready_model.json (WORK: --work, default ready-model-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

from avemotion.datasets import canonical
from avemotion.datasets.synth import write_media
from avemotion.media.features import load_audio
from avemotion.ready import DEFAULT_READY_MODEL, WHISPER_VARIABLE, ReadyModel, load_ready
from avemotion.runtime.predict import EmotionClassifier
from avemotion.runtime.timeline import plot_timeline
from avemotion.samples import sample_audio, sample_videos

SHIPPED_RECIPE, SVM_RECIPE = "whisper/mlp/none", "whisper/svm/none"
VOICE_EXPERIMENTS = ("loco", "shareable")  # cross_corpus.py's kinds that the card quotes
LONG_VIDEO_SECONDS = 60.0


def voice_tables(args) -> dict:
    """cross_corpus.py's summaries of the shipped recipe and the SVM (fitted there, or read back)."""
    import cross_corpus

    corpora = {name: Path(folder) for name, folder in (pair.split("=", 1) for pair in args.corpus)}
    table = cross_corpus.joined_table(corpora, args.documents, None, args.cross_corpus)
    table, whisper = cross_corpus.whisper_features(table, args.cross_corpus, args.whisper)
    summaries = {}
    for recipe in (SHIPPED_RECIPE, SVM_RECIPE):
        summaries[recipe] = cross_corpus.summary(cross_corpus.run_recipe(table, whisper, recipe, args.cross_corpus,
                                                                         VOICE_EXPERIMENTS))
    return summaries


def face_on_private_test(folder: Path) -> dict:
    """The shipped face model's accuracy and macro F1 on FER2013's PrivateTest."""
    from sklearn.metrics import accuracy_score, f1_score

    paths = sorted((folder / "test").glob("*/PrivateTest_*.jpg"))
    paths = [path for path in paths if not path.name.count(".jpg") > 1]  # the snapshot's *.jpgN.jpg copies
    classifier = EmotionClassifier.from_onnx(ReadyModel.named().path("face"))
    started = time.perf_counter()
    results = classifier.predict_batch(paths, progress=True)
    seconds = time.perf_counter() - started
    truth = [canonical(path.parent.name) for path in paths]
    predicted = [result.label if result.ok else "(none)" for result in results]
    return {"faces": len(paths), "accuracy": float(accuracy_score(truth, predicted)),
            "macro_f1": float(f1_score(truth, predicted, average="macro")),
            "ms_a_face_with_decoding": 1000 * seconds / len(paths)}


def bundled_clips(classifier) -> list[dict]:
    """Each bundled talking face: its true emotion, and the face's, the voice's and the fused top labels."""
    rows = []
    for path, result in zip(sample_videos(), classifier.predict_batch(sample_videos())):
        truth = canonical(path.stem.split("_")[2])  # CREMA-D's emotion code
        tops = {part: max(values, key=values.get) for part, values in result.by_modality.items()}
        rows.append({"clip": path.name, "true": truth, **tops, "fused": result.label})
    return rows


MEASURED = ("import resource, subprocess, sys, time; started = time.perf_counter(); "
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "done.returncode); print(done.stdout + done.stderr)")


def cold_predict(media: Path, whisper: Path) -> dict:
    """`avemotion predict MEDIA` in a new process: its wall seconds and peak resident memory (each
    measured by a process of its own, so that no other run's peak counts)."""
    command = [sys.executable, "-c", MEASURED, sys.executable, "-m", "avemotion", "predict", str(media),
               "--weights", str(whisper)]
    measured = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    seconds, peak_kb, status = measured[0].split()
    if int(status):
        raise SystemExit(f"avemotion predict {media} failed: {' '.join(measured[1:])}")
    return {"media": media.name, "seconds": float(seconds), "peak_mb": int(peak_kb) / 1024,
            "output": [line for line in measured[1:] if line.strip()][-1]}


def bundled_clips_video(path: Path, repeats: int = 1) -> Path:
    """The bundled talking faces one after another, `repeats` times over."""
    images, sounds, rate, fps = [], [], 16_000, 30
    for clip in sample_videos():
        with av.open(str(clip)) as container:
            images += [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        sounds.append(load_audio(clip, rate))
    sound = np.tile(np.concatenate(sounds), repeats)
    return write_media(path, images * repeats, fps=fps, audio=sound[None].astype(np.float32), audio_rate=rate,
                       channels=1)


def long_video(path: Path, seconds: float) -> Path:
    """The bundled talking faces again and again, until `seconds` are filled."""
    once = sum(clip_seconds(clip) for clip in sample_videos())
    return bundled_clips_video(path, int(np.ceil(seconds / once)))


def clip_seconds(clip: Path) -> float:
    """A clip's length in seconds, as its container states it."""
    with av.open(str(clip)) as container:
        return float(container.duration / av.time_base)


def timeline_picture(classifier, work: Path, picture: Path) -> dict:
    """The ready model's timeline of actor 1001's six clips in a row, drawn as `avemotion timeline`
    draws it; each window's top label beside the clip at the window's centre (a picture, and a
    sanity check: the voice learned from CREMA-D, actor 1001 included)."""
    table = classifier.timeline(bundled_clips_video(work / "bundled-clips-once.mp4"))
    emotions = [canonical(clip.stem.split("_")[2]) for clip in sample_videos()]
    plot_timeline(table, picture, title=f"{DEFAULT_READY_MODEL} on six real CREMA-D clips in a row: "
                  + ", ".join(emotions))
    ends = np.cumsum([clip_seconds(clip) for clip in sample_videos()])
    centres = (table["start_s"] + table["end_s"]) / 2
    truth = [emotions[min(int(np.searchsorted(ends, centre)), len(emotions) - 1)] for centre in centres]
    return {"picture": str(picture), "windows": len(table),
            "top_label_is_the_clip_at_the_centre": float(np.mean([label == true for label, true
                                                                 in zip(table["label"], truth)]))}


def timeline_speed(classifier, work: Path) -> dict:
    video = long_video(work / "bundled-clips-again.mp4", LONG_VIDEO_SECONDS)
    duration = clip_seconds(video)
    started = time.perf_counter()
    table = classifier.timeline(video)
    seconds = time.perf_counter() - started
    return {"video_seconds": duration, "seconds": seconds, "real_time_factor": seconds / duration,
            "windows": len(table)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", type=Path, required=True, help="the folder holding the transformers whisper-base/")
    parser.add_argument("--fer2013", type=Path, help="FER2013's folder: the face on PrivateTest")
    parser.add_argument("--faces-json", type=Path, help="benchmarks/faces.py's faces.json: fer's figures")
    parser.add_argument("--cross-corpus", type=Path, help="benchmarks/cross_corpus.py's work folder")
    parser.add_argument("--corpus", nargs="*", default=[], metavar="NAME=DIR", help="as cross_corpus.py takes them")
    parser.add_argument("--documents", type=Path, help="CREMA-D's VideoDemographics.csv folder")
    parser.add_argument("--work", type=Path, default=Path("ready-model-bench"))
    parser.add_argument("--picture", type=Path, help="draw the ready model's timeline of the six bundled clips "
                        "in a row here (docs/ready-timeline.png)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ[WHISPER_VARIABLE] = str(args.whisper)
    report: dict = {"model": DEFAULT_READY_MODEL}
    if args.cross_corpus:
        report["voice"] = voice_tables(args)
    if args.fer2013:
        report["face"] = face_on_private_test(args.fer2013)
        if args.faces_json:
            report["face"]["fer"] = json.loads(args.faces_json.read_text())["fer"]
    classifier = load_ready(weights=args.whisper)
    report["bundled_clips"] = bundled_clips(classifier)
    image = args.work / "face.png"
    with av.open(str(sample_videos()[0])) as container:
        next(container.decode(video=0)).to_image().save(image)
    cold_predict(sample_videos()[0], args.whisper)  # Whisper's ONNX export, once, if not yet cached
    report["cold_predict"] = [cold_predict(media, args.whisper)
                              for media in (sample_videos()[0], sample_audio()[0], image)]
    report["timeline"] = timeline_speed(classifier, args.work)
    if args.picture:
        report["picture"] = timeline_picture(classifier, args.work, args.picture)
    text = json.dumps(report, indent=2)
    print(text)
    (args.work / "ready_model.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
