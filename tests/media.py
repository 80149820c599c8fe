"""Small real media files for tests: any size, frame rate, audio rate and channel count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avemotion.datasets.synth import write_media


def write_clip(
    path: Path,
    frames: int = 30,
    size: tuple[int, int] = (160, 120),
    fps: int = 30,
    audio_rate: int | None = 22_050,
    channels: int = 2,
    video: bool = True,
    level: int | None = None,
    tone_hz: float = 440.0,
) -> Path:
    """Write a clip whose frame i is filled with grey level (i * 7) % 256 (or `level` throughout)
    and whose audio is a tone_hz tone at amplitude 0.3 (on every channel)."""
    images = None
    if video:
        width, height = size
        images = [np.full((height, width, 3), (i * 7) % 256 if level is None else level, dtype=np.uint8)
                  for i in range(frames)]
    tone = None
    if audio_rate:
        t = np.arange(int(frames / fps * audio_rate)) / audio_rate
        tone = np.tile(0.3 * np.sin(2 * np.pi * tone_hz * t), (channels, 1)).astype(np.float32)
    return write_media(path, images, fps=fps, audio=tone, audio_rate=audio_rate or 16_000,
                       channels=channels)
