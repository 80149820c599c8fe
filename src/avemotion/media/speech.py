"""Pretrained speech encoders, frozen: a voice at 16 kHz in, its hidden states pooled over time out.

Two families, each by the hub names its own library downloads and caches, or a local folder:

- ``whisper``: Whisper's encoder through CTranslate2 (faster-whisper's models: ``tiny``, ``base``,
  ``small`` … or a converted model folder), int8 on a CPU, float16 on a GPU, no PyTorch. CTranslate2
  gives the last layer's output only.
- ``transformers``: any audio ``AutoModel`` (WavLM, HuBERT, wav2vec 2.0, data2vec, Whisper's encoder)
  by hub name or folder, every layer's hidden states (the SUPERB / EmoBox protocol). Needs PyTorch.
  Whisper's encoder runs on the voice's own frames, as CTranslate2 runs it, so that its last layer
  is what the ``whisper`` family gives.

Either way a clip's embedding is float32 (layers, 2 × width): each layer's mean and standard
deviation over time. A voice longer than the encoder's window is encoded in chunks whose hidden
states are pooled together. An encoder is known by its :class:`EncoderIdentity` (family, name, a
digest of its weight files), which names the embedding cache and travels in a model's card, so a
model never runs with other weights than it was trained on.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from avemotion.errors import AvemotionError, UsageError, WeightsUnavailable
from avemotion.media.inputs import WAVEFORM

SPEECH_INPUT = WAVEFORM  # what every speech encoder reads
SPEECH_RATE = 16_000  # Hz: every family's input rate
MIN_VOICE_SECONDS = 0.1  # a shorter voice is padded with silence to this
# Whisper's positional embeddings cover 30 s: 3,000 log-Mel frames of 10 ms.
WHISPER_CHUNK_FRAMES = 3000
TRANSFORMERS_CHUNK_SECONDS = 20.0  # self-supervised encoders' attention grows with the square of length
WEIGHT_FILES = ("model.bin", "*.safetensors", "pytorch_model*.bin")


class WeightsMismatch(AvemotionError, ValueError):
    """Weights other than those a model was trained with."""


@dataclass(frozen=True)
class EncoderIdentity:
    """Which pretrained encoder, exactly: its family, the name it was asked for, and a digest of
    its weight files (what makes two encoders the same)."""

    family: str  # "whisper" or "transformers"
    name: str  # the hub name or the folder it was loaded from
    digest: str  # SHA-256 of the weight files, first 16 hex digits
    layers: int  # hidden-state layers pooled
    width: int  # features per layer and time step

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EncoderIdentity:
        return cls(**values)

    def describe(self) -> str:
        return f"{self.family} {self.name} (weights {self.digest})"


class SpeechEncoder:
    """A loaded pretrained encoder: voices in, pooled hidden states out. Thread-safe: a server's
    threads may embed at once."""

    identity: EncoderIdentity

    @property
    def embedding_shape(self) -> tuple[int, int]:
        return (self.identity.layers, 2 * self.identity.width)

    def embed(self, voices: np.ndarray) -> np.ndarray:
        """(B, samples) voices at 16 kHz, zero-padded at the end -> (B, layers, 2 × width)."""
        return np.stack([self.embed_one(voiced(np.asarray(voice, np.float32))) for voice in voices])

    def embed_one(self, voice: np.ndarray) -> np.ndarray:
        """A voice -> (layers, 2 × width): its hidden states' mean and spread over time."""
        return mean_and_std(self.hidden_states(voice))

    def hidden_states(self, voice: np.ndarray) -> np.ndarray:
        """A voice at 16 kHz -> float32 (layers, time, width): every pooled layer's states, frame by frame."""
        raise NotImplementedError


def voiced(samples: np.ndarray) -> np.ndarray:
    """A voice without the zeros that pad its end to the input's length (exact zeros: digital
    silence carries nothing to pool), and at least MIN_VOICE_SECONDS long."""
    nonzero = np.flatnonzero(samples)
    kept = samples[: nonzero[-1] + 1] if len(nonzero) else samples[:0]
    shortest = round(MIN_VOICE_SECONDS * SPEECH_RATE)
    return np.pad(kept, (0, max(0, shortest - len(kept))))


