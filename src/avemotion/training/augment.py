"""Augmentations of training clips.

- The still-image recipe's augmentation of training frames: a random mirror, shift, scale and small
  rotation of each clip, drawn per clip and laid identically over all its frames (so that a video's
  motion is kept), as one affine resampling of the whole batch. The ranges are the face-expression
  field's usual ones: faces are near-symmetric and roughly centred, so mirroring is free, and
  shifts of a tenth of the side, scales within 10 % and rotations within 10 degrees keep the face
  in view.
- Speed perturbation of training voices (Ko et al., 2015): each voice played a little faster or
  slower, its pitch and formants moved with its tempo, as a speaker with a shorter or longer vocal
  tract who talks faster or slower would sound. `--speed-perturbation` fits the frozen speech
  encoders' probe on the voices and these copies (docs/studies/speed-perturbation.md). The function
  that plays them, :func:`avemotion.media.speech.speed_perturbed`, needs no torch: a model trained
  with `--test-time-speeds` plays the voices it judges too.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

MAX_ROTATION_DEGREES = 10.0
MAX_SCALE_CHANGE = 0.10  # the face is shown between 0.9 and 1.1 times its size
MAX_SHIFT = 0.10  # of the frame's side, each way


def jitter_frames(frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, T, 3, H, W) frames (uint8 or float, 0–255) -> the same shape in float, each clip mirrored
    with probability one half, shifted, scaled and rotated; the border pixels fill what moves in."""
    batch, steps = frames.shape[:2]
    draw = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle = draw(batch) * math.radians(MAX_ROTATION_DEGREES)
    zoom = 1 + draw(batch) * MAX_SCALE_CHANGE
    mirror = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    shift = draw(batch, 2) * MAX_SHIFT * 2  # affine_grid's coordinates span 2 per side
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], dim=1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], dim=1)], dim=1)
    theta = theta.to(frames.device).repeat_interleave(steps, dim=0)  # one transform per clip
    images = frames.flatten(0, 1).float()
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    return moved.view(frames.shape)
