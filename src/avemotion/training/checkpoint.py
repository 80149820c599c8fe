"""One-file checkpoints that rebuild a model with no other input.

A checkpoint holds the model's card (:class:`~avemotion.runtime.card.ModelCard`: name and settings, feature
settings, inputs, label names, window, speaker normalisation), the weights, a speaker-normalised
model's speaker head, the epoch and the best metric, and where an encoder's weights started
(``train --init-from``), so prediction uses exactly what training used.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from avemotion import __version__
from avemotion.errors import AvemotionError
from avemotion.media.inputs import FeatureSettings
from avemotion.runtime.card import ModelCard
from avemotion.runtime.linear_probe import LinearLayer
from avemotion.runtime.speakers import SpeakerNormalisation, speaker_head_from_arrays
from avemotion.training.models import EmotionNet, ModelSettings

CHECKPOINT_FORMAT = "avemotion-checkpoint"
CHECKPOINT_VERSION = 4
# Version 1 named the temporal width `lstm_hidden` and kept the frame size among the model settings;
# version 2 had no encoder names (a branch was there when its backbone was) and no input names, and
# named the encoders' weights after the inputs (`frames.`, `spectrogram.`); versions up to 3 kept
# the speaker head among the network's weights (`speaker_head.`).
_READABLE_VERSIONS = (1, 2, 3, CHECKPOINT_VERSION)
_SPEAKER_HEAD_PREFIX = "speaker_head."


class CheckpointError(AvemotionError, ValueError):
    """A file that is not a usable avemotion checkpoint; the message says why."""


@dataclass
class Checkpoint(ModelCard):
    """What a checkpoint file holds besides the weights: the model's card, and how training ended."""

    epoch: int = 0
    best_metric: float | None = None
    metric_name: str = "val_loss"
    # where an encoder's weights started, by branch (train --init-from), in words
    encoder_origins: dict[str, str] = field(default_factory=dict)
    speaker_normalisation: SpeakerNormalisation | None = None  # with speaker_norm: its last step
    # the encoders' configurations by branch, where their settings do not rebuild them
    encoder_architectures: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def of(cls, model: EmotionNet, features: FeatureSettings, labels: list[str],
           speaker_normalisation: SpeakerNormalisation | None = None, **details) -> Checkpoint:
        """The info of a model trained on inputs made with `features` (and speaker-normalised when
        `speaker_normalisation` is given); `details` are the other fields (epoch, best_metric,
        window_seconds)."""
        return cls(model.settings, list(labels), features, model.inputs,
                   speaker_norm=speaker_normalisation is not None, encoders=model.external_identities(),
                   speaker_normalisation=speaker_normalisation,
                   encoder_architectures=model.encoder_architectures(), **details)


