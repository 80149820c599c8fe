"""Stage 6, predict: the emotion of any clip with a face and a voice (or, for a one-modality model,
of a voice or a face alone), from a trained model.

    clf = avemotion.load("run/model.ckpt")  # or an exported "model.onnx"
    result = clf.predict("clip.mp4")        # result.label, result.probabilities
    results = clf.predict_batch([...])

Features come from :func:`avemotion.features.extract_features` with the feature settings stored in
the checkpoint, so a clip is prepared exactly as the training clips were. The network runs in
PyTorch from a checkpoint, or in ONNX Runtime from an exported model, whose metadata carries the
labels and feature settings: an ONNX model alone predicts, and never imports torch. A model trained
with speaker normalisation judges several clips of one speaker together (a folder), never one clip:
its network gives each clip's features, and the speaker's statistics and the model's speaker head
(:mod:`avemotion.speakers`) turn them into probabilities.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from avemotion.config import DEFAULT_WINDOW_S
from avemotion.datasets.vocabulary import canonical
from avemotion.features import (
    ClipFeatures,
    FeatureSettings,
    MediaError,
    extract_features,
    features_from_capture,
)
from avemotion.index import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from avemotion.speakers import MIN_SPEAKER_CLIPS, SpeakerHead, SpeakerNormError, standardised

PREDICT_BATCH = 8  # clips per network call
ONNX_METADATA_KEY = "avemotion"  # the ONNX file's metadata entry holding what prediction needs
ONNX_METADATA_VERSION = 1
ONNX_SPEAKER_HEAD_KEY = "avemotion_speaker_head"  # a speaker-normalised model's last layer
# (frames uint8, mel float32) -> logits, or a speaker-normalised model's clip features
Network = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class NetworkParts:
    """The network split where a timeline shares work between overlapping windows: each frame's
    image features once, then everything else per window."""

    embed_frames: Callable[[np.ndarray], np.ndarray]  # (N, 3, H, W) uint8 -> (N, D)
    from_frame_features: Network  # (B, T, D) frame features, (B, 1, n_mels, time) mel -> as Network


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
        """The top emotion's canonical name ('anger') rather than its corpus's code ('ANG')."""
        return canonical(self.label) if self.label else None

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"path": self.path, "label": self.label, "emotion": self.emotion,
                "probabilities": self.probabilities, "error": self.error}


@dataclass(frozen=True)
class ModelCard:
    """What prediction needs besides the network; a checkpoint holds it, and so does an export."""

    model_name: str
    labels: list[str]
    feature_settings: FeatureSettings
    modalities: tuple[str, ...] = ("video", "audio")  # the inputs the model reads
    window_seconds: float | None = None  # typical clip length of the training corpus, when known
    speaker_norm: bool = False  # judges one speaker's clips together (avemotion.speakers)

    @property
    def extensions(self) -> tuple[str, ...]:
        """The files the model takes: videos, and audio files too when it reads no video."""
        return VIDEO_EXTENSIONS if "video" in self.modalities else VIDEO_EXTENSIONS + AUDIO_EXTENSIONS

    def label_names(self) -> dict[str, str]:
        """Each label's canonical emotion name ('ANG' -> 'anger')."""
        return {label: canonical(label) for label in self.labels}

    @property
    def window(self) -> float:
        """The window a timeline or the camera judges: the training clips' typical length, when known."""
        return self.window_seconds or DEFAULT_WINDOW_S

    def to_json(self) -> str:
        return json.dumps({"version": ONNX_METADATA_VERSION, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        values = json.loads(text)
        values.pop("version", None)
        return cls(**{**values, "feature_settings": FeatureSettings(**values["feature_settings"]),
                      "modalities": tuple(values.get("modalities", ("video", "audio")))})

    @classmethod
    def of_checkpoint(cls, info) -> ModelCard:
        """The card of a loaded checkpoint's info."""
        return cls(info.model_settings.name, info.labels, info.feature_settings,
                   info.model_settings.modalities, info.window_seconds, info.speaker_norm)


class EmotionClassifier:
    """A trained network with its labels and feature settings, ready to predict on media files."""

    def __init__(self, network: Network, card: ModelCard, parts: NetworkParts | None = None,
                 speaker_head: SpeakerHead | None = None) -> None:
        if card.speaker_norm and speaker_head is None:
            raise ValueError(f"{card.model_name}: a speaker-normalised model needs its speaker head")
        self.network = network
        self.card = card
        self.labels = card.labels
        self.parts = parts  # None: a timeline runs the whole network on each window
        self.speaker_head = speaker_head  # the last layer, outside the network, of a speaker-normalised model

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, onnx: str | Path | None = None) -> EmotionClassifier:
        """A checkpoint's model in PyTorch, or its ONNX export (`onnx`) in ONNX Runtime."""
        from avemotion.checkpoint import load_checkpoint

        model, info = load_checkpoint(checkpoint)
        card = ModelCard.of_checkpoint(info)
        head = model.speaker_head_weights() if info.speaker_norm else None
        if onnx is not None:
            return cls(_onnx_network(_onnx_session(onnx)), card, speaker_head=head)
        features = info.speaker_norm  # the network gives clip features, the speaker head the logits
        return cls(_torch_network(model, features), card, _torch_parts(model, features), head)

    @classmethod
    def from_onnx(cls, path: str | Path) -> EmotionClassifier:
        """An exported model alone, in ONNX Runtime, with the labels and settings of its metadata."""
        session = _onnx_session(path)
        metadata = session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in metadata:
            raise ValueError(f"{path}: this ONNX model carries no avemotion metadata (labels, feature "
                             "settings); export it again with `avemotion export`, or pass its "
                             "checkpoint: `avemotion predict CHECKPOINT --onnx MODEL.onnx`")
        try:
            card = ModelCard.from_json(metadata[ONNX_METADATA_KEY])
            head = SpeakerHead.from_json(metadata[ONNX_SPEAKER_HEAD_KEY]) if card.speaker_norm else None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: its avemotion metadata cannot be read by this version "
                             f"({type(error).__name__}: {error})") from error
        return cls(_onnx_network(session), card, speaker_head=head)

    def timeline(self, path: str | Path, window: float = 0.0, hop: float = 0.5, smooth: int = 1,
                 progress: bool = False):
        """The probabilities of every label over time, one row per window (a pandas DataFrame with
        start_s, end_s, label and one column per label); see :mod:`avemotion.timeline`."""
        from avemotion.config import TimelineSettings
        from avemotion.timeline import emotion_timeline

        return emotion_timeline(self, path, TimelineSettings(window, hop, smooth), progress)

    def features(self, path: str | Path) -> ClipFeatures:
        """The clip's frames and log-Mel (only what the model reads), made with the model's
        feature settings."""
        return extract_features(path, self.card.feature_settings, modalities=self.card.modalities)

    def predict(self, path: str | Path) -> Prediction:
        """Predict one clip; a bad file gives a Prediction whose `error` says why."""
        self._refuse_single_clip(path)
        return self.predict_batch([path])[0]

    def _refuse_single_clip(self, path) -> None:
        if self.card.speaker_norm:
            raise SpeakerNormError(f"{path}: {self._speaker_norm_advice()}")

    def _speaker_norm_advice(self) -> str:
        return (f"{self.card.model_name} was trained with speaker normalisation and cannot judge a "
                f"clip on its own; give it a folder of at least {MIN_SPEAKER_CLIPS} clips of the same "
                "speaker (`avemotion predict FOLDER`), or a long recording of one person "
                "(`avemotion timeline`)")

    def predict_capture(self, images: list[np.ndarray], waveform: np.ndarray | None, rate: int) -> Prediction:
        """Predict a window captured live: RGB images spread over it and its mono audio at `rate`."""
        self._refuse_single_clip("capture")
        result = Prediction(path="capture")
        result.features = features_from_capture(images, waveform, rate, self.card.feature_settings)
        self._score([result])
        return result

    def predict_batch(self, paths: list[str | Path], progress: bool = False) -> list[Prediction]:
        """Predict many clips, decoding one at a time and running the network in batches. A
        speaker-normalised model takes them all as one speaker's clips."""
        if self.card.speaker_norm:
            return self.predict_one_speaker(paths, progress)
        from tqdm import tqdm

        results = []
        pending: list[Prediction] = []
        for path in tqdm(paths, unit="clip", desc="predict", disable=not progress):
            result = self._decoded(path)
            results.append(result)
            if result.ok:
                pending.append(result)
            if len(pending) == PREDICT_BATCH:
                self._score(pending)
                pending = []
        if pending:
            self._score(pending)
        return results

    def predict_one_speaker(self, paths: list[str | Path], progress: bool = False) -> list[Prediction]:
        """Predict several clips of one speaker with a speaker-normalised model: every clip's
        features are standardised with the statistics of all of them."""
        from tqdm import tqdm

        results = [self._decoded(path) for path in tqdm(paths, unit="clip", desc="predict", disable=not progress)]
        decoded = [result for result in results if result.ok]
        if len(decoded) < MIN_SPEAKER_CLIPS:
            raise SpeakerNormError(f"{len(decoded)} readable clip(s): {self._speaker_norm_advice()}")
        outputs = np.concatenate([self._outputs(decoded[start : start + PREDICT_BATCH])
                                  for start in range(0, len(decoded), PREDICT_BATCH)])
        self._fill(decoded, self.one_speaker_probabilities(outputs))
        return results

    def one_speaker_probabilities(self, features: np.ndarray) -> np.ndarray:
        """A speaker-normalised model's probabilities for clip features (N, D) of one speaker."""
        return softmax(self.speaker_head.logits(standardised(features)))

    def _decoded(self, path: str | Path) -> Prediction:
        """A clip's Prediction with its features ready, or with the reason they cannot be made."""
        result = Prediction(path=str(path))
        try:
            result.features = self.features(path)
        except MediaError as error:
            result.error = str(error)
        return result

    def _score(self, pending: list[Prediction]) -> None:
        """Fill in the labels and probabilities of clips whose features are ready."""
        self._fill(pending, softmax(self._outputs(pending)))

    def _outputs(self, pending: list[Prediction]) -> np.ndarray:
        """The network's outputs for clips whose features are ready, in one call."""
        frames = np.stack([p.features.frames for p in pending])
        mel = np.stack([p.features.mel for p in pending]).astype(np.float32)
        return self.network(frames, mel)

    def _fill(self, pending: list[Prediction], probabilities: np.ndarray) -> None:
        for result, row in zip(pending, probabilities):
            result.probabilities = {label: float(p) for label, p in zip(self.labels, row)}
            result.label = self.labels[int(row.argmax())]


