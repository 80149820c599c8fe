"""Rebuild avemotion's ready model (src/avemotion/ready/avemotion-base-1/) from the corpora folders,
with avemotion's own commands, so anyone can retrain it and check where the shipped bytes came from.

    pip install -e '.[train,speech]'
    python tools/build_ready_model.py --fer2013 FER2013_DIR --face-weights mobilenet_v2-b0353104.pth \\
        --cremad CREMAD_WAVS --documents CREMAD_METADATA_DIR --ravdess RAVDESS_DIR \\
        --whisper WHISPER_DIR [--work DIR] [--out FOLDER]

- **face.onnx**: `mobilenetv2_face` (MobileNetV2 from torchvision's ImageNet file, `--face-weights`)
  fine-tuned on FER2013's Training faces with the pretrained still-face recipe, once at each of
  --frame-sizes (`avemotion train --split given`), the two judging together (their probabilities
  averaged, one file reading 112 px faces: what PublicTest chose in benchmarks/faces.py), stored in
  float16. Its temperature is fitted on PublicTest.
- **voice.onnx**: `whisper_base_layers_mlp_audio_only` (every hidden state of Whisper base,
  frozen, mean- and std-pooled, side by side; one hidden layer of 256 fitted by the hidden-layer
  probe's fixed recipe) on CREMA-D's and RAVDESS's voices (`avemotion train --metadata crema-d.csv
  ravdess.csv`): the actors of each corpus and gender split 80/10/10, the head fitted on the first
  two parts and its temperature on the held-out tenth; exported in float32 (7 MB; its input's
  standardisation is folded into the hidden layer, which wants float32).
  WHISPER_DIR holds the transformers `whisper-base/` (the hub's `openai/whisper-base`, or
  tools/whisper_to_transformers.py's conversion of faster-whisper's `base`).
- **face_encoder.safetensors**: the face model's frame encoder in float16, which `train --init-from
  avemotion-base-1` starts a new model's video branch from.
- **model.json**: each file's role, SHA-256, labels and temperature, and the fusion rule; the
  SHA-256 table of MODEL_CARD.md is rewritten to match.

Each step's output is kept in WORK and the step skipped when it is there, so an interrupted build
resumes (training resumes from its last epoch).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.cli import main as avemotion
from avemotion.datasets import canonical
from avemotion.ready import DEFAULT_READY_MODEL, MANIFEST, READY_DIR, file_sha256
from avemotion.runtime.predict import EmotionClassifier
from avemotion.training.calibration import fitted_temperature
from avemotion.training.export import export_face_ensemble

FACE_MODEL, VOICE_MODEL = "mobilenetv2_face", "whisper_base_layers_mlp_audio_only"
WHISPER = {"family": "transformers", "name": "openai/whisper-base"}
LICENCE = ("CC BY-NC-SA 4.0 (non-commercial, share-alike): the voice learned from RAVDESS (CC BY-NC-SA) "
           "beside CREMA-D (ODbL / DbCL); the face from FER2013 (research use). The code is MIT.")
SUMMARY = ("a face model (MobileNetV2 from ImageNet, fine-tuned on FER2013) and a voice model (every layer "
           "of Whisper base, frozen, and one hidden layer fitted on CREMA-D and RAVDESS), fused late")
FUSION = ("the mean of the face's and the voice's calibrated distributions over the labels they share, "
          "each renormalised over them; one modality alone where the other has nothing to judge")


def run(*arguments) -> None:
    """One avemotion command, as typed; a failure stops the build with its status."""
    status = avemotion([str(argument) for argument in arguments])
    if status:
        raise SystemExit(f"avemotion {arguments[0]} failed with status {status}")


def built(path: Path, *arguments) -> Path:
    """`path`, made by the avemotion command unless it is already there."""
    if not path.exists():
        run(*arguments)
    return path


def face_part(args, work: Path, out: Path) -> dict:
    table = built(work / "fer2013.csv", "index", args.fer2013, "--dataset", "fer2013", "-o", work / "fer2013.csv")
    runs = []
    for size in args.frame_sizes:
        runs.append(work / f"face-{size}px")
        built(runs[-1] / "model.ckpt", "train", "--model", FACE_MODEL, "--metadata", table, "--cache", work / "cache",
              "--out", runs[-1], "--split", "given", "--frame-size", size, "--weights", args.face_weights,
              "--precision", args.precision, "--channels-last", "--resume")
    onnx = out / "face.onnx"
    if not onnx.exists():
        export_face_ensemble([run / "model.ckpt" for run in runs], onnx, precision="float16")
    validation = pd.read_csv(table)
    validation = validation[validation["split"] == "val"]  # PublicTest: what the recipe was chosen on
    classifier = EmotionClassifier.from_onnx(onnx)
    results = classifier.predict_batch(list(validation["video_path"]), progress=True)
    judged = [index for index, result in enumerate(results) if result.ok]
    probabilities = np.array([[results[i].probabilities[label] for label in classifier.labels] for i in judged])
    truth = validation["emotion"].map(canonical).to_numpy()[judged]
    sizes = " and ".join(f"{size} px" for size in args.frame_sizes)
    entry = part_entry(onnx, classifier.labels, probabilities, truth,
                       f"{FACE_MODEL} at {sizes}, their probabilities averaged, float16; temperature fitted on "
                       "FER2013 PublicTest")
    largest = runs[args.frame_sizes.index(max(args.frame_sizes))]
    return {**entry, **face_encoder(largest / "model.ckpt", out / "face_encoder.safetensors")}


def face_encoder(checkpoint: Path, path: Path) -> dict:
    """The face model's frame encoder in float16, for `train --init-from` the ready model."""
    from safetensors.numpy import save_file

    from avemotion.training.checkpoint import load_checkpoint

    model, info = load_checkpoint(checkpoint)
    # the weights in float16; BatchNorm's batch counters stay integers (they overflow float16)
    weights = {key: value.numpy().astype(np.float16) if value.is_floating_point() else value.numpy()
               for key, value in model.encoders["video"].state_dict().items()}
    save_file(weights, str(path))
    return {"encoder_file": path.name, "encoder_sha256": file_sha256(path), "encoder_bytes": path.stat().st_size,
            "backbone": info.model_settings.video_backbone, "video_encoder": info.model_settings.video_encoder,
            "frame_size": info.feature_settings.frame_size}


