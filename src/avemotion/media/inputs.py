"""The inputs a model reads, by name, the feature settings they are made with, and what stands in
for an input a clip does not have.

Every stage carries a clip's inputs as a mapping from these names to arrays, never by position:

- ``frames``: uint8 (n_frames, 3, frame_size, frame_size), RGB frames spread over the clip (a
  still image is one frame: (1, 3, frame_size, frame_size), grayscale replicated to RGB);
- ``mel``: float16 (1, n_mels, mel_frames), the log-Mel spectrogram of its voice, in dB;
- ``waveform``: float16 (waveform_samples,), its voice at 16 kHz, mono, cut or zero-padded to
  ``waveform_seconds`` (stored only for models that read it).

A model's encoders declare which of them they read (:mod:`avemotion.training.models`). This module imports
no decoder and no deep-learning library, so the model code and the runtime share it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from avemotion.settings import setting

SAMPLE_RATE = 16_000  # Hz, the audio front end's rate
N_MELS = 64  # Mel bins
N_FFT = 1024  # samples per FFT window (64 ms at 16 kHz)
HOP_LENGTH = 256  # samples between windows (16 ms at 16 kHz)
MEL_FRAMES = 128  # time steps of the spectrogram after resizing
N_FRAMES = 8  # video frames per clip
FRAME_SIZE = 224  # pixels, height and width of each frame
WAVEFORM_SECONDS = 6.0  # the longest stretch of voice a waveform encoder reads, from the start

FRAMES, MEL, WAVEFORM = "frames", "mel", "waveform"
# The modality each input is made from: a clip must have it for the input to exist.
INPUT_MODALITY = {FRAMES: "video", MEL: "audio", WAVEFORM: "audio"}
DEFAULT_INPUTS = (FRAMES, MEL)  # what the paper's models read, and what `preprocess` stores

# A metadata table's `modality` value -> the modalities its clip has. A still image is a video of
# one frame without a voice, so every model with a video branch reads it.
CLIP_MODALITIES = {"audio-video": ("video", "audio"), "audio": ("audio",), "video": ("video",),
                   "image": ("video",)}


# Feature settings added after caches were made, with their defaults (off): see FeatureSettings.digest.
LATER_SETTINGS = {"grayscale": False}


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that determines a clip's arrays; its hash names the cache."""

    n_frames: int = setting(N_FRAMES, "video frames per clip, equally spaced from first to last")
    frame_size: int = setting(FRAME_SIZE, "side of the square RGB frames, pixels")
    sample_rate: int = setting(SAMPLE_RATE, "audio rate after resampling, Hz")
    n_mels: int = setting(N_MELS, "Mel bins")
    n_fft: int = setting(N_FFT, "FFT window, samples")
    hop_length: int = setting(HOP_LENGTH, "samples between FFT windows")
    mel_frames: int = setting(MEL_FRAMES, "time steps of the spectrogram after resizing")
    top_db: float = setting(80.0, "dynamic range kept by the dB conversion")
    face_crop: bool = setting(False, "crop a square around the detected face before resizing")
    waveform_seconds: float = setting(WAVEFORM_SECONDS, "voice kept for waveform encoders, seconds "
                                      "from the start (shorter voices are zero-padded)")
    grayscale: bool = setting(False, "frames in grayscale, replicated to the three channels (how a model "
                              "trained on grayscale faces reads colour video)")

    @property
    def waveform_samples(self) -> int:
        return round(self.waveform_seconds * self.sample_rate)

    def digest(self) -> str:
        """A short hash of the settings: equal settings, equal digest; any change, a new one. A
        setting added after caches existed counts only when it is set, so that they keep their names."""
        values = {name: value for name, value in asdict(self).items()
                  if name not in LATER_SETTINGS or value != LATER_SETTINGS[name]}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """The inputs these settings make, in words (for --help and `avemotion models`)."""
        return (f"{self.n_frames} frames of {self.frame_size}x{self.frame_size} px, a "
                f"{self.n_mels}x{self.mel_frames} log-Mel spectrogram at {self.sample_rate // 1000} kHz")


def input_shape(name: str, settings: FeatureSettings, count: int | None = None) -> tuple[int, ...]:
    """The shape of a clip's input `name`; `count` replaces the leading count of frames (0: none)."""
    if name == FRAMES:
        size = settings.frame_size
        return (settings.n_frames if count is None else count, 3, size, size)
    if name == MEL:
        return (1, settings.n_mels, settings.mel_frames if count is None else count)
    if name == WAVEFORM:
        return (settings.waveform_samples if count is None else count,)
    raise KeyError(f"unknown input {name!r}; the inputs are {', '.join(INPUT_MODALITY)}")


INPUT_DTYPES = {FRAMES: np.uint8, MEL: np.float16, WAVEFORM: np.float16}


def missing_input(name: str, settings: FeatureSettings) -> np.ndarray:
    """What a clip without the input's modality stores: an empty array (no frames, no time steps,
    no samples), so that such clips batch together for a model that does not read it."""
    return np.zeros(input_shape(name, settings, count=0), INPUT_DTYPES[name])


def blank_input(name: str, settings: FeatureSettings) -> np.ndarray:
    """A full-size input of zeros: what a live capture gives a model for an input it does not read."""
    return np.zeros(input_shape(name, settings), INPUT_DTYPES[name])


def modalities_of(inputs: tuple[str, ...]) -> tuple[str, ...]:
    """The modalities some inputs are made from, video first."""
    present = {INPUT_MODALITY[name] for name in inputs}
    return tuple(modality for modality in ("video", "audio") if modality in present)


def inputs_present(inputs: tuple[str, ...], clip_modality: str) -> tuple[str, ...]:
    """Those of `inputs` a clip of this table modality can give."""
    has = CLIP_MODALITIES[clip_modality]
    return tuple(name for name in inputs if INPUT_MODALITY[name] in has)


def fit_waveform(samples: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """A voice at the settings' rate as a waveform input: its first waveform_seconds, zero-padded."""
    length = settings.waveform_samples
    fitted = np.zeros(length, np.float16)
    kept = samples[:length]
    fitted[: len(kept)] = kept
    return fitted


# A voice whose loudest Mel bin is below this (dB re full-scale power) is silence: digital silence
# is -100 dB, white noise at -80 dBFS about -60 dB, speech 0 dB and above.
SILENT_DB = -70.0
SILENT_AMPLITUDE = 10 ** (SILENT_DB / 20)  # the same for a waveform's loudest sample


def voice_is_silent(arrays: dict[str, np.ndarray]) -> bool:
    """Whether the voice among a clip's (or a window's) inputs is silence: nothing to judge."""
    if MEL in arrays and arrays[MEL].size:
        return float(arrays[MEL].max()) < SILENT_DB
    if WAVEFORM in arrays and arrays[WAVEFORM].size:
        return float(np.abs(arrays[WAVEFORM]).max()) < SILENT_AMPLITUDE
    return False


def embedding_input(branch: str) -> str:
    """The name an exported network gives the embedding of a branch whose encoder runs outside it
    (a pretrained speech encoder): ``audio_embedding``."""
    return f"{branch}_embedding"


def network_inputs(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs as a network takes them: the stored float16 arrays as float32, frames as uint8."""
    return {name: array.astype(np.float32) if array.dtype == np.float16 else array
            for name, array in arrays.items()}
