"""One-file checkpoints that rebuild a model with no other input.

A checkpoint holds the model's name and settings, the feature settings its inputs were made with,
the label names, the weights, the epoch and the best metric, so prediction uses exactly what
training used.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from avemotion import __version__
from avemotion.features import FeatureSettings
from avemotion.models import EmotionNet, ModelSettings

CHECKPOINT_FORMAT = "avemotion-checkpoint"
CHECKPOINT_VERSION = 2
# Version 1 named the temporal width `lstm_hidden` and kept the frame size among the model settings.
_READABLE_VERSIONS = (1, CHECKPOINT_VERSION)


class CheckpointError(ValueError):
    """A file that is not a usable avemotion checkpoint; the message says why."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds besides the weights."""

    model_settings: ModelSettings
    feature_settings: FeatureSettings
    labels: list[str]
    epoch: int
    best_metric: float | None
    metric_name: str = "val_loss"
    window_seconds: float | None = None  # typical clip length of the training corpus
    speaker_norm: bool = False  # has a speaker-normalisation last layer (avemotion.speakers)


def save_checkpoint(path: str | Path, model: EmotionNet, info: Checkpoint) -> None:
    """Write model and info to one file, atomically (a crash never leaves half a checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "avemotion_version": __version__,
        "model_settings": asdict(info.model_settings),
        "feature_settings": asdict(info.feature_settings),
        "labels": list(info.labels),
        "epoch": int(info.epoch),
        "best_metric": None if info.best_metric is None else float(info.best_metric),
        "metric_name": info.metric_name,
        "window_seconds": info.window_seconds,
        "speaker_norm": info.speaker_norm,
        "state_dict": model.state_dict(),
    }
    partial = path.with_name(f".{path.name}.partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[EmotionNet, Checkpoint]:
    """Rebuild the model (in eval mode) and its info from a checkpoint file alone."""
    path = Path(path)
    payload = _read_payload(path, map_location)
    try:
        model_settings = ModelSettings(**{**_upgraded(payload), "pretrained": False})
        feature_settings = _feature_settings(payload["feature_settings"])
        info = Checkpoint(model_settings, feature_settings, list(payload["labels"]),
                          payload["epoch"], payload["best_metric"], payload.get("metric_name", ""),
                          payload.get("window_seconds"), payload.get("speaker_norm", False))
        model = EmotionNet(model_settings, image_size=feature_settings.frame_size)
        if info.speaker_norm:
            model.add_speaker_head()
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path}: checkpoint does not match this model code ({error})") from error
    return model.eval(), info


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
    """The model settings of any readable version, in this version's fields."""
    settings = dict(payload["model_settings"])
    if payload["version"] == 1:
        settings.pop("image_size", None)
        settings["temporal_hidden"] = settings.pop("lstm_hidden", 256)
    return settings


def _feature_settings(values: dict) -> FeatureSettings:
    """FeatureSettings from a saved dictionary, refusing fields this version does not know."""
    known = {field.name for field in fields(FeatureSettings)}
    unknown = set(values) - known
    if unknown:
        raise KeyError(f"unknown feature settings {sorted(unknown)}")
    return FeatureSettings(**values)