def voice_part(args, work: Path, out: Path) -> dict:
    tables = [built(work / "crema-d.csv", "index", args.cremad, "--dataset", "crema-d", "--documents",
                    args.documents, "-o", work / "crema-d.csv"),
              built(work / "ravdess.csv", "index", args.ravdess, "--dataset", "ravdess", "-o", work / "ravdess.csv")]
    voice_run = work / VOICE_MODEL  # a run per voice model: another model never reuses it
    built(voice_run / "model.ckpt", "train", "--model", VOICE_MODEL, "--metadata", *tables, "--cache",
          work / "cache", "--out", voice_run, "--weights", args.whisper)
    onnx = built(out / "voice.onnx", "export", voice_run / "model.ckpt", "-o", out / "voice.onnx")
    held_out = pd.read_csv(voice_run / "predictions.csv")  # the test actors: the probe never saw them
    labels = [column.removeprefix("p_") for column in held_out.columns if column.startswith("p_")]
    probabilities = held_out[[f"p_{label}" for label in labels]].to_numpy()
    entry = part_entry(onnx, labels, probabilities, held_out["true"].to_numpy(),
                       f"{VOICE_MODEL}, float32; temperature fitted on CREMA-D's and RAVDESS's held-out actors")
    return {**entry, "encoder": WHISPER}


def part_entry(onnx: Path, labels: list[str], probabilities: np.ndarray, truth: np.ndarray, description: str) -> dict:
    """A part's manifest entry: its file, SHA-256, labels, and temperature on held-out clips."""
    targets = np.array([labels.index(label) for label in truth])
    temperature = fitted_temperature(probabilities, targets)
    accuracy = float((probabilities.argmax(axis=1) == targets).mean())
    print(f"{onnx.name}: held-out accuracy {accuracy:.3f} on {len(targets)} clips, temperature {temperature:.3f}")
    return {"file": onnx.name, "sha256": file_sha256(onnx), "bytes": onnx.stat().st_size,
            "labels": [canonical(label) for label in labels], "temperature": round(temperature, 4),
            "description": description, "held_out_accuracy": round(accuracy, 4), "held_out_clips": len(targets)}


def shipped_files(parts: dict[str, dict]) -> list[tuple[str, int, str]]:
    """Every shipped weights file: name, bytes, SHA-256."""
    files = [(entry["file"], entry["bytes"], entry["sha256"]) for entry in parts.values()]
    return files + [(entry["encoder_file"], entry["encoder_bytes"], entry["encoder_sha256"])
                    for entry in parts.values() if "encoder_file" in entry]


def rewrite_card_hashes(card: Path, parts: dict[str, dict]) -> None:
    """MODEL_CARD.md's SHA-256 table (between its markers) made from the manifest."""
    table = "\n".join(["| file | bytes | SHA-256 |", "|---|---|---|"]
                      + [f"| {name} | {size} | `{sha256}` |" for name, size, sha256 in shipped_files(parts)])
    text = card.read_text()
    card.write_text(re.sub(r"(<!-- sha256 -->\n)(?:.*?\n)?(<!-- /sha256 -->)", lambda m: f"{m[1]}{table}\n{m[2]}",
                           text, flags=re.DOTALL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer2013", type=Path, required=True, help="FER2013's folder (part / label / image)")
    parser.add_argument("--face-weights", type=Path, required=True,
                        help="torchvision's ImageNet MobileNetV2 file (mobilenet_v2-b0353104.pth)")
    parser.add_argument("--frame-sizes", type=int, nargs="+", default=[96, 112],
                        help="pixels the faces are enlarged to, a model for each (96 112)")
    parser.add_argument("--precision", default="bf16-mixed", help="the face's training precision (bf16-mixed)")
    parser.add_argument("--cremad", type=Path, required=True, help="CREMA-D's WAV folder")
    parser.add_argument("--documents", type=Path, required=True, help="CREMA-D's VideoDemographics.csv folder")
    parser.add_argument("--ravdess", type=Path, required=True, help="RAVDESS's speech folder (Actor_XX/)")
    parser.add_argument("--whisper", type=Path, required=True, help="the folder holding the transformers whisper-base/")
    parser.add_argument("--work", type=Path, default=Path("ready-model-build"))
    parser.add_argument("--out", type=Path, default=READY_DIR / DEFAULT_READY_MODEL)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    parts = {"face": face_part(args, args.work, args.out), "voice": voice_part(args, args.work, args.out)}
    manifest = {"name": DEFAULT_READY_MODEL, "summary": SUMMARY, "licence": LICENCE, "fusion": FUSION, "parts": parts}
    (args.out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    rewrite_card_hashes(args.out / "MODEL_CARD.md", parts)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
