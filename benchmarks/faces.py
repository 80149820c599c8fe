"""Real faces: the three still-face models from scratch on FER2013, then real talking faces.

    pip install -e '.[train]'
    python benchmarks/faces.py FER2013_DIR [--work DIR] [--models resnet18_face …] [--frame-size 64]
        [--epochs N] [--cost-sizes 64 96 112]

FER2013_DIR holds FER2013's 48x48 faces in its part / label layout (``train/angry/Training_*.jpg``,
``validation/…/PublicTest_*``, ``test/…/PrivateTest_*``); augmented copies beside them are left out
by the index. Each model is trained with `avemotion train --split given`'s recipe (the still-image
recipe) on the Training part, the last epoch's weights kept, the model chosen on PublicTest (where
the mirror average is also weighed against the face alone) and scored once on PrivateTest as
`avemotion evaluate RUN` scores it: accuracy, macro F1, each emotion's F1, seconds per epoch. Anchors on the
same test set: human raters about 0.65 (Goodfellow et al. 2013), mini-Xception 0.66
(oarriaga/face_classification), the best single networks reported about 0.73.

Then the cost of the frame size (seconds per epoch of each model at each of --cost-sizes, from a
few timed training steps), and a sanity check on real talking faces: the six bundled CREMA-D clips
of actor 1001 judged by the model best on PublicTest (face-cropped, labels matched through the
canonical vocabulary): how many of the six emotions it names. Each run is kept in WORK and an
interrupted one resumes from its last epoch; printed and written to WORK/faces.json and faces.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from models import time_call
from torch.nn import functional as F
from torch.utils.data import DataLoader

from avemotion.config import TrainSettings, still_image
from avemotion.datasets import canonical
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.media.inputs import FRAMES, FeatureSettings
from avemotion.media.preprocess import CachedClips, FeatureCache
from avemotion.registry import FACE_BACKBONES, model_settings
from avemotion.runtime.predict import load
from avemotion.samples import sample_videos
from avemotion.training.augment import jitter_frames
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.evaluate import evaluate_run
from avemotion.training.models import create_model
from avemotion.training.train import train

ANCHORS = {"human raters (Goodfellow et al. 2013)": 0.65, "mini-Xception (face_classification)": 0.66,
           "best single networks reported": 0.73}
COST_STEPS = 3  # timed training steps per model and size (after one untimed)
TRAINING_IMAGES = 28_709  # FER2013's Training part


def faces_table(folder: Path) -> pd.DataFrame:
    result = index_dataset(folder, "fer2013")
    print(result.summary())
    if result.table.empty:
        raise SystemExit(f"{folder}: no FER2013 images (train/angry/Training_*.jpg …) found")
    return result.table


def train_model(table: pd.DataFrame, name: str, work: Path, features: FeatureSettings, epochs: int | None) -> dict:
    """One still model on the given split, resumed where an earlier run stopped; its figures: on
    PublicTest with and without the mirror average, and on PrivateTest as `avemotion evaluate RUN`
    scores it (this code's model, whichever version trained it)."""
    run = work / "runs" / f"{name}-{features.frame_size}px"
    cache = FeatureCache.open(work / "cache", features)
    if not (run / "metrics.json").is_file():
        chosen = {"max_epochs": epochs} if epochs else {}
        settings = still_image(TrainSettings(model=model_settings(name), split="given", progress=False, **chosen),
                               given=frozenset(chosen))
        metadata = work / "fer2013.csv"  # named in the run's config, as `avemotion train` does
        write_metadata(table, metadata)
        train(table, cache, run, settings, resume=True, metadata_path=str(metadata))
    metrics, _ = evaluate_run(run, progress=False)
    history = pd.read_csv(run / "history.csv")
    return {"model": name, "frame_size": features.frame_size, "epochs": len(history),
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


def seconds_per_epoch(name: str, size: int, batch: int = 64) -> float:
    """A training epoch's seconds on FER2013's Training part, from a few timed steps of random images
    (the median, after one untimed)."""
    model = create_model(name, image_size=size, num_classes=7).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    frames = torch.randint(0, 256, (batch, 1, 3, size, size), dtype=torch.uint8)
    target = torch.randint(0, 7, (batch,))

    def step() -> None:
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


def report(results: list[dict], costs: dict, sanity: dict | None) -> str:
    labels = list(results[0]["per_emotion_f1"]) if results else []
    lines = ["| model | px | epochs | s/epoch | PublicTest acc (face alone) | PrivateTest acc | macro F1 | "
             + " | ".join(labels) + " |", "|---" * (7 + len(labels)) + "|"]
    for row in results:
        lines.append(f"| {row['model']} | {row['frame_size']} | {row['epochs']} | {row['seconds_per_epoch']:.0f} | "
                     f"{row['val_accuracy']:.3f} ({row['val_accuracy_unmirrored']:.3f}) | {row['accuracy']:.3f} | "
                     f"{row['macro_f1']:.3f} | "
                     + " | ".join(f"{row['per_emotion_f1'][label]:.2f}" for label in labels) + " |")
    lines += [f"| {anchor} | | | | | {value:.2f} | |" + " |" * len(labels) for anchor, value in ANCHORS.items()]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faces", type=Path, help="FER2013's folder (part / label / image)")
    parser.add_argument("--work", type=Path, default=Path("faces-bench"))
    parser.add_argument("--models", nargs="+", default=list(FACE_BACKBONES), choices=list(FACE_BACKBONES))
    parser.add_argument("--frame-size", type=int, default=64, help="pixels the 48 px faces are enlarged to")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the recipe's)")
    parser.add_argument("--cost-sizes", type=int, nargs="*", default=[64, 96, 112])
    args = parser.parse_args()
    torch.manual_seed(0)
    costs = {name: {size: seconds_per_epoch(name, size) for size in args.cost_sizes} for name in args.models}
    table = faces_table(args.faces)
    features = FeatureSettings(frame_size=args.frame_size)
    results = []
    for name in args.models:
        results.append(train_model(table, name, args.work, features, args.epochs))
        print(report(results, costs, None), flush=True)
    best = max(results, key=lambda row: row["val_accuracy"])
    sanity = {"model": best["model"], **talking_faces(best["checkpoint"])}
    text = report(results, costs, sanity)
    print(text)
    (args.work / "faces.md").write_text(text + "\n")
    (args.work / "faces.json").write_text(json.dumps({"results": results, "costs": costs, "talking_faces": sanity},
                                                     indent=2) + "\n")


if __name__ == "__main__":
    main()
