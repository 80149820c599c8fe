"""Where somebody speaks: Silero's voice-activity detector (the ONNX model faster-whisper ships, in
ONNX Runtime), run as one stateful pass over a stream, so that a long recording is judged frame by
frame in bounded memory and no emotion is invented where nobody speaks.

The detector is recurrent: a frame's speech probability depends on everything before it, so it is
never restarted at a window's start (the same speech, seen from a window's start, can go unnoticed).
"""

from __future__ import annotations

import functools
import os

import numpy as np

from avemotion.onnx_sessions import cpu_session

RATE = 16_000  # Hz: what the detector reads
FRAME = 512  # samples per detector frame (32 ms)
CONTEXT = 64  # samples of the previous frame each frame is given
SPEECH_PROBABILITY = 0.5  # Silero's own threshold
# A stretch with less detected speech than this holds no voice: little, since only a stretch where
# nobody speaks at all is to be left unjudged (a word's syllables are often found in part).
MIN_SPEECH_SECONDS = 0.1


@functools.lru_cache(maxsize=1)
def _session():
    """The detector's ONNX Runtime session, or None without the speech install (faster-whisper)."""
    try:
        from faster_whisper.utils import get_assets_path
    except ImportError:
        return None
    return cpu_session(os.path.join(get_assets_path(), "silero_vad_v6.onnx"), threads=1)


def available() -> bool:
    """Whether the detector can run here (it ships with the speech install)."""
    return _session() is not None


class VoiceActivity:
    """The speech probability of every 32 ms frame of a 16 kHz stream, fed as it arrives. Not
    shared between threads: each stream has its own."""

    def __init__(self) -> None:
        self.state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
        self.pending = np.zeros(0, np.float32)
        self.context = np.zeros(CONTEXT, np.float32)
        self.speech: list[bool] = []  # per frame since the start

    def add(self, samples: np.ndarray) -> None:
        """Run the detector over the whole frames now available."""
        self.pending = np.concatenate([self.pending, samples.astype(np.float32)])
        whole = len(self.pending) // FRAME * FRAME
        if not whole:
            return
        frames, self.pending = self.pending[:whole].reshape(-1, FRAME), self.pending[whole:]
        contexts = np.concatenate([self.context[np.newaxis], frames[:-1, -CONTEXT:]])
        self.context = frames[-1, -CONTEXT:].copy()
        probabilities, hidden, cell = _session().run(
            None, {"input": np.concatenate([contexts, frames], axis=1), "h": self.state[0], "c": self.state[1]})
        self.state = (hidden, cell)
        self.speech += list(np.asarray(probabilities).ravel() >= SPEECH_PROBABILITY)

    def has_voice(self, start: int, length: int) -> bool:
        """Whether the stretch of `length` samples from `start` (both in samples) holds speech."""
        first, last = start // FRAME, -(-(start + length) // FRAME)
        return sum(self.speech[first:last]) * FRAME >= MIN_SPEECH_SECONDS * RATE
