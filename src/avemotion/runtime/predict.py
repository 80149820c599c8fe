"""Stage 6, predict: the emotion of any clip with a face and a voice (or, for a one-modality model,
of a voice or a face alone), from a trained model.

    clf = avemotion.load("run/model.ckpt")  # or an exported "model.onnx"
    result = clf.predict("clip.mp4")        # result.label, result.probabilities
    results = clf.predict_batch([...])

Features come from :func:`avemotion.media.features.extract_features` with the feature settings stored in
the checkpoint, so a clip is prepared exactly as the training clips were. The network runs in
PyTorch from a checkpoint, or in ONNX Runtime from an exported model, whose metadata carries the
labels and feature settings: an ONNX model alone predicts, and never imports torch. A model trained
with speaker normalisation (or corpus normalisation) is a :class:`SpeakerNormalisedClassifier`, with
the same interface: it judges several clips of one speaker (or one corpus) together (a folder, a long
recording), never one clip; its network gives each clip's features, and its
:class:`~avemotion.runtime.speakers.SpeakerNormalisation` turns them into probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avemotion.datasets.listing import VIDEO_EXTENSIONS
from avemotion.datasets.vocabulary import canonical
from avemotion.errors import MissingFileError, UsageError
from avemotion.media.features import ClipFeatures, MediaError, extract_features, features_from_capture
from avemotion.media.inputs import FRAMES, embedding_input, network_inputs, voice_is_silent
from avemotion.media.speech import SPEECH_INPUT, LazySpeechEncoder, speed_perturbed
from avemotion.onnx_sessions import cpu_session
from avemotion.runtime.card import CardError, ModelCard
from avemotion.runtime.probabilities import softmax
from avemotion.runtime.speakers import (
    MIN_SPEAKER_CLIPS,
    MIN_SPEAKER_WINDOWS,
    SpeakerNormalisation,
    SpeakerNormError,
    speaker_head_from_json,
)

__all__ = ["EmotionClassifier", "ModelCard", "Prediction", "SpeakerNormalisedClassifier", "expand_inputs",
           "load", "softmax"]

PREDICT_BATCH = 8  # clips per network call
ONNX_METADATA_KEY = "avemotion"  # the ONNX file's metadata entry holding the model's card
ONNX_SPEAKER_HEAD_KEY = "avemotion_speaker_head"  # a speaker-normalised model's last layer
# A still model's second ONNX output: each frame judged alone, (B, T, models, labels) logits, whose
# mean over T is each model's clip logits (training.models.judges_frames_alone)
FRAME_LOGITS = "frame_logits"
# inputs by name (frames uint8, mel and waveform float32) -> logits, or a speaker-normalised
# model's clip features
Network = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class NetworkParts:
    """The network split where a timeline shares work between overlapping windows: each frame's
    image features once, then everything else per window."""

    embed_frames: Callable[[np.ndarray], np.ndarray]  # (N, 3, H, W) uint8 -> (N, D)
    from_frame_features: Network  # as Network, with `frames` holding frame features (B, T, D)


@dataclass
class Prediction:
    """One clip's result: the top emotion and every emotion's probability, or why it failed."""

    path: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    features: ClipFeatures | None = field(default=None, repr=False)  # the inputs the network saw
    # a model of several parts judged together (the ready model): each modality that spoke, and its
    # own distribution ({"face": {...}, "voice": {...}}); empty for a single network
    by_modality: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str | None = None  # what the result should be read with (a modality that could not speak)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def emotion(self) -> str | None:
        """The top emotion's canonical name ('anger') rather than its corpus's code ('ANG')."""
        return canonical(self.label) if self.label else None

    def as_dict(self) -> dict:
        """JSON-ready form."""
        values = {"path": self.path, "label": self.label, "emotion": self.emotion,
                  "probabilities": self.probabilities, "error": self.error}
        if self.by_modality:
            values["modalities"] = self.by_modality
        if self.note:
            values["note"] = self.note
        return values


class EmotionClassifier:
    """A trained network with its labels and feature settings, ready to predict on media files."""

    def __init__(self, network: Network, card: ModelCard, parts: NetworkParts | None = None) -> None:
        self.network = network
        self.card = card
        self.labels = card.labels
        self.parts = parts  # None: a timeline runs the whole network on each window
        # the logits are divided by it before the softmax: above 1 where the network was found too
        # sure of itself on held-out clips (calibration; the ready model's parts), 1 as trained
        self.temperature = 1.0

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, onnx: str | Path | None = None,
                        weights: str | Path | None = None) -> EmotionClassifier:
        """A checkpoint's model in PyTorch, or its ONNX export (`onnx`) in ONNX Runtime; `weights`:
        a local folder of the pretrained speech encoder it was trained with (else the hub's)."""
        from avemotion.training.checkpoint import load_checkpoint

        model, info = load_checkpoint(checkpoint, weights=weights)
        card, normalisation = info.card(), info.speaker_normalisation
        if onnx is not None:
            return _classifier(_onnx_network(_onnx_session(onnx), card, weights), card, None, normalisation)
        features = info.speaker_norm  # the network gives clip features, the speaker head the logits
        return _classifier(_torch_network(model, features), card, _torch_parts(model, features), normalisation)

    @classmethod
    def from_onnx(cls, path: str | Path, weights: str | Path | None = None, exact_weights: bool = True,
                  whisper_onnx: bool = False) -> EmotionClassifier:
        """An exported model alone, in ONNX Runtime, with the labels and settings of its metadata
        (and beside it the pretrained speech encoder its card names, from `weights` or the hub:
        those very weights, or with `exact_weights` False any of the same shape; a transformers
        Whisper in ONNX Runtime too with `whisper_onnx`)."""
        session = _onnx_session(path)
        metadata = session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in metadata:
            raise CardError(f"{path}: this ONNX model carries no avemotion metadata (labels, feature "
                             "settings); export it again with `avemotion export`, or pass its "
                             "checkpoint: `avemotion predict CHECKPOINT --onnx MODEL.onnx`")
        try:
            card = ModelCard.from_json(metadata[ONNX_METADATA_KEY])
            normalisation = (SpeakerNormalisation(speaker_head_from_json(metadata[ONNX_SPEAKER_HEAD_KEY]))
                             if card.speaker_norm else None)
            card.check_outputs(normalisation.head.num_classes if normalisation else _output_width(session))
        except CardError as error:
            raise CardError(f"{path}: {error}") from error
        except (KeyError, TypeError, ValueError) as error:
            raise CardError(f"{path}: its avemotion metadata cannot be read by this version "
                            f"({type(error).__name__}: {error})") from error
        network = _onnx_network(session, card, weights, exact_weights, whisper_onnx)
        return _classifier(network, card, _onnx_parts(session, card), normalisation)

    def timeline(self, path: str | Path, window: float = 0.0, hop: float = 0.5, smooth: int = 1,
                 progress: bool = False):
        """The probabilities of every label over time, one row per window (a pandas DataFrame with
        start_s, end_s, label and one column per label); see :mod:`avemotion.runtime.timeline`."""
        from avemotion.config import TimelineSettings
        from avemotion.runtime.timeline import emotion_timeline

        return emotion_timeline(self, path, TimelineSettings(window, hop, smooth), progress)

    def features(self, path: str | Path) -> ClipFeatures:
        """The clip's inputs that the model reads, made with the model's feature settings."""
        return extract_features(path, self.card.reading_settings, inputs=self.card.inputs)

    def predict(self, path: str | Path) -> Prediction:
        """Predict one clip; a bad file gives a Prediction whose `error` says why."""
        return self.predict_batch([path])[0]

    def predict_capture(self, images: list[np.ndarray], waveform: np.ndarray | None, rate: int) -> Prediction:
        """Predict a window captured live: RGB images spread over it and its mono audio at `rate`."""
        result = Prediction(path="capture")
        result.features = features_from_capture(images, waveform, rate, self.card.reading_settings,
                                                self.card.inputs)
        if empty := nothing_to_judge(result.features, self.card.modalities):
            result.error, result.features = f"this window: {empty}, nothing to judge", None
            return result
        self._score([result])
        return result

    def predict_batch(self, paths: list[str | Path], progress: bool = False) -> list[Prediction]:
        """Predict many clips, decoding one at a time and running the network in batches."""
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

    def _decoded(self, path: str | Path) -> Prediction:
        """A clip's Prediction with its features ready, or with the reason they cannot be made
        (an input with nothing to judge among them: no emotion is invented for silence)."""
        result = Prediction(path=str(path))
        try:
            result.features = self.features(path)
        except MediaError as error:
            result.error = str(error)
            return result
        if empty := nothing_to_judge(result.features, self.card.modalities):
            result.error, result.features = f"{path}: {empty}, nothing to judge", None
        return result

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """The probabilities of clips judged together from the network's outputs for them (N, ...)."""
        return softmax(outputs / self.temperature)

    def check_recording(self, path: str | Path, seconds: float, window: float) -> None:
        """Refuse a recording this model cannot judge window by window (every one it can)."""

    def _score(self, pending: list[Prediction]) -> None:
        """Fill in the labels and probabilities of clips whose features are ready."""
        self._fill(pending, self.probabilities(self._outputs(pending)))

    def _outputs(self, pending: list[Prediction]) -> np.ndarray:
        """The network's outputs for clips whose features are ready: one call for each shape
        among them (a still image is one frame, a video's frames are more), in their order."""
        shapes = [tuple(p.features[name].shape for name in self.card.inputs) for p in pending]
        outputs: list[np.ndarray | None] = [None] * len(pending)
        for shape in dict.fromkeys(shapes):
            alike = [index for index, other in enumerate(shapes) if other == shape]
            batch = {name: np.stack([pending[i].features[name] for i in alike]) for name in self.card.inputs}
            for index, row in zip(alike, self.network(network_inputs(batch))):
                outputs[index] = row
        return np.stack(outputs)

    def _fill(self, pending: list[Prediction], probabilities: np.ndarray) -> None:
        """Each clip's label and probabilities; a clip whose output is not finite gets an error
        instead (no NaN ever reaches a caller, or invalid JSON an output)."""
        for result, row in zip(pending, probabilities):
            if not np.isfinite(row).all():
                result.error = f"{result.path}: the network's output for it is not a finite number"
                result.features = None
                continue
            result.probabilities = {label: float(p) for label, p in zip(self.labels, row)}
            result.label = self.labels[int(row.argmax())]


class SpeakerNormalisedClassifier(EmotionClassifier):
    """A model trained with speaker normalisation (or corpus normalisation, `card.normalised_by`):
    its network gives each clip's features, and `normalisation` judges one speaker's (or corpus's)
    clips together. It judges a folder of clips or a long recording, and refuses a lone clip or a
    camera window."""

    def __init__(self, network: Network, card: ModelCard, normalisation: SpeakerNormalisation,
                 parts: NetworkParts | None = None) -> None:
        super().__init__(network, card, parts)
        self.normalisation = normalisation

    def predict(self, path: str | Path) -> Prediction:
        raise SpeakerNormError(f"{path}: {self._advice()}")

    def predict_capture(self, images: list[np.ndarray], waveform: np.ndarray | None, rate: int) -> Prediction:
        raise SpeakerNormError(f"capture: {self._advice()}")

    def predict_batch(self, paths: list[str | Path], progress: bool = False) -> list[Prediction]:
        """Predict several clips of one speaker: every clip's features are standardised with the
        statistics of all of them."""
        from tqdm import tqdm

        results = [self._decoded(path) for path in tqdm(paths, unit="clip", desc="predict", disable=not progress)]
        decoded = [result for result in results if result.ok]
        if len(decoded) < MIN_SPEAKER_CLIPS:
            raise SpeakerNormError(f"{len(decoded)} readable clip(s): {self._advice()}")
        outputs = np.concatenate([self._outputs(decoded[start : start + PREDICT_BATCH])
                                  for start in range(0, len(decoded), PREDICT_BATCH)])
        self._fill(decoded, self.probabilities(outputs))
        return results

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """The probabilities of one speaker's clips (or windows) from their features (N, D)."""
        return self.normalisation.probabilities(outputs)

    def check_recording(self, path: str | Path, seconds: float, window: float) -> None:
        """Refuse a recording too short to give the statistics of its speaker (or source)."""
        if seconds < MIN_SPEAKER_WINDOWS * window:
            raise SpeakerNormError(
                f"{path}: {self.card.model_name} was trained with {self.card.normalised_by} normalisation "
                f"and needs a recording at least {MIN_SPEAKER_WINDOWS} windows long "
                f"({MIN_SPEAKER_WINDOWS * window:g} s); this one lasts {seconds:.1f} s")

    def _advice(self) -> str:
        group = self.card.normalised_by
        return (f"{self.card.model_name} was trained with {group} normalisation and cannot judge a "
                f"clip on its own; give it a folder of at least {MIN_SPEAKER_CLIPS} clips of the same "
                f"{group} (`avemotion predict FOLDER`), or a long recording (`avemotion timeline`)")


def _classifier(network: Network, card: ModelCard, parts: NetworkParts | None,
                normalisation: SpeakerNormalisation | None) -> EmotionClassifier:
    """The classifier of a network: a speaker-normalised one where the model has a normalisation,
    hearing each voice at the card's test-time speeds too where it names some."""
    if card.test_time_speeds:
        network = averaged_over_speeds(network, card.test_time_speeds)
    if normalisation is None:
        return EmotionClassifier(network, card, parts)
    return SpeakerNormalisedClassifier(network, card, normalisation, parts)


def averaged_over_speeds(network: Network, speeds: tuple[float, ...]) -> Network:
    """Test-time augmentation: the network judges each voice as recorded and played at each speed,
    and the result is the log of its probabilities averaged over them all. Logits, since the
    classifier's softmax of the log of a distribution gives the distribution back, so predict, the
    timeline, the camera and the server all judge as the model was evaluated."""

    def outputs(inputs: dict[str, np.ndarray]) -> np.ndarray:
        voices = inputs[SPEECH_INPUT]
        judged = [network(inputs)] + [network({**inputs, SPEECH_INPUT: speed_perturbed(voices, speed)})
                                      for speed in speeds]
        with np.errstate(divide="ignore"):  # a probability of 0 is a logit of -inf, as it should be
            return np.log(np.mean([softmax(logits) for logits in judged], axis=0))

    return outputs


def nothing_to_judge(features: ClipFeatures, modalities: tuple[str, ...]) -> str | None:
    """Why a clip gives a model nothing to judge, in words: each modality it reads is empty (a
    silent voice; no face found, where the model crops faces). None while one has something: a
    fused model judges a silent clip by its face."""
    empty = {}
    if "audio" in modalities and voice_is_silent(features.inputs):
        empty["audio"] = "its voice is silent"
    if "video" in modalities and features.face_found is False:
        empty["video"] = "no face was found in its frames"
    return " and ".join(empty.values()) if set(modalities) <= set(empty) else None


def load(model: str | Path | None = None, onnx: str | Path | None = None,
         weights: str | Path | None = None) -> EmotionClassifier:
    """Load a classifier: `avemotion.load()` the ready model (avemotion.ready; or one by name),
    `avemotion.load("model.ckpt")` or `avemotion.load("model.onnx")` a trained one; `weights`: a
    local folder of the pretrained speech encoder the model was trained with."""
    from avemotion.ready import DEFAULT_READY_MODEL, is_ready_model, load_ready

    if model is None or is_ready_model(model):
        return load_ready(str(model or DEFAULT_READY_MODEL), weights)
    if Path(model).suffix.lower() == ".onnx":
        return EmotionClassifier.from_onnx(model, weights)
    return EmotionClassifier.from_checkpoint(model, onnx, weights)


def _torch_network(model, features: bool = False) -> Network:
    """The PyTorch model as a function of NumPy arrays: its logits, or its clip features."""
    import torch

    function = model.clip_features if features else model

    def outputs(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return function({name: torch.from_numpy(value) for name, value in inputs.items()}).numpy()

    return outputs


def _torch_parts(model, features: bool = False) -> NetworkParts | None:
    """The PyTorch model's frame encoder, and the rest of it, as functions of NumPy arrays (None
    for a model without a video branch)."""
    import torch

    if "video" not in model.encoders:
        return None
    rest = model.clip_features_from_embeddings if features else model.forward_embeddings

    @torch.no_grad()
    def embed_frames(images: np.ndarray) -> np.ndarray:
        return model.encoders["video"](torch.from_numpy(images)[None])[0].numpy()

    @torch.no_grad()
    def from_frame_features(inputs: dict[str, np.ndarray]) -> np.ndarray:
        embeddings = {branch: torch.from_numpy(inputs[FRAMES]) if branch == "video"
                      else encoder(torch.from_numpy(inputs[encoder.input]))
                      for branch, encoder in model.encoders.items()}
        return rest(embeddings).numpy()

    return NetworkParts(embed_frames, from_frame_features)


def _onnx_network(session, card: ModelCard, weights: str | Path | None = None, exact_weights: bool = True,
                  whisper_onnx: bool = False) -> Network:
    """An ONNX Runtime session as a function of NumPy arrays (feeding the inputs it has by name):
    its one output, `logits` or a speaker-normalised model's `features`. The encoders the card
    names as running outside the network (speech encoders, on the waveform) embed first, loaded
    on the first call."""
    names = [model_input.name for model_input in session.get_inputs()]
    output = session.get_outputs()[0].name
    external = {embedding_input(branch): LazySpeechEncoder.of(identity, weights, exact_weights, whisper_onnx)
                for branch, identity in card.encoders.items()}

    def outputs(inputs: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: encoder.embed(inputs[SPEECH_INPUT]) for name, encoder in external.items()}
        feeds.update({name: inputs[name] for name in names if name not in feeds})
        return session.run([output], feeds)[0]

    return outputs


def _onnx_parts(session, card: ModelCard) -> NetworkParts | None:
    """A still-face file's frames judged one by one (its FRAME_LOGITS output), so that a timeline
    judges each grid frame once: a window's logits are the mean of its frames', model by model, and
    the models' distributions are averaged as the file averages them (None for other files)."""
    if FRAME_LOGITS not in [output.name for output in session.get_outputs()]:
        return None
    labels = len(card.labels)

    def embed_frames(images: np.ndarray) -> np.ndarray:  # (N, 3, H, W) -> (N, models × labels)
        return session.run([FRAME_LOGITS], {FRAMES: images[:, None]})[0].reshape(len(images), -1)

    def from_frame_features(inputs: dict[str, np.ndarray]) -> np.ndarray:
        frames = inputs[FRAMES]
        logits = frames.reshape(*frames.shape[:2], -1, labels).mean(axis=1)  # (B, models, labels)
        distributions = softmax(logits.reshape(-1, labels)).reshape(logits.shape)
        return np.log(distributions.mean(axis=1))

    return NetworkParts(embed_frames, from_frame_features)


def _output_width(session) -> int | None:
    """The width of an ONNX model's one output (its logits), where the file states it."""
    shape = session.get_outputs()[0].shape
    return shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) else None


def _onnx_session(path: str | Path):
    """An ONNX Runtime session on the CPU, with a clear error for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such ONNX model (make one with `avemotion export`)")
    try:
        return cpu_session(path)
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise UsageError(f"{path}: not a readable ONNX model ({error})") from error


def expand_inputs(inputs: list[str | Path], extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[Path]:
    """Files as given, and every media file (by extension) inside any folder, sorted."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.suffix.lower() in extensions)
        else:
            paths.append(item)
    return paths
