"""A model's card: the one record of a trained model besides its weights.

It names the model and its settings, the labels its outputs stand for, the feature settings and
inputs its clips are made with, the window a timeline judges, whether it judges one speaker's
clips together, and the speeds it also hears each voice at. A checkpoint extends it
(:class:`avemotion.training.checkpoint.Checkpoint`), an ONNX export carries it as JSON in its
metadata, and prediction, the timeline and the server read it, so training and inference cannot
drift apart. Imports neither torch nor a decoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from avemotion.config import DEFAULT_WINDOW_S
from avemotion.datasets.listing import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from avemotion.datasets.vocabulary import canonical
from avemotion.errors import AvemotionError
from avemotion.media.inputs import DEFAULT_INPUTS, INPUT_MODALITY, WAVEFORM, FeatureSettings, modalities_of
from avemotion.media.speech import EncoderIdentity
from avemotion.registry import MODELS, ModelSettings
from avemotion.runtime.speakers import NORM_GROUPS

CARD_VERSION = 5
# Version 1 (ONNX exports before encoders had names) held the model's name and modalities only;
# version 2 had no pretrained encoders running outside the network; version 3 judged each voice as
# recorded only; version 4 read every frame in colour.


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
    speaker_norm: bool = False  # judges one speaker's clips together (avemotion.runtime.speakers)
    normalised_by: str = "speaker"  # with speaker_norm, what is standardised together: "speaker" or "corpus"
    # the pretrained encoders that run outside the network (speech encoders), by branch
    encoders: dict[str, EncoderIdentity] = field(default_factory=dict)
    # test-time augmentation: each voice is also judged played at these speeds, and its
    # probabilities are averaged over them all (train --test-time-speeds)
    test_time_speeds: tuple[float, ...] = ()
    # every training frame was grayscale (a face corpus such as FER2013): new frames are read in
    # grayscale too, as the model learned them
    grayscale_frames: bool = False

    @property
    def model_name(self) -> str:
        return self.model_settings.name

    @property
    def modalities(self) -> tuple[str, ...]:
        """What a clip must have for this model: ('video', 'audio'), ('video',) or ('audio',)."""
        return modalities_of(self.inputs)

    @property
    def extensions(self) -> tuple[str, ...]:
        """The files the model takes: videos; audio files too when it reads no video, and still
        images when it reads video alone (an image is one frame)."""
        if "video" not in self.modalities:
            return VIDEO_EXTENSIONS + AUDIO_EXTENSIONS
        return VIDEO_EXTENSIONS + IMAGE_EXTENSIONS if self.modalities == ("video",) else VIDEO_EXTENSIONS

    @property
    def reading_settings(self) -> FeatureSettings:
        """The feature settings a new clip, image or camera window is read with: the training
        clips', and for a still-face model always with the face cropped, since it learned from faces
        alone (a face image already cropped, as FER2013's are, stays whole: no face is found in it, or
        the crop with its margin is the whole image); in grayscale for a model that learned from
        grayscale frames alone."""
        settings = self.feature_settings
        if self.model_settings.still_image and not settings.face_crop:
            settings = replace(settings, face_crop=True)
        if self.grayscale_frames and not settings.grayscale:
            settings = replace(settings, grayscale=True)
        return settings

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
        values["test_time_speeds"] = list(self.test_time_speeds)
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
            card = cls(**{**values, "model_settings": ModelSettings(**values["model_settings"]),
                          "feature_settings": feature_settings(values["feature_settings"]),
                          "inputs": tuple(values["inputs"]),
                          "test_time_speeds": tuple(values.get("test_time_speeds", ())),
                          "encoders": {branch: EncoderIdentity.from_dict(identity)
                                       for branch, identity in values.get("encoders", {}).items()}})
        except (KeyError, TypeError, AttributeError) as error:
            raise CardError(f"model card cannot be read by this version ({type(error).__name__}: "
                            f"{error})") from error
        card.check()
        return card

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            values = json.loads(text)
        except ValueError as error:
            raise CardError(f"model card is not JSON ({error})") from error
        if not isinstance(values, dict):
            raise CardError(f"model card is JSON but not an object (a {type(values).__name__})")
        return cls.from_dict(values)

    def check(self) -> None:
        """Refuse a card no model could have been trained with (a model file is a thing people
        share): labels a non-empty list of distinct strings, as many as its model's outputs, known
        inputs, and feature settings in their sane ranges."""
        labels = self.labels
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) and label
                                                                   for label in labels):
            raise CardError(f"model card labels must be a non-empty list of names, not {labels!r:.80}")
        if len(set(labels)) != len(labels):
            raise CardError(f"model card labels repeat a name: {labels!r:.200}")
        self.check_outputs(self.model_settings.num_classes)
        unknown = [name for name in self.inputs if name not in INPUT_MODALITY]
        if unknown or not self.inputs:
            raise CardError(f"model card inputs {list(self.inputs)} are not inputs this version reads")
        for name, (low, high) in FEATURE_RANGES.items():
            value = getattr(self.feature_settings, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise CardError(f"model card feature setting {name} = {value!r} is outside {low}-{high}")
        if self.window_seconds is not None and not 0 < float(self.window_seconds) <= 600:
            raise CardError(f"model card window {self.window_seconds!r} s is outside 0-600 s")
        if self.normalised_by not in NORM_GROUPS:
            raise CardError(f"model card normalisation by {self.normalised_by!r:.40} is not one of "
                            f"{', '.join(NORM_GROUPS)}")
        self.check_test_time_speeds()

    def check_test_time_speeds(self) -> None:
        """Refuse test-time speeds no model could judge with: too many (each is one more pass of
        the encoder over every voice), outside SPEED_RANGE, on a model that reads more than a
        voice, or with speaker normalisation (whose network gives features, not logits)."""
        speeds = self.test_time_speeds
        low, high = SPEED_RANGE
        if len(speeds) > MAX_TEST_TIME_SPEEDS or not all(
                isinstance(speed, (int, float)) and not isinstance(speed, bool) and low <= speed <= high
                for speed in speeds):
            raise CardError(f"model card test-time speeds {list(speeds)!r:.80} are not at most "
                            f"{MAX_TEST_TIME_SPEEDS} factors within {low:g}-{high:g}")
        if speeds and self.inputs != (WAVEFORM,):
            raise CardError(f"model card test-time speeds play a voice faster or slower, but the model "
                            f"reads {', '.join(self.inputs)}, not the waveform alone")
        if speeds and self.speaker_norm:
            raise CardError("model card test-time speeds average probabilities, but a speaker-normalised "
                            "model's network gives features")

    def check_outputs(self, width: int | None) -> None:
        """Refuse labels that are not one per output of the network (None: a width not stated)."""
        if width is not None and width != len(self.labels):
            raise CardError(f"model card has {len(self.labels)} labels but the network gives {width} outputs")


# Test-time speeds: a few factors near 1 (0.9 1.1: 10 % slower and faster); each is a pass of the
# encoder over every voice judged.
SPEED_RANGE = (0.5, 2.0)
MAX_TEST_TIME_SPEEDS = 4

# The ranges a card's feature settings must lie in: wide enough for any model, narrow enough that no
# card can make a clip's arrays (or the work to make them) unbounded.
FEATURE_RANGES = {"n_frames": (1, 64), "frame_size": (16, 1024), "sample_rate": (4_000, 48_000),
                  "n_mels": (8, 256), "n_fft": (64, 8192), "hop_length": (16, 8192),
                  "mel_frames": (8, 4096), "top_db": (1.0, 200.0), "waveform_seconds": (0.1, 600.0)}


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
                             audio_encoder="timm_spectrogram" if "audio" in modalities else None,
                             num_classes=len(values.get("labels") or []))
    inputs = [name for name, modality in (("frames", "video"), ("mel", "audio")) if modality in modalities]
    return {**values, "model_settings": asdict(settings), "inputs": inputs}