def save_checkpoint(path: str | Path, model: EmotionNet, info: Checkpoint) -> None:
    """Write model and info to one file, atomically (a crash never leaves half a checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "avemotion_version": __version__,
        "card": info.to_dict(),
        "epoch": int(info.epoch),
        "best_metric": None if info.best_metric is None else float(info.best_metric),
        "metric_name": info.metric_name,
        "encoder_origins": dict(info.encoder_origins),
        "speaker_head": _speaker_head_tensors(info.speaker_normalisation),
        "encoder_architectures": {branch: json.dumps(values)
                                  for branch, values in info.encoder_architectures.items()},
        "state_dict": model.state_dict(),
    }
    partial = path.with_name(f".{path.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_checkpoint(path: str | Path, map_location: str = "cpu",
                    weights: str | Path | None = None) -> tuple[EmotionNet, Checkpoint]:
    """Rebuild the model (in eval mode) and its info from a checkpoint file alone; a pretrained
    encoder that runs outside the network (a speech encoder) loads its weights on first use, from
    `weights` (a local folder) or the hub, and refuses weights other than those it recorded."""
    path = Path(path)
    payload = _read_payload(path, map_location)
    try:
        payload = _upgraded(payload)
        card = ModelCard.from_dict(payload["card"])
        settings = ModelSettings(**{**asdict(card.model_settings), "pretrained": False})
        info = Checkpoint(**{**vars(card), "model_settings": settings}, epoch=payload["epoch"],
                          best_metric=payload["best_metric"], metric_name=payload.get("metric_name", ""),
                          encoder_origins=payload.get("encoder_origins", {}),
                          speaker_normalisation=_speaker_normalisation(payload, card.speaker_norm),
                          encoder_architectures={branch: json.loads(text) for branch, text
                                                 in payload.get("encoder_architectures", {}).items()})
        model = EmotionNet(settings, image_size=card.feature_settings.frame_size, weights=weights,
                           identities=card.encoders, architectures=info.encoder_architectures)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: checkpoint does not match this model code ({error})") from error
    return model.eval(), info


def _speaker_head_tensors(normalisation: SpeakerNormalisation | None) -> dict | None:
    if normalisation is None:
        return None
    head = normalisation.head
    return {"kind": head.KIND, **{name: torch.from_numpy(array) for name, array in head.arrays().items()}}


def _speaker_normalisation(payload: dict, speaker_norm: bool) -> SpeakerNormalisation | None:
    """A speaker-normalised model's last step, from its saved head (refused when it is missing)."""
    if not speaker_norm:
        return None
    head = dict(payload.get("speaker_head") or {})
    if not head:
        raise ValueError("a speaker-normalised model without its speaker head")
    kind = head.pop("kind", LinearLayer.KIND)  # format 4 before kernel heads saved none
    arrays = {name: tensor.float().numpy() for name, tensor in head.items()}
    try:
        return SpeakerNormalisation(speaker_head_from_arrays(kind, arrays))
    except KeyError as missing:
        raise ValueError(f"a speaker-normalised model whose speaker head lacks {missing}") from None


def _read_payload(path: Path, map_location: str) -> dict:
    """The checkpoint's dictionary, after checking it is one of ours and of a version we read."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an avemotion checkpoint")
    if payload.get("version") not in _READABLE_VERSIONS:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')} (written by avemotion "
            f"{payload.get('avemotion_version')}); this avemotion {__version__} reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))}"
        )
    return payload


def _upgraded(payload: dict) -> dict:
    """A payload of any readable version in this version's form."""
    if payload["version"] == CHECKPOINT_VERSION:
        return payload
    if payload["version"] == 3:
        return _speaker_head_set_apart(payload)
    settings = dict(payload["model_settings"])
    if payload["version"] == 1:
        settings.pop("image_size", None)
        settings["temporal_hidden"] = settings.pop("lstm_hidden", 256)
    settings["video_encoder"] = "timm_frames" if settings.get("video_backbone") else None
    settings["audio_encoder"] = "timm_spectrogram" if settings.get("audio_backbone") else None
    inputs = [name for name, branch in (("frames", "video_encoder"), ("mel", "audio_encoder")) if settings[branch]]
    card = {"version": 2, "model_settings": settings, "labels": payload["labels"],
            "feature_settings": payload["feature_settings"], "inputs": inputs,
            "window_seconds": payload.get("window_seconds"), "speaker_norm": payload.get("speaker_norm", False)}
    renamed = _renamed_weights(payload["state_dict"])
    return _speaker_head_set_apart({**payload, "card": card, "state_dict": renamed})


def _speaker_head_set_apart(payload: dict) -> dict:
    """Version 3's form (and the upgraded earlier ones) with the speaker head out of the weights."""
    state_dict = dict(payload["state_dict"])
    head = {key[len(_SPEAKER_HEAD_PREFIX):]: state_dict.pop(key)
            for key in list(state_dict) if key.startswith(_SPEAKER_HEAD_PREFIX)}
    return {**payload, "state_dict": state_dict, "speaker_head": head or None}


# Version 2's names of the encoders' weights and feature statistics -> this version's.
_OLD_PREFIXES = {"frames.": "encoders.video.", "spectrogram.": "encoders.audio.",
                 "frame_feature_": "video_feature_"}


def _renamed_weights(state_dict: dict) -> dict:
    renamed = {}
    for key, value in state_dict.items():
        for old, new in _OLD_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed
