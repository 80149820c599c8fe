"""Stage 6, predict: the emotion of any clip with a face and a voice, from a trained checkpoint.

    clf = avemotion.load("run/model.ckpt")
    result = clf.predict("clip.mp4")        # result.label, result.probabilities
    results = clf.predict_batch([...])

Features come from :func:`avemotion.features.extract_features` with the feature settings stored in
the checkpoint, so a clip is prepared exactly as the training clips were. The network runs in
PyTorch, or in ONNX Runtime when an exported model is given.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avemotion.checkpoint import load_checkpoint
from avemotion.cremad import EMOTION_NAMES, VIDEO_EXTENSIONS
from avemotion.features import ClipFeatures, MediaError, extract_features

PREDICT_BATCH = 8  # clips per network call


@dataclass
class Prediction:
    """One clip's result: the top emotion and every emotion's probability, or why it failed."""

    path: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    features: ClipFeatures | None = field(default=None, repr=False)  # the inputs the network saw

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def emotion(self) -> str | None:
        """The top emotion's name ('anger') rather than its code ('ANG')."""
        return EMOTION_NAMES.get(self.label, self.label) if self.label else None

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"path": self.path, "label": self.label, "emotion": self.emotion,
                "probabilities": self.probabilities, "error": self.error}


class EmotionClassifier:
    """A trained model with its feature settings and labels, ready to predict on media files."""

    def __init__(self, checkpoint: str | Path, onnx: str | Path | None = None) -> None:
        self.model, self.info = load_checkpoint(checkpoint)
        self.labels = self.info.labels
        self.session = _onnx_session(onnx) if onnx is not None else None

    def features(self, path: str | Path) -> ClipFeatures:
        """The clip's frames and log-Mel, made with the checkpoint's feature settings."""
        return extract_features(path, self.info.feature_settings)

    def predict(self, path: str | Path) -> Prediction:
        """Predict one clip; a bad file gives a Prediction whose `error` says why."""
        return self.predict_batch([path])[0]

    def predict_batch(self, paths: list[str | Path], progress: bool = False) -> list[Prediction]:
        """Predict many clips, decoding one at a time and running the network in batches."""
        from tqdm import tqdm

        results = []
        pending: list[Prediction] = []
        for path in tqdm(paths, unit="clip", desc="predict", disable=not progress):
            result = Prediction(path=str(path))
            try:
                result.features = self.features(path)
                pending.append(result)
            except MediaError as error:
                result.error = str(error)
            results.append(result)
            if len(pending) == PREDICT_BATCH:
                self._score(pending)
                pending = []
        if pending:
            self._score(pending)
        return results

    def _score(self, pending: list[Prediction]) -> None:
        """Fill in the labels and probabilities of clips whose features are ready."""
        frames = np.stack([p.features.frames for p in pending])
        mel = np.stack([p.features.mel for p in pending]).astype(np.float32)
        probabilities = _softmax(self.logits(frames, mel))
        for result, row in zip(pending, probabilities):
            result.probabilities = {label: float(p) for label, p in zip(self.labels, row)}
            result.label = self.labels[int(row.argmax())]

    def logits(self, frames: np.ndarray, mel: np.ndarray) -> np.ndarray:
        """The network's logits for a batch, in ONNX Runtime or PyTorch."""
        if self.session is not None:
            feeds = {"frames": frames, "mel": mel}
            names = [i.name for i in self.session.get_inputs()]
            return self.session.run(["logits"], {name: feeds[name] for name in names})[0]
        with torch.no_grad():
            return self.model(torch.from_numpy(frames), torch.from_numpy(mel)).numpy()


def load(checkpoint: str | Path, onnx: str | Path | None = None) -> EmotionClassifier:
    """Load a trained classifier: `avemotion.load("model.ckpt").predict("clip.mp4")`."""
    return EmotionClassifier(checkpoint, onnx)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _onnx_session(path: str | Path):
    """An ONNX Runtime session on the CPU, with a clear error for a missing or bad file."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX model (make one with `avemotion export`)")
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise ValueError(f"{path}: not a readable ONNX model ({error})") from error


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given, and every video file (by extension) inside any folder, sorted."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            paths.append(item)
    return paths


def export_onnx(checkpoint: str | Path, output: str | Path, opset: int = 17) -> Path:
    """Write the network as ONNX: inputs `frames` (uint8) and `mel` (float32), output `logits`,
    with a dynamic batch dimension."""
    model, info = load_checkpoint(checkpoint)
    settings = info.feature_settings
    frames = torch.zeros(2, settings.n_frames, 3, settings.frame_size, settings.frame_size,
                         dtype=torch.uint8)
    mel = torch.zeros(2, 1, settings.n_mels, settings.mel_frames)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The tracer warns that the LSTM's shape checks become constants and that the batch size
        # may be fixed; the batch axis is declared dynamic, and the tests run other batch sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (frames, mel), str(output), input_names=["frames", "mel"],
            output_names=["logits"], opset_version=opset, dynamo=False,
            dynamic_axes={"frames": {0: "batch"}, "mel": {0: "batch"}, "logits": {0: "batch"}},
        )
    return output