def speed_perturbed(voices: np.ndarray, speed: float) -> np.ndarray:
    """(B, samples) voices, zero-padded at the end, each played `speed` times as fast: resampled
    to last 1/speed as long at the same rate, and zero-padded or cut to the same length again."""
    if speed <= 0:
        raise ValueError(f"a speed must be positive, not {speed:g}")
    played = np.zeros_like(voices, dtype=np.float32)
    for row, voice in enumerate(voices):
        nonzero = np.flatnonzero(voice)
        if len(nonzero) == 0:
            continue
        # a fractional input rate: soxr resamples by the exact ratio
        faster = soxr.resample(voice[: nonzero[-1] + 1].astype(np.float32), speed, 1.0)
        played[row, : min(len(faster), voices.shape[1])] = faster[: voices.shape[1]]
    return played


def even_frames(mel):
    """A log-Mel spectrogram (…, frames) cut to an even count of frames, two at least: Whisper's
    stride-2 convolution wants one."""
    return mel[..., : max(2, mel.shape[-1] // 2 * 2)]


def mean_and_std(hidden: np.ndarray) -> np.ndarray:
    """(layers, time, width) -> (layers, 2 × width): each layer's mean and spread over time."""
    return np.concatenate([hidden.mean(axis=1), hidden.std(axis=1)], axis=1).astype(np.float32)


class WhisperEncoder(SpeechEncoder):
    """Whisper's encoder in CTranslate2, on faster-whisper's log-Mel features of the unpadded voice."""

    def __init__(self, folder: Path, name: str, digest: str, device: str = "auto", threads: int = 0) -> None:
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
        compute_type = "float16" if device == "cuda" else "int8"
        self.model = ctranslate2.models.Whisper(str(folder), device=device, compute_type=compute_type,
                                                intra_threads=threads)
        self.to_storage = ctranslate2.StorageView.from_array
        self.features = FeatureExtractor(feature_size=self.model.n_mels)
        width = int(self._hidden(np.zeros((self.model.n_mels, 2), np.float32)).shape[-1])
        self.identity = EncoderIdentity("whisper", name, digest, layers=1, width=width)

    def hidden_states(self, voice: np.ndarray) -> np.ndarray:
        mel = self.features(voice, padding=0)
        mel = even_frames(mel)
        chunks = [mel[:, start : start + WHISPER_CHUNK_FRAMES]
                  for start in range(0, mel.shape[1], WHISPER_CHUNK_FRAMES)]
        hidden = np.concatenate([self._hidden(chunk) for chunk in chunks if chunk.shape[1] >= 2])
        return hidden[np.newaxis]

    def _hidden(self, mel: np.ndarray) -> np.ndarray:
        """(n_mels, frames) -> (frames / 2, width)."""
        batch = self.to_storage(np.ascontiguousarray(mel[np.newaxis], np.float32))
        return np.asarray(self.model.encode(batch, to_cpu=True))[0]


class TransformersEncoder(SpeechEncoder):
    """An audio AutoModel with its feature extractor; every layer's hidden states."""

    def __init__(self, folder: str, name: str, digest: str, device: str = "auto") -> None:
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        self.torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.features = AutoFeatureExtractor.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder)
        # an encoder-decoder (Whisper) lends its encoder; the others are encoders
        self.model = (model.get_encoder() if model.config.is_encoder_decoder else model).eval().to(self.device)
        self.whisper = model.config.is_encoder_decoder
        config = model.config
        layers = (getattr(config, "encoder_layers", None) or config.num_hidden_layers) + 1  # + the input embedding
        width = getattr(config, "d_model", None) or config.hidden_size
        self.identity = EncoderIdentity("transformers", name, digest, layers, width)
        self.lock = threading.Lock()  # one forward pass at a time: the model is shared

    def hidden_states(self, voice: np.ndarray) -> np.ndarray:
        return in_chunks(voice, self._hidden)

    def _hidden(self, voice: np.ndarray) -> np.ndarray:
        """A chunk of voice -> (layers, time, width)."""
        if self.whisper:
            return self._whisper_hidden(voice)
        prepared = self.features(voice, sampling_rate=SPEECH_RATE, return_tensors="pt")
        with self.lock, self.torch.no_grad():
            output = self.model(prepared["input_values"].to(self.device), output_hidden_states=True)
        return self.torch.stack(output.hidden_states)[:, 0].float().cpu().numpy()

    def _whisper_hidden(self, voice: np.ndarray) -> np.ndarray:
        """Whisper's encoder on the voice's own log-Mel frames, as the CTranslate2 family runs it:
        the input embedding, each layer's output, the last through the final layer norm (the
        encoder's output). Its forward insists on 30 s of input, padded with a silence that every
        frame then attends to, at ten times the arithmetic for a 3 s voice; its layers take any
        length its positions cover."""
        mel = self.features(voice, sampling_rate=SPEECH_RATE, return_tensors="pt", padding="longest",
                            truncation=False)["input_features"]
        mel = even_frames(mel)
        with self.lock, self.torch.no_grad():
            states = whisper_encoder_states(self.model, mel.to(self.device))
        return states[:, 0].float().cpu().numpy()


def whisper_encoder_states(encoder, mel):
    """A transformers Whisper encoder on log-Mel frames (B, mels, frames), torch tensors: the input
    embedding and each layer's output, the last through the final layer norm (the encoder's
    output), stacked (layers, B, frames / 2, width). Its positions are sliced to the frames' count,
    which its own forward does not allow (it insists on 30 s)."""
    import torch

    gelu = torch.nn.functional.gelu
    frames = gelu(encoder.conv2(gelu(encoder.conv1(mel)))).transpose(1, 2)
    hidden = frames + encoder.embed_positions.weight[: frames.shape[1]]
    states = [hidden]
    for layer in encoder.layers:
        hidden = layer(hidden, None)
        states.append(hidden)
    states[-1] = encoder.layer_norm(hidden)
    return torch.stack(states)


def in_chunks(voice: np.ndarray, hidden) -> np.ndarray:
    """A voice's hidden states (layers, time, width), `hidden` of each TRANSFORMERS_CHUNK_SECONDS of
    it in turn, joined over time."""
    chunk = round(TRANSFORMERS_CHUNK_SECONDS * SPEECH_RATE)
    return np.concatenate([hidden(voice[start : start + chunk]) for start in range(0, len(voice), chunk)], axis=1)


FAMILIES = ("whisper", "transformers")


class LazySpeechEncoder:
    """An encoder by family and name, loaded on first use (once, whichever thread asks first), and
    refusing weights other than `expected`'s when given."""

    def __init__(self, family: str, name: str, weights: str | Path | None = None,
                 expected: EncoderIdentity | None = None, exact: bool = True, whisper_onnx: bool = False) -> None:
        self.family, self.name, self.weights, self.expected = family, name, weights, expected
        self.exact, self.whisper_onnx = exact, whisper_onnx
        self._encoder: SpeechEncoder | None = None
        self._loading = threading.Lock()

    @classmethod
    def of(cls, identity: EncoderIdentity, weights: str | Path | None = None, exact: bool = True,
           whisper_onnx: bool = False) -> LazySpeechEncoder:
        """The encoder a model recorded, from `weights` or the hub (`exact`, `whisper_onnx`: see
        load_speech_encoder)."""
        return cls(identity.family, identity.name, weights, identity, exact, whisper_onnx)

    @property
    def encoder(self) -> SpeechEncoder:
        with self._loading:
            if self._encoder is None:
                self._encoder = load_speech_encoder(self.family, self.name, self.weights, self.expected,
                                                    exact=self.exact, whisper_onnx=self.whisper_onnx)
        return self._encoder

    @property
    def identity(self) -> EncoderIdentity | None:
        """The recorded identity, or the loaded encoder's (None before either is known)."""
        if self._encoder is not None:
            return self._encoder.identity
        return self.expected

    def embed(self, voices: np.ndarray) -> np.ndarray:
        return self.encoder.embed(voices)


def load_speech_encoder(family: str, name: str, weights: str | Path | None = None,
                        expected: EncoderIdentity | None = None, threads: int = 0,
                        exact: bool = True, whisper_onnx: bool = False) -> SpeechEncoder:
    """A pretrained encoder by family and name, from `weights` (a local folder) when given, else
    from the hub or its cache. With `expected`, weights of another digest are refused; or, not
    `exact`, weights of another shape (layers and width): the same model stored another way (the
    hub's float32 file of weights a model was trained on in a float16 conversion). With
    `whisper_onnx`, a transformers Whisper runs in ONNX Runtime (avemotion.media.whisper_onnx: no
    PyTorch once exported)."""
    if family not in FAMILIES:
        raise UsageError(f"unknown speech-encoder family {family!r}; choose one of {', '.join(FAMILIES)}")
    from avemotion.media.whisper_onnx import WhisperOnnxEncoder, is_whisper_folder  # imports this module

    folder = weights_folder(family, name, weights)
    digest = weights_digest(folder)
    if expected is not None and exact and digest != expected.digest:
        raise WeightsMismatch(
            f"{folder}: these {family} weights (digest {digest}) are not the ones the model "
            f"was trained with ({expected.describe()}); pass those with --weights PATH")
    try:
        if family == "whisper":
            encoder = WhisperEncoder(folder, name, digest, threads=threads)
        elif whisper_onnx and is_whisper_folder(folder):
            encoder = WhisperOnnxEncoder(folder, name, digest)
        else:
            encoder = TransformersEncoder(str(folder), name, digest)
    except (ImportError, UsageError):
        raise
    except Exception as error:  # the libraries raise their own kinds for a bad folder
        raise WeightsUnavailable(f"{folder}: not a usable {family} model ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0][:200] if str(error) else ''})") from error
    shape = (encoder.identity.layers, encoder.identity.width)
    if expected is not None and shape != (expected.layers, expected.width):
        raise WeightsMismatch(f"{folder}: this {family} model has {shape[0]} layers of {shape[1]} features, "
                              f"not the {expected.layers} of {expected.width} of {expected.describe()}")
    return encoder


def weights_folder(family: str, name: str, weights: str | Path | None) -> Path:
    """The folder holding the encoder: `weights`, a subfolder of it named after the model, the
    name itself when it is a folder, or the hub's copy."""
    if weights is not None:
        weights = Path(weights)
        short = name.rstrip("/").split("/")[-1]
        for candidate in (weights, weights / short, weights / f"faster-whisper-{short}"):
            if _has_weights(candidate):
                return candidate
        raise WeightsUnavailable(f"{weights}: no {family} weights for {name} there (expected "
                                 f"{WEIGHT_FILES[0] if family == 'whisper' else 'model.safetensors'} in it, "
                                 f"or in {short}/ inside it)")
    if _has_weights(Path(name)):
        return Path(name)
    try:
        return Path(_download(family, name))
    except ImportError:
        raise
    except Exception as error:  # the hub client raises many kinds; all mean the same to a user
        raise WeightsUnavailable(_weights_help(family, name, error)) from error


def _download(family: str, name: str) -> str:
    """The hub's copy of a model (downloaded once into the hub cache), by its library's names."""
    if family == "whisper":
        from faster_whisper.utils import download_model

        return download_model(name)
    from huggingface_hub import snapshot_download

    return snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt"])


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES)


def _weights_help(family: str, name: str, error: Exception) -> str:
    """The one-paragraph message shown when an encoder's weights cannot be had."""
    fetch = (f"`huggingface-cli download Systran/faster-whisper-{name}`" if family == "whisper" and "/" not in name
             else f"`huggingface-cli download {name}`")
    return (f"Could not load the {family} encoder {name} from the Hugging Face hub or its cache "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}). "
            "On a machine with internet access it downloads once into the hub cache "
            f"(~/.cache/huggingface); offline, download it elsewhere (for example {fetch}) and pass "
            "its folder with --weights PATH.")


def weights_digest(folder: Path) -> str:
    """SHA-256 (16 hex digits) of a model folder's weight files, remembered per file state."""
    files = sorted(path for pattern in WEIGHT_FILES for path in folder.glob(pattern))
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(file_sha256(path).encode())
    return hasher.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """A file's SHA-256, hashed again only when its size or modification time changes."""
    stat = path.stat()
    return _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """One file's SHA-256 (size and mtime are the cache key: a changed file is hashed again)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 22), b""):
            hasher.update(block)
    return hasher.hexdigest()
