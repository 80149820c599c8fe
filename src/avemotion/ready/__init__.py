"""avemotion's ready model: any clip's face and voice judged with nothing to train.

    avemotion predict clip.mp4            # no MODEL: the ready model
    classifier = avemotion.load()         # the same from Python

A ready model is a face model and a voice model trained on real corpora, each exported to ONNX,
shipped in a folder of this package beside its ``model.json`` (each file's role, SHA-256 and
calibration temperature) and its ``MODEL_CARD.md`` (training data and licences, recipe, figures,
intended use and limits), and fused late (:mod:`avemotion.runtime.fused`). ``tools/build_ready_model.py``
rebuilds every file from the corpora folders.

The voice model reads the hidden states of Whisper base, which does not ship: it comes from the
Hugging Face hub on first use and stays in the hub's cache, or from a local folder (``--weights
DIR`` or the environment variable AVEMOTION_WHISPER). Where it cannot be had, faces are judged
alone and each result says why its voice was not.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from avemotion.errors import UsageError, WeightsUnavailable
from avemotion.media.speech import file_sha256

READY_DIR = Path(__file__).resolve().parent
DEFAULT_READY_MODEL = "avemotion-base-1"
MANIFEST = "model.json"
WHISPER_VARIABLE = "AVEMOTION_WHISPER"  # a local folder holding Whisper base (as --weights DIR)
PARTS = ("face", "voice")
WHISPER_HELP = (f"or {WHISPER_VARIABLE}=DIR; faster-whisper's `base` converts to that folder with "
                "tools/whisper_to_transformers.py")


@dataclass(frozen=True)
class ReadyModel:
    """A shipped ready model: its folder and its manifest."""

    name: str
    folder: Path
    manifest: dict

    @classmethod
    def named(cls, name: str = DEFAULT_READY_MODEL) -> ReadyModel:
        folder = READY_DIR / name
        if not (folder / MANIFEST).is_file():
            raise UsageError(f"{name}: no such ready model; ready models: {', '.join(ready_model_names())}")
        return cls(name, folder, json.loads((folder / MANIFEST).read_text()))

    def path(self, part: str) -> Path:
        return self.folder / self.manifest["parts"][part]["file"]

    def temperature(self, part: str) -> float:
        return float(self.manifest["parts"][part]["temperature"])

    def files(self) -> dict[str, str]:
        """Every shipped weights file, with its SHA-256 as the manifest gives it."""
        files = {}
        for values in self.manifest["parts"].values():
            files[values["file"]] = values["sha256"]
            if "encoder_file" in values:
                files[values["encoder_file"]] = values["encoder_sha256"]
        return files

    def changed_files(self) -> list[str]:
        """The shipped files whose SHA-256 is not the manifest's (none, as shipped)."""
        return [name for name, sha256 in self.files().items() if file_sha256(self.folder / name) != sha256]


def ready_model_names() -> list[str]:
    return sorted(path.parent.name for path in READY_DIR.glob(f"*/{MANIFEST}"))


def is_ready_model(name: str | Path) -> bool:
    return str(name) in ready_model_names()


def load_ready(name: str = DEFAULT_READY_MODEL, weights: str | Path | None = None):
    """The ready model as a FusedClassifier: its face model, and its voice model where Whisper
    base can be had (from `weights`, AVEMOTION_WHISPER or the hub)."""
    from avemotion.runtime.fused import FusedClassifier
    from avemotion.runtime.predict import EmotionClassifier

    model = ReadyModel.named(name)
    face = EmotionClassifier.from_onnx(model.path("face"))
    face.temperature = model.temperature("face")
    voice, missing = None, None
    try:
        voice = _voice(model, weights or os.environ.get(WHISPER_VARIABLE) or None)
    except WeightsUnavailable as error:
        missing = f"{error.args[0].rstrip('.')}, {WHISPER_HELP}."
    except UsageError as error:  # Whisper's encoder not yet exported, and no PyTorch to export it
        missing = str(error)
    return FusedClassifier(name, face, voice, missing)


def _voice(model: ReadyModel, weights: str | Path | None):
    """The voice model on Whisper base in ONNX Runtime: its folder found now (downloaded on first
    use), its encoder exported to ONNX on first use (which needs PyTorch once), and loaded on the
    first voice. Any copy of Whisper base will do: the head was fitted on a float16 conversion,
    and the hub's float32 file differs from it by that rounding alone."""
    from avemotion.media.speech import weights_digest, weights_folder
    from avemotion.media.whisper_onnx import exported_encoder
    from avemotion.runtime.predict import EmotionClassifier

    if importlib.util.find_spec("faster_whisper") is None:  # its log-Mel features
        raise UsageError("the voice's features need faster-whisper: pip install 'avemotion[speech]'")
    encoder = model.manifest["parts"]["voice"]["encoder"]
    folder = weights_folder(encoder["family"], encoder["name"], weights)
    exported_encoder(folder, weights_digest(folder))
    voice = EmotionClassifier.from_onnx(model.path("voice"), folder, exact_weights=False, whisper_onnx=True)
    voice.temperature = model.temperature("voice")
    return voice


def describe_ready_models() -> str:
    """One paragraph per shipped ready model: its parts, their files' sizes and labels, its licence."""
    lines = [f"Ready models (predict, timeline and serve use {DEFAULT_READY_MODEL} without MODEL):"]
    for name in ready_model_names():
        model = ReadyModel.named(name)
        lines.append(f"  {name}: {model.manifest['summary']}")
        for part, values in model.manifest["parts"].items():
            size = (model.folder / values["file"]).stat().st_size / 1e6
            lines.append(f"    {part}: {values['file']} ({size:.1f} MB), {values['description']}; "
                         f"labels {', '.join(values['labels'])}")
        lines.append(f"    licence of the weights: {model.manifest['licence']}")
        lines.append(f"    model card: {model.folder / 'MODEL_CARD.md'}")
    return "\n".join(lines)
