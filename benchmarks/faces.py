"""Real faces: still-face models on FER2013, from scratch and fine-tuned from ImageNet, beside the face
tool people install (`fer`), then real talking faces.

    pip install -e '.[train]'
    python benchmarks/faces.py FER2013_DIR [--work DIR] [--models mobilenetv2_face resnet18_face …]
        [--weights mobilenetv2_face=mobilenet_v2-b0353104.pth …] [--frame-size 96] [--epochs N]
        [--precision bf16-mixed] [--channels-last] [--cost-sizes 64 96 112] [--fer-python fer-env/bin/python]

FER2013_DIR holds FER2013's 48x48 faces in its part / label layout (``train/angry/Training_*.jpg``,
``validation/…/PublicTest_*``, ``test/…/PrivateTest_*``); augmented copies beside them are left out
by the index. Each model is trained with `avemotion train --split given`'s recipe (the still-image
recipe, or its fine-tuning form for a model that starts from ImageNet weights: --weights gives a
local file in torchvision's, timm's or efficientnet_pytorch's layout, else the hub) on the Training
part, the last epoch's weights kept, the model chosen on PublicTest (where the mirror average is
also weighed against the face alone) and scored once on PrivateTest as `avemotion evaluate RUN`
scores it: accuracy, macro F1, each emotion's F1, seconds per epoch. Each model is then exported to
ONNX in float32, float16 and int8 and each file scored on the same PrivateTest faces: its size, its
accuracy, and its CPU seconds per face (one thread, one face at a time, the mirror image included).
A model trained at several --frame-size values is also judged as ensembles: every set of two or more
of its sizes as one ONNX file reading the largest size and averaging their probabilities
(`export_face_ensemble`), each a candidate chosen on PublicTest like the others.

`fer` (PyPI, MIT), the face tool people install, runs in its own environment (--fer-python: the
Python of a venv where `pip install fer` was run; it needs TensorFlow) on the same PrivateTest faces,
each prepared as its own code prepares a face (benchmarks/fer_peer.py): its default TensorFlow Lite
model and its Keras one. Anchors on the same test set: human raters about 0.65 (Goodfellow et al.
2013), mini-Xception 0.66 (oarriaga/face_classification), the best single networks reported about
0.73.

Then the cost of the frame size (seconds per training epoch of each model at each of --cost-sizes,
from a few timed steps), and a sanity check on real talking faces: the six bundled CREMA-D clips of
actor 1001 judged by the model best on PublicTest (face-cropped, labels matched through the
canonical vocabulary): how many of the six emotions it names. Each run is kept in WORK and an
interrupted one resumes from its last epoch; printed and written to WORK/faces.json and faces.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from models import time_call
from torch.nn import functional as F
from torch.utils.data import DataLoader

from avemotion.config import EXPORT_PRECISIONS, TrainSettings, still_image
from avemotion.datasets import canonical, fer2013
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.media.inputs import FRAMES, FeatureSettings
from avemotion.media.preprocess import CachedClips, FeatureCache
from avemotion.registry import FACE_BACKBONES, PRETRAINED_FACE_BACKBONES, model_settings
from avemotion.runtime.predict import load
from avemotion.samples import sample_videos
from avemotion.training.augment import jitter_frames
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.evaluate import classification_metrics, evaluate_run
from avemotion.training.export import export_face_ensemble, export_onnx
from avemotion.training.models import create_model
from avemotion.training.train import train

ANCHORS = {"human raters (Goodfellow et al. 2013)": 0.65, "mini-Xception (face_classification)": 0.66,
           "best single networks reported": 0.73}
COST_STEPS = 3  # timed training steps per model and size (after one untimed)
TRAINING_IMAGES = 28_709  # FER2013's Training part
FACE_MODELS = {**FACE_BACKBONES, **PRETRAINED_FACE_BACKBONES}
PER_FACE_TIMINGS = 200  # faces timed one at a time for an exported model's CPU seconds per face


def faces_table(folder: Path) -> pd.DataFrame:
    result = index_dataset(folder, "fer2013")
    print(result.summary())
    if result.table.empty:
        raise SystemExit(f"{folder}: no FER2013 images (train/angry/Training_*.jpg …) found")
    return result.table


def train_model(table: pd.DataFrame, name: str, work: Path, features: FeatureSettings, epochs: int | None,
                hardware: dict) -> dict:
    """One still model on the given split, resumed where an earlier run stopped; its figures: on
    PublicTest with and without the mirror average, and on PrivateTest as `avemotion evaluate RUN`
    scores it (this code's model, whichever version trained it). `hardware`: the run's weights,
    precision and memory layout."""
    run = work / "runs" / f"{name}-{features.frame_size}px"
    cache = FeatureCache.open(work / "cache", features)
    if not (run / "metrics.json").is_file():
        chosen = {"max_epochs": epochs} if epochs else {}
        settings = still_image(TrainSettings(model=model_settings(name), split="given", progress=False,
                                             **hardware, **chosen), given=frozenset(chosen))
        metadata = work / "fer2013.csv"  # named in the run's config, as `avemotion train` does
        write_metadata(table, metadata)
        train(table, cache, run, settings, resume=True, metadata_path=str(metadata))
    metrics, _ = evaluate_run(run, progress=False)
    history = pd.read_csv(run / "history.csv")
    return {"model": name, "frame_size": features.frame_size, "epochs": len(history), "run": str(run),
            "parameters": sum(parameter.numel() for parameter in load_checkpoint(run / "model.ckpt")[0].parameters()),
            "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "per_emotion_f1": {label: scores["f1"] for label, scores in metrics["per_class"].items()},
            **publictest_accuracy(run, table, cache),
            "seconds_per_epoch": float(history["epoch_seconds"].median()),
            "checkpoint": str(run / "model.ckpt")}


@torch.no_grad()
def publictest_accuracy(run: Path, table: pd.DataFrame, cache: FeatureCache) -> dict[str, float]:
    """The trained model's accuracy on PublicTest (the validation part, where choices are made),
    with each face's and its mirror image's features averaged (`val_accuracy`), and from the face
    alone (`val_accuracy_unmirrored`)."""
    model, info = load_checkpoint(run / "model.ckpt")
    val = table[table["split"] == "val"]
    clips = CachedClips(val, cache.with_inputs(info.inputs), info.labels, info.inputs)
    hits = {True: 0, False: 0}
    for inputs, targets in DataLoader(clips, batch_size=256):
        for mirrored in hits:
            model.encoders["video"].mirrored = mirrored
            hits[mirrored] += int((model(inputs).argmax(dim=1) == targets).sum())
    return {"val_accuracy": hits[True] / len(clips), "val_accuracy_unmirrored": hits[False] / len(clips)}


def cached_faces(run: Path, table: pd.DataFrame, cache: FeatureCache, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """A part's faces (PrivateTest: test; PublicTest: val) as the run's model reads them (cached
    uint8 frames), and their label indices in the model's labels."""
    _, info = load_checkpoint(run / "model.ckpt")
    part = table[table["split"] == split]
    clips = CachedClips(part, cache.with_inputs(info.inputs), info.labels, info.inputs)
    frames, targets = zip(*((np.asarray(inputs[FRAMES]), int(target)) for inputs, target in clips))
    return np.stack(frames), np.array(targets)


def exported(run: Path, table: pd.DataFrame, cache: FeatureCache, work: Path) -> dict[str, dict]:
    """The run's model exported at each precision and scored on the PrivateTest faces."""
    rows, _ = scored_exports(lambda precision, path: export_onnx(run / "model.ckpt", path, precision=precision),
                             run.name, *cached_faces(run, table, cache), work)
    return rows


def scored_exports(export, stem: str, frames: np.ndarray, targets: np.ndarray,
                   work: Path) -> tuple[dict[str, dict], np.ndarray]:
    """A model exported at each precision (`export(precision, path)`) and scored on these faces: the
    file's megabytes, its accuracy, and its CPU seconds per face (one thread, one face at a time);
    and the float32 file's logits."""
    rows, logits_of = {}, {}
    for precision in EXPORT_PRECISIONS:
        path = export(precision, work / "onnx" / f"{stem}-{precision}.onnx")
        logits_of[precision] = onnx_logits(path, frames)
        one_thread = onnx_session(path, threads=1)
        seconds = []
        for face in frames[:PER_FACE_TIMINGS]:
            started = time.process_time()
            one_thread.run(None, {FRAMES: face[None]})
            seconds.append(time.process_time() - started)
        rows[precision] = {"megabytes": path.stat().st_size / 1e6,
                           "accuracy": float((logits_of[precision].argmax(axis=1) == targets).mean()),
                           "seconds_per_face": float(np.median(seconds))}
    return rows, logits_of["float32"]


def onnx_logits(path: Path, frames: np.ndarray) -> np.ndarray:
    session = onnx_session(path, threads=2)
    return np.concatenate([session.run(None, {FRAMES: frames[start:start + 256]})[0]
                           for start in range(0, len(frames), 256)])


def ensemble_row(rows: list[dict], table: pd.DataFrame, work: Path) -> dict:
    """One model's runs at every frame size judged together as one file (export_face_ensemble,
    reading the largest size), scored as each run is, on PublicTest and PrivateTest faces cached at
    that size."""
    largest = max(rows, key=lambda row: row["frame_size"])
    run = Path(largest["run"])
    cache = FeatureCache.open(work / "cache", FeatureSettings(frame_size=largest["frame_size"]))
    checkpoints = [row["checkpoint"] for row in rows]
    sizes = "+".join(str(row["frame_size"]) for row in rows)
    test_frames, test_targets = cached_faces(run, table, cache)
    exports, logits = scored_exports(
        lambda precision, path: export_face_ensemble(checkpoints, path, precision=precision),
        f"{largest['model']}-{sizes}px", test_frames, test_targets, work)
    val_frames, val_targets = cached_faces(run, table, cache, split="val")
    val_accuracy = float((onnx_logits(work / "onnx" / f"{largest['model']}-{sizes}px-float32.onnx", val_frames)
                          .argmax(axis=1) == val_targets).mean())
    labels = load_checkpoint(run / "model.ckpt")[1].labels
    metrics = classification_metrics([labels[i] for i in test_targets], [labels[i] for i in logits.argmax(axis=1)],
                                     labels)
    return {"model": f"{largest['model']} ensemble", "frame_size": sizes, "epochs": sum(row["epochs"] for row in rows),
            "seconds_per_epoch": sum(row["seconds_per_epoch"] for row in rows), "run": str(run),
            "parameters": sum(row["parameters"] for row in rows), "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "per_emotion_f1": {label: scores["f1"] for label, scores in metrics["per_class"].items()},
            "val_accuracy": val_accuracy, "val_accuracy_unmirrored": float("nan"),
            "checkpoint": str(work / "onnx" / f"{largest['model']}-{sizes}px-float16.onnx"), "exported": exports}


def onnx_session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def fer_rows(python: Path, table: pd.DataFrame, work: Path) -> list[dict]:
    """`fer`'s models on the PrivateTest faces, run in fer's own environment (fer_peer.py), scored
    as avemotion's are; kept in WORK/fer."""
    test = table[table["split"] == "test"]
    folder = work / "fer"
    folder.mkdir(parents=True, exist_ok=True)
    faces = folder / "faces.json"
    faces.write_text(json.dumps(list(test["video_path"])))
    rows = []
    for variant in ("tflite", "keras"):
        out = folder / f"{variant}.json"
        if not out.is_file():
            subprocess.run([str(python), str(Path(__file__).with_name("fer_peer.py")), str(faces), str(out),
                            *(["--keras"] if variant == "keras" else [])], check=True)
        judged = json.loads(out.read_text())
        predicted = [canonical(judged["labels"][int(np.argmax(scores))]) for scores in judged["scores"]]
        metrics = classification_metrics(list(test["emotion"]), predicted, list(fer2013.LABELS))
        rows.append({"model": judged["model"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                     "per_emotion_f1": {label: scores["f1"] for label, scores in metrics["per_class"].items()},
                     "megabytes": judged["bytes"] / 1e6, "seconds_per_face": judged["seconds_per_face"]})
    return rows


def seconds_per_epoch(name: str, size: int, hardware: dict, batch: int = 64) -> float:
    """A training epoch's seconds on FER2013's Training part, from a few timed steps of random images
    (the median, after one untimed), in the run's precision and memory layout."""
    model = create_model(name, image_size=size, num_classes=7, pretrained=False).train()
    if hardware["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    frames = torch.randint(0, 256, (batch, 1, 3, size, size), dtype=torch.uint8)
    target = torch.randint(0, 7, (batch,))
    halved = hardware["precision"].startswith("bf16")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=halved):
            loss = F.cross_entropy(model({FRAMES: jitter_frames(frames)}), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return time_call(step, COST_STEPS, torch.device("cpu")) * TRAINING_IMAGES / batch


def talking_faces(checkpoint: str) -> dict:
    """The bundled CREMA-D clips judged by a face model: how many emotions it names."""
    classifier = load(checkpoint)
    judged = {}
    for result in classifier.predict_batch(sample_videos()):
        truth = canonical(Path(result.path).stem.split("_")[2])
        judged[Path(result.path).stem] = {"truth": truth, "predicted": result.label, "face": result.features.face_found}
    return {"clips": judged, "named": sum(row["truth"] == row["predicted"] for row in judged.values())}


def report(results: list[dict], peers: list[dict], costs: dict, sanity: dict | None) -> str:
    labels = list((results or peers)[0]["per_emotion_f1"]) if results or peers else []
    lines = ["| model | px | epochs | s/epoch | PublicTest acc (face alone) | PrivateTest acc | macro F1 | "
             + " | ".join(labels) + " | M parameters | ONNX MB | CPU ms/face |", "|---" * (10 + len(labels)) + "|"]
    for row in results:
        onnx = row.get("exported", {}).get("float32")
        lines.append(f"| {row['model']} | {row['frame_size']} | {row['epochs']} | {row['seconds_per_epoch']:.0f} | "
                     f"{row['val_accuracy']:.3f} ({_unmirrored(row)}) | {row['accuracy']:.3f} | "
                     f"{row['macro_f1']:.3f} | "
                     + " | ".join(f"{row['per_emotion_f1'][label]:.2f}" for label in labels)
                     + f" | {row['parameters'] / 1e6:.2f} | "
                     + (f"{onnx['megabytes']:.1f} | {onnx['seconds_per_face'] * 1e3:.1f} |" if onnx else " | |"))
    for row in peers:
        lines.append(f"| {row['model']} | 64 | | | | {row['accuracy']:.3f} | {row['macro_f1']:.3f} | "
                     + " | ".join(f"{row['per_emotion_f1'][label]:.2f}" for label in labels)
                     + f" | | {row['megabytes']:.1f} | {row['seconds_per_face'] * 1e3:.1f} |")
    lines += [f"| {anchor} | | | | | {value:.2f} | |" + " |" * (len(labels) + 3) for anchor, value in ANCHORS.items()]
    if results and peers:
        best = max(results, key=lambda row: row["val_accuracy"])
        lines += ["", (f"Chosen on PublicTest: {best['model']} at {best['frame_size']} px, "
                  f"{best['accuracy'] - peers[0]['accuracy']:+.3f} on PrivateTest beside {peers[0]['model']}.")]
    exports = [row for row in results if row.get("exported")]
    if exports:
        lines += ["", "| model | px | " + " | ".join(f"{precision} MB / PrivateTest acc / ms a face"
                                                     for precision in EXPORT_PRECISIONS) + " |",
                  "|---" * (2 + len(EXPORT_PRECISIONS)) + "|"]
        lines += [f"| {row['model']} | {row['frame_size']} | " + " | ".join(
            f"{row['exported'][p]['megabytes']:.1f} / {row['exported'][p]['accuracy']:.3f} / "
            f"{row['exported'][p]['seconds_per_face'] * 1e3:.1f}" for p in EXPORT_PRECISIONS) + " |" for row in exports]
    if costs:
        sizes = sorted({size for costs_of in costs.values() for size in costs_of})
        lines += ["", "| model | " + " | ".join(f"s/epoch at {size} px" for size in sizes) + " |",
                  "|---" * (1 + len(sizes)) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{costs[name][size]:.0f}" for size in sizes) + " |" for name in costs]
    if sanity:
        lines += ["", f"Bundled CREMA-D clips (actor 1001) judged by {sanity['model']}: {sanity['named']} of 6 "
                  "emotions named: " + ", ".join(f"{row['truth']}→{row['predicted']}"
                                                  for row in sanity["clips"].values())]
    return "\n".join(lines)


def _unmirrored(row: dict) -> str:
    """The face-alone PublicTest accuracy, where measured (an ensemble's file mirrors inside)."""
    value = row["val_accuracy_unmirrored"]
    return "-" if np.isnan(value) else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", type=Path, help="FER2013's folder (part / label / image)")
    parser.add_argument("--work", type=Path, default=Path("faces-bench"))
    parser.add_argument("--models", nargs="+", default=list(FACE_MODELS), choices=list(FACE_MODELS))
    parser.add_argument("--weights", nargs="*", default=[], metavar="MODEL=PATH",
                        help="a pretrained model's ImageNet weights file (torchvision's, timm's or "
                        "efficientnet_pytorch's layout); without it, the hub")
    parser.add_argument("--frame-size", type=int, nargs="+", default=[64],
                        help="pixels the 48 px faces are enlarged to (each model is trained at each)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    parser.add_argument("--precision", default="32-true", help="Lightning precision (bf16-mixed: faster "
                        "on a CPU with bf16 instructions)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last image tensors")
    parser.add_argument("--cost-sizes", type=int, nargs="*", default=[64, 96, 112])
    parser.add_argument("--fer-python", type=Path, help="the Python of an environment where `pip install "
                        "fer` was run: the fer package's models beside ours")
    args = parser.parse_args()
    torch.manual_seed(0)
    weights = dict(pair.split("=", 1) for pair in args.weights)
    hardware = {"precision": args.precision, "channels_last": args.channels_last}
    costs = {name: {size: seconds_per_epoch(name, size, hardware) for size in args.cost_sizes}
             for name in args.models}
    table = faces_table(args.faces)
    peers = fer_rows(args.fer_python, table, args.work) if args.fer_python else []
    results = []
    for name in args.models:
        for size in args.frame_size:
            features = FeatureSettings(frame_size=size)
            row = train_model(table, name, args.work, features, args.epochs, {**hardware, "weights": weights.get(name)})
            row["exported"] = exported(Path(row["run"]), table, FeatureCache.open(args.work / "cache", features),
                                       args.work)
            results.append(row)
            print(report(results, peers, costs, None), flush=True)
        sizes = [row for row in results if row["model"] == name]
        for count in range(2, len(sizes) + 1):  # the model at several sizes judging together
            for together in itertools.combinations(sizes, count):
                results.append(ensemble_row(list(together), table, args.work))
                print(report(results, peers, costs, None), flush=True)
    best = max(results, key=lambda row: row["val_accuracy"])
    sanity = {"model": best["model"], **talking_faces(best["checkpoint"])}
    text = report(results, peers, costs, sanity)
    print(text)
    (args.work / "faces.md").write_text(text + "\n")
    (args.work / "faces.json").write_text(json.dumps({"results": results, "fer": peers, "costs": costs,
                                                      "talking_faces": sanity}, indent=2) + "\n")


if __name__ == "__main__":
    main()
