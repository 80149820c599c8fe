"""A model's card: the one record of a trained model besides its weights.

It names the model and its settings, the labels its outputs stand for, the feature settings and
inputs its clips are made with, the window a timeline judges, and whether it judges one speaker's
clips together. A checkpoint extends it (:class:`avemotion.checkpoint.Checkpoint`), an ONNX export
carries it as JSON in its metadata, and prediction, the timeline and the server read it, so
training and inference cannot drift apart. Imports neither torch nor a decoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from avemotion.config import DEFAULT_WINDOW_S
from avemotion.datasets.listing import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from avemotion.datasets.vocabulary import canonical
from avemotion.errors import AvemotionError
from avemotion.inputs import DEFAULT_INPUTS, FeatureSettings, modalities_of
from avemotion.registry import MODELS, ModelSettings
from avemotion.speech import EncoderIdentity

CARD_VERSION = 3
# Version 1 (ONNX exports before encoders had names) held the model's name and modalities only;
# version 2 had no pretrained encoders running outside the network.


class CardError(AvemotionError, ValueError):
    """A model card that cannot be read; the message says why."""


@dataclass
class ModelCard:
    """What rebuilds, feeds and reads a trained model, besides its weights."""

    model_settings: ModelSettings
    labels: list[str]
    feature_settings: FeatureSettings
    inputs: tuple[str, ...] = DEFAULT_INPUTS  # the names of the inputs the network reads, in order
    window_seconds: float | None = None  # typical clip length of the training corpus, when known
    speaker_norm: bool = False  # judges one speaker's clips together (avemotion.speakers)
    # the pretrained encoders that run outside the network (speech encoders), by branch
    encoders: dict[str, EncoderIdentity] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model_settings.name

    @property
    def modalities(self) -> tuple[str, ...]:
        """What a clip must have for this model: ('video', 'audio'), ('video',) or ('audio',)."""
        return modalities_of(self.inputs)

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

    def card(self) -> ModelCard:
        """The card alone (a checkpoint's info is a card with more fields)."""
        return ModelCard(**{field.name: getattr(self, field.name) for field in fields(ModelCard)})

    def to_dict(self) -> dict:
        values = asdict(self.card())
        values["inputs"] = list(self.inputs)
        return {"version": CARD_VERSION, **values}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: dict) -> ModelCard:
        """A card from its saved form (any readable version)."""
        values = dict(values)
        version = values.pop("version", 1)
        if version == 1:
            values = _upgraded_from_version_1(values)
        try:
            return cls(**{**values, "model_settings": ModelSettings(**values["model_settings"]),
                          "feature_settings": feature_settings(values["feature_settings"]),
                          "inputs": tuple(values["inputs"]),
                          "encoders": {branch: EncoderIdentity.from_dict(identity)
                                       for branch, identity in values.get("encoders", {}).items()}})
        except (KeyError, TypeError) as error:
            raise CardError(f"model card cannot be read by this version ({type(error).__name__}: "
                            f"{error})") from error

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls.from_dict(json.loads(text))


def feature_settings(values: dict) -> FeatureSettings:
    """FeatureSettings from a saved dictionary, refusing fields this version does not know."""
    known = {field.name for field in fields(FeatureSettings)}
    unknown = set(values) - known
    if unknown:
        raise KeyError(f"unknown feature settings {sorted(unknown)}")
    return FeatureSettings(**values)


def _upgraded_from_version_1(values: dict) -> dict:
    """A version 1 card (model name and modalities) in this version's fields."""
    modalities = tuple(values.pop("modalities", ("video", "audio")))
    name = values.pop("model_name")
    known = MODELS.get(name)
    video = known.video_backbone if known else None
    audio = known.audio_backbone if known else None
    settings = ModelSettings(name, video, audio, video_encoder="timm_frames" if "video" in modalities else None,
                             audio_encoder="timm_spectrogram" if "audio" in modalities else None)
    inputs = [name for name, modality in (("frames", "video"), ("mel", "audio")) if modality in modalities]
    return {**values, "model_settings": asdict(settings), "inputs": inputs}