def load(model: str | Path, onnx: str | Path | None = None) -> EmotionClassifier:
    """Load a trained classifier: `avemotion.load("model.ckpt")` or `avemotion.load("model.onnx")`."""
    if Path(model).suffix.lower() == ".onnx":
        return EmotionClassifier.from_onnx(model)
    return EmotionClassifier.from_checkpoint(model, onnx)


def _torch_network(model, features: bool = False) -> Network:
    """The PyTorch model as a function of NumPy arrays: its logits, or its clip features."""
    import torch

    function = model.clip_features if features else model

    def outputs(frames: np.ndarray, mel: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return function(torch.from_numpy(frames), torch.from_numpy(mel)).numpy()

    return outputs


def _torch_parts(model, features: bool = False) -> NetworkParts:
    """The PyTorch model's frame backbone, and the rest of it, as functions of NumPy arrays."""
    import torch

    rest = model.clip_features_from_embeddings if features else model.forward_embeddings

    @torch.no_grad()
    def embed_frames(images: np.ndarray) -> np.ndarray:
        return model.embed_frames(torch.from_numpy(images)[None])[0].numpy()

    @torch.no_grad()
    def from_frame_features(frame_features: np.ndarray, mel: np.ndarray) -> np.ndarray:
        video = torch.from_numpy(frame_features) if model.frames is not None else None
        audio = model.embed_audio(torch.from_numpy(mel)) if model.spectrogram is not None else None
        return rest(video, audio).numpy()

    return NetworkParts(embed_frames, from_frame_features)


def _onnx_network(session) -> Network:
    """An ONNX Runtime session as a function of NumPy arrays (feeding the inputs it has): its one
    output, `logits` or a speaker-normalised model's `features`."""
    names = [model_input.name for model_input in session.get_inputs()]
    output = session.get_outputs()[0].name

    def outputs(frames: np.ndarray, mel: np.ndarray) -> np.ndarray:
        feeds = {"frames": frames, "mel": mel}
        return session.run([output], {name: feeds[name] for name in names})[0]

    return outputs


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, row by row."""
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


def expand_inputs(inputs: list[str | Path], extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[Path]:
    """Files as given, and every media file (by extension) inside any folder, sorted."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in extensions)
        else:
            paths.append(item)
    return paths


def export_onnx(checkpoint: str | Path, output: str | Path, opset: int = 17) -> Path:
    """Write the network as ONNX: inputs `frames` (uint8) and `mel` (float32), output `logits`,
    with a dynamic batch dimension, and in its metadata the model card (labels, feature settings,
    model name), so that the file alone predicts. A speaker-normalised model's output is `features`
    instead, and its speaker head is in the metadata too."""
    import onnx
    import torch

    from avemotion.checkpoint import load_checkpoint
    from avemotion.models import ClipFeatures

    model, info = load_checkpoint(checkpoint)
    network, output_name = (ClipFeatures(model), "features") if info.speaker_norm else (model, "logits")
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
            network, (frames, mel), str(output), input_names=["frames", "mel"],
            output_names=[output_name], opset_version=opset, dynamo=False,
            dynamic_axes={"frames": {0: "batch"}, "mel": {0: "batch"}, output_name: {0: "batch"}},
        )
    exported = onnx.load(str(output))
    properties = {ONNX_METADATA_KEY: ModelCard.of_checkpoint(info).to_json()}
    if info.speaker_norm:
        properties[ONNX_SPEAKER_HEAD_KEY] = model.speaker_head_weights().to_json()
    onnx.helper.set_model_props(exported, properties)
    onnx.save(exported, str(output))
    return output
