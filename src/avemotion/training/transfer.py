"""Transfer: start a model's frame encoder from a trained model's (``train --init-from``).

A still-face model trained on a face corpus (FER2013) knows faces; its frame encoder can start the
video branch of any model with the same backbone: another still model, a video-only model or a
hybrid's video branch, each with its own new head for its own labels. The checkpoint of the model
trained so records where its encoder came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avemotion.errors import UsageError
from avemotion.ready import ReadyModel, is_ready_model
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.models import EmotionNet

BRANCH = "video"  # the branch whose encoder transfers: the frame encoder


def init_frame_encoder(model: EmotionNet, checkpoint: str | Path, frame_size: int) -> str:
    """Copy the frame encoder of the model in `checkpoint` (or of a ready model, by name) into
    `model`'s video branch; returns where it came from, in words, for the new checkpoint.
    `frame_size` is the new model's frames'."""
    if BRANCH not in model.encoders:
        raise UsageError(f"--init-from starts a frame encoder, and {model.settings.name} has no video branch")
    if is_ready_model(checkpoint):
        return init_from_ready_model(model, str(checkpoint))
    checkpoint = Path(checkpoint)
    source, info = load_checkpoint(checkpoint)
    target_backbone = model.settings.video_backbone
    if BRANCH not in source.encoders:
        raise UsageError(f"{checkpoint}: {info.model_name} has no frame encoder to start from")
    same_encoder = source.settings.video_encoder == model.settings.video_encoder
    if source.settings.video_backbone != target_backbone or not same_encoder:
        raise UsageError(f"{checkpoint}: its frame encoder is {source.settings.video_backbone}, "
                         f"{model.settings.name}'s is {target_backbone}; start from a model with the same one")
    try:
        model.encoders[BRANCH].load_state_dict(source.encoders[BRANCH].state_dict())
    except RuntimeError as error:  # a ViT's position embeddings are made for one frame size
        raise UsageError(f"{checkpoint}: its frame encoder was trained on {info.feature_settings.frame_size} px "
                         f"frames and cannot read {frame_size} px ones; preprocess with "
                         f"--frame-size {info.feature_settings.frame_size}") from error
    return (f"{checkpoint.resolve()} ({info.model_name}, {len(info.labels)} labels: {', '.join(info.labels)}; "
            f"{info.feature_settings.frame_size} px frames)")


def init_from_ready_model(model: EmotionNet, name: str) -> str:
    """Copy a ready model's face encoder (its frame encoder's weights, shipped beside its ONNX file
    in float16) into `model`'s video branch, which init_frame_encoder found there."""
    from safetensors.numpy import load_file

    ready = ReadyModel.named(name)
    face = ready.manifest["parts"]["face"]
    if (model.settings.video_backbone, model.settings.video_encoder) != (face["backbone"], face["video_encoder"]):
        raise UsageError(f"{name}: its face encoder is {face['backbone']}, {model.settings.name}'s is "
                         f"{model.settings.video_backbone}; start from a model with the same one "
                         "(mobilenetv2_lstm_whisper_base_layers: its face and its voice's features)")
    weights = {key: torch.from_numpy(value.astype(np.float32) if value.dtype == np.float16 else value)
               for key, value in load_file(ready.folder / face["encoder_file"]).items()}
    model.encoders[BRANCH].load_state_dict(weights)
    return f"{name}'s face encoder ({face['backbone']}, {', '.join(face['labels'])}; {face['frame_size']} px faces)"
