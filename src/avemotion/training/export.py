"""Export: a checkpoint's network as ONNX, with its model card in the file's metadata, so that the
file alone predicts in ONNX Runtime without PyTorch (:func:`avemotion.runtime.predict.load`)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from avemotion.config import EXPORT_PRECISIONS
from avemotion.errors import UsageError
from avemotion.media.inputs import FRAMES, INPUT_DTYPES, embedding_input, input_shape
from avemotion.runtime.predict import FRAME_LOGITS, ONNX_METADATA_KEY, ONNX_SPEAKER_HEAD_KEY
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.models import ByName, FramesOneByOne, judges_frames_alone, network_inputs_of

EXAMPLE_BATCH = 2  # the traced batch; the batch axis is declared dynamic


def export_onnx(checkpoint: str | Path, output: str | Path, opset: int = 17, precision: str = "float32") -> Path:
    """Write the network as ONNX: one input per input the model reads, by name (`frames` uint8,
    `mel` and `waveform` float32), output `logits`, with a dynamic batch dimension (and number of
    frames), and in its
    metadata the model card, so that the file alone predicts. A speaker-normalised model's output
    is `features` instead, and its speaker head is in the metadata too.

    A pretrained encoder that runs outside the network (a speech encoder) stays outside: the file
    reads its branch's embedding (`audio_embedding`, float32 (B, layers, 2 × width)) instead of
    the waveform, and the card names the encoder (family, name, weights digest), which the runtime
    loads beside ONNX Runtime: Whisper in CTranslate2 (no PyTorch), a transformers encoder in
    PyTorch with transformers.

    `precision` stores the weights as trained (float32), in float16 or in int8 (config.EXPORT_PRECISIONS)."""
    model, info = load_checkpoint(checkpoint)
    output_name = "features" if info.speaker_norm else "logits"
    names = network_inputs_of(model)
    examples = tuple(_example(name, model, info.feature_settings) for name in names)
    dynamic = {name: {0: "batch"} for name in (*names, output_name)}
    if FRAMES in names:  # a still image is one frame, a video's are n_frames
        dynamic[FRAMES] = {0: "batch", 1: "frames"}
    if judges_frames_alone(model) and not info.speaker_norm:
        network, outputs = JudgedFrameByFrame([model], [info.feature_settings.frame_size]), (output_name, FRAME_LOGITS)
        dynamic[FRAME_LOGITS] = {0: "batch", 1: "frames"}
    else:
        network, outputs = ByName(model, names, features=info.speaker_norm), (output_name,)
    properties = {ONNX_METADATA_KEY: info.card().to_json()}
    if info.speaker_norm:
        properties[ONNX_SPEAKER_HEAD_KEY] = info.speaker_normalisation.head.to_json()
    return _written(network, examples, Path(output), names, outputs, dynamic, opset, precision, properties)


class JudgedFrameByFrame(torch.nn.Module):
    """Still-face models (one, or several at sizes of their own, read from the largest) judging each
    frame alone: the outputs FRAME_LOGITS, (B, T, models, labels), and the clip's `logits` made from
    them, as each model's own are (the mean over its frames: its head is linear in them) and, for
    several, the log of their averaged probabilities (AveragedFaces' answer). One pass of each
    frame serves both, so a timeline judges each frame once; and each weight feeds one node (a
    weight shared by two paths ran three times slower in ONNX Runtime, and int8 quantisation
    cannot read one)."""

    def __init__(self, models: list, sizes: list[int]) -> None:
        super().__init__()
        self.frames_alone = torch.nn.ModuleList(FramesOneByOne(model) for model in models)
        self.sizes = sizes

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        each = torch.stack([judge(resized(frames, size, max(self.sizes)))
                            for judge, size in zip(self.frames_alone, self.sizes)], dim=2)
        clips = each.mean(dim=1)  # (B, models, labels): each model's logits
        logits = clips[:, 0] if len(self.sizes) == 1 else clips.softmax(dim=-1).mean(dim=1).log()
        return logits, each


def resized(frames: torch.Tensor, size: int, largest: int) -> torch.Tensor:
    """(B, T, 3, largest, largest) frames at `size` pixels, bilinearly (float; as they were if equal)."""
    if size == largest:
        return frames.float()
    batch, steps = frames.shape[:2]
    images = torch.nn.functional.interpolate(frames.flatten(0, 1).float(), size=(size, size), mode="bilinear",
                                             align_corners=False)
    return images.view(batch, steps, 3, size, size)


def _written(network: torch.nn.Module, examples: tuple, output: Path, input_names: tuple[str, ...],
             output_names: tuple[str, ...], dynamic: dict, opset: int, precision: str,
             properties: dict[str, str]) -> Path:
    """The network traced to ONNX at `output`, its weights stored at `precision`, `properties` in
    its metadata."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns that the LSTM's shape checks become constants and that the batch size
        # may be fixed; the batch axis is declared dynamic, and the tests run other batch sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(network, examples, str(output), input_names=list(input_names),
                          output_names=list(output_names), opset_version=opset, dynamo=False,
                          dynamic_axes=dynamic)
    exported = _stored_as(onnx.load(str(output)), precision, output)
    onnx.helper.set_model_props(exported, properties)
    onnx.save(exported, str(output))
    return output


