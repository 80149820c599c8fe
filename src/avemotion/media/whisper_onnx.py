"""Whisper's encoder with every hidden state, in ONNX Runtime: the transformers family's Whisper
without PyTorch when predicting.

The first time a Whisper folder is read this way, its encoder is exported to ONNX once with
PyTorch and transformers, as the transformers family runs it (:func:`whisper_encoder_states`: the input
embedding, each layer's output, the last through the final layer norm, on the voice's own log-Mel
frames), into avemotion's cache: ``$AVEMOTION_CACHE`` or ``~/.cache/avemotion``, under
``whisper-onnx/<weights digest>.onnx``. From then on a voice needs ONNX Runtime and faster-whisper's
NumPy log-Mel features only, and a process starts in a fraction of the seconds that importing
PyTorch and transformers takes. The states agree with the PyTorch path's to float32 rounding
(tests check it), so a head fitted on those judges these.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from pathlib import Path

import numpy as np

from avemotion.errors import UsageError
from avemotion.media.speech import (
    EncoderIdentity,
    SpeechEncoder,
    even_frames,
    in_chunks,
    whisper_encoder_states,
)
from avemotion.onnx_sessions import cpu_session

CACHE_VARIABLE = "AVEMOTION_CACHE"
OPSET = 17


def cache_folder() -> Path:
    """Where avemotion keeps what it makes once (the exported encoders)."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "avemotion")


def is_whisper_folder(folder: Path) -> bool:
    """Whether a transformers folder holds a Whisper model (its config says so)."""
    config = Path(folder) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "whisper"


class WhisperOnnxEncoder(SpeechEncoder):
    """Whisper's encoder exported to ONNX (once, into the cache), every hidden state, on the
    voice's own log-Mel frames in chunks as the transformers family reads it."""

    def __init__(self, folder: Path, name: str, digest: str) -> None:
        from faster_whisper.feature_extractor import FeatureExtractor

        path = exported_encoder(folder, digest)
        self.session = cpu_session(path)
        config = json.loads((Path(folder) / "config.json").read_text())
        self.features = FeatureExtractor(feature_size=config["num_mel_bins"])
        self.identity = EncoderIdentity("transformers", name, digest, config["encoder_layers"] + 1,
                                        config["d_model"])
        self.lock = threading.Lock()  # one run at a time: ONNX Runtime's own threads share the cores

    def hidden_states(self, voice: np.ndarray) -> np.ndarray:
        return in_chunks(voice, self._hidden)

    def _hidden(self, voice: np.ndarray) -> np.ndarray:
        """A chunk of voice -> (layers, time, width)."""
        mel = even_frames(self.features(voice, padding=0))
        with self.lock:
            return self.session.run(None, {"mel": mel[np.newaxis].astype(np.float32)})[0][:, 0]


def exported_encoder(folder: Path, digest: str) -> Path:
    """The ONNX file of the Whisper encoder in `folder`, exported now if the cache lacks it."""
    path = cache_folder() / "whisper-onnx" / f"{digest}.onnx"
    if not path.is_file():
        print(f"avemotion: exporting the Whisper encoder of {folder} to ONNX, once, into {path}", file=sys.stderr)
        try:
            export_whisper_encoder(folder, path)
        except ImportError as error:
            raise UsageError(f"{folder}: Whisper's encoder runs in ONNX Runtime once it is exported to "
                             f"{path}, and exporting it needs PyTorch and transformers once "
                             f"(pip install 'avemotion[train,speech]'; {error.name} is missing)") from error
    return path


def export_whisper_encoder(folder: Path, path: Path) -> Path:
    """Export the encoder: mel (1, mels, frames) float32 -> every hidden state (layers, 1,
    frames / 2, width), frames dynamic. Written beside, then renamed, so that a half-written file
    is never read."""
    import torch
    from transformers import WhisperModel

    class EveryHiddenState(torch.nn.Module):
        """What the transformers family runs (whisper_encoder_states), as a module to trace."""

        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            return whisper_encoder_states(self.encoder, mel)

    encoder = WhisperModel.from_pretrained(str(folder)).get_encoder().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    example = torch.zeros(1, encoder.config.num_mel_bins, 200)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's warnings: the attention's causal flag is a constant (False: an encoder), and the
        # positions sliced to the frames' count are traced as the dynamic axis declares
        warnings.simplefilter("ignore")
        torch.onnx.export(EveryHiddenState(encoder), (example,), str(partial), input_names=["mel"],
                          output_names=["hidden_states"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"mel": {2: "frames"}, "hidden_states": {2: "time"}})
    partial.replace(path)
    return path
