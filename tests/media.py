"""Writers of small real media files for tests: any size, frame rate, audio rate and channel count."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_clip(
    path: Path,
    frames: int = 30,
    size: tuple[int, int] = (160, 120),
    fps: int = 30,
    audio_rate: int | None = 22_050,
    channels: int = 2,
    video: bool = True,
) -> Path:
    """Write a clip whose frame i is filled with grey level (i * 7) % 256 and whose audio is a tone."""
    codec = {".mp4": "mpeg4", ".mov": "mpeg4", ".mkv": "mpeg4", ".webm": "libvpx"}.get(path.suffix, "mpeg4")
    audio_codec = "libopus" if path.suffix == ".webm" else "aac"
    with av.open(str(path), "w") as container:
        video_stream = container.add_stream(codec, rate=fps) if video else None
        if video_stream is not None:
            video_stream.width, video_stream.height = size
            video_stream.pix_fmt = "yuv420p"
        audio_stream = None
        if audio_rate:
            audio_rate = 48_000 if audio_codec == "libopus" else audio_rate
            audio_stream = container.add_stream(audio_codec, rate=audio_rate)
            audio_stream.layout = "stereo" if channels == 2 else "mono"
        if video_stream is not None:
            _write_video(container, video_stream, frames, size)
        if audio_stream is not None:
            _write_audio(container, audio_stream, frames / fps, channels)
    return path


def _write_video(container, stream, frames: int, size: tuple[int, int]) -> None:
    for i in range(frames):
        image = np.full((size[1], size[0], 3), (i * 7) % 256, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, stream.average_rate or 30)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _write_audio(container, stream, seconds: float, channels: int) -> None:
    rate = stream.codec_context.sample_rate
    total = int(seconds * rate)
    chunk = stream.codec_context.frame_size or 1024
    t = np.arange(total) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    planar = np.tile(tone, (channels, 1))
    for start in range(0, total, chunk):
        piece = np.ascontiguousarray(planar[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo" if channels == 2 else "mono")
        frame.sample_rate = rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