def _stored_as(exported: onnx.ModelProto, precision: str, path: Path) -> onnx.ModelProto:
    """The exported graph with its weights stored at `precision` (one of EXPORT_PRECISIONS)."""
    if precision == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return convert_float_to_float16(exported, keep_io_types=True)
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(path, path, weight_type=QuantType.QInt8)
        return onnx.load(str(path))
    if precision != "float32":
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(EXPORT_PRECISIONS)}")
    return exported


def _example(name: str, model, features) -> torch.Tensor:
    """A batch of zeros of a network input, in the dtype it is fed (float16 stored -> float32)."""
    external = {embedding_input(branch): encoder for branch, encoder in model.encoders.items() if encoder.external}
    if name in external:
        return torch.zeros((EXAMPLE_BATCH, *external[name].embedding_shape))
    dtype = np.uint8 if INPUT_DTYPES[name] == np.uint8 else np.float32
    return torch.from_numpy(np.zeros((EXAMPLE_BATCH, *input_shape(name, features)), dtype))


class AveragedFaces(torch.nn.Module):
    """Still-face models judging the same faces together: each reads the frames at its own size
    (resized bilinearly from the largest), and the output is the log of their mean distribution:
    logits whose softmax is that mean."""

    def __init__(self, models: list, sizes: list[int]) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        self.sizes = sizes

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        distributions = [model({FRAMES: resized(frames, size, max(self.sizes))}).softmax(dim=1)
                         for model, size in zip(self.models, self.sizes)]
        return torch.stack(distributions).mean(dim=0).log()


def export_face_ensemble(checkpoints: list[str | Path], output: str | Path, opset: int = 17,
                         precision: str = "float32") -> Path:
    """Several still-face models trained alike (the same labels, frames alone, at sizes of their
    own) as one ONNX file read at the largest size, whose output is the log of their averaged
    probabilities; its card is the largest one's, named for the ensemble. An ensemble of the same
    recipe at two frame sizes is what FER2013's PublicTest chose (benchmarks/faces.py)."""
    loaded = [load_checkpoint(checkpoint) for checkpoint in checkpoints]
    for (model, info), checkpoint in zip(loaded, checkpoints):
        if network_inputs_of(model) != (FRAMES,) or info.labels != loaded[0][1].labels:
            raise UsageError(f"{checkpoint}: an ensemble is of face models reading frames alone, with the "
                             f"labels {', '.join(loaded[0][1].labels)}")
    sizes = [info.feature_settings.frame_size for _, info in loaded]
    _, largest = loaded[sizes.index(max(sizes))]
    card = largest.card()
    name = f"{card.model_name}_ensemble_" + "_".join(f"{size}px" for size in sizes)
    card.model_settings = replace(card.model_settings, name=name)
    models = [model.eval() for model, _ in loaded]
    dynamic = {FRAMES: {0: "batch", 1: "frames"}, "logits": {0: "batch"}}
    if all(judges_frames_alone(model) for model in models):
        network, outputs = JudgedFrameByFrame(models, sizes), ("logits", FRAME_LOGITS)
        dynamic[FRAME_LOGITS] = {0: "batch", 1: "frames"}
    else:  # video branches with a temporal model of their own: each model on the whole clip
        network, outputs = AveragedFaces(models, sizes), ("logits",)
    examples = (_example(FRAMES, loaded[0][0], card.feature_settings),)
    return _written(network, examples, Path(output), (FRAMES,), outputs, dynamic, opset, precision,
                    {ONNX_METADATA_KEY: card.to_json()})
