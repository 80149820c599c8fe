"""faster-whisper's CTranslate2 Whisper as a transformers folder: `whisper_base_layers_audio_only`'s
weights where the hub (`openai/whisper-base`) is out of reach and faster-whisper's conversion is not.

    pip install -e '.[speech]'
    python tools/whisper_to_transformers.py WHISPER_CT2_DIR OUT_DIR

WHISPER_CT2_DIR holds a CTranslate2 Whisper (`model.bin`, faster-whisper's `base` for one); OUT_DIR
gets the same weights in transformers' layout (`WhisperForConditionalGeneration`, float32) and
Whisper's feature extractor, the folder `--weights` takes. CTranslate2 fuses the attention's
query, key and value projections (the key's bias is zero: Whisper has none) and ties the output
projection to the token embedding; they are split and tied back. The result is checked: the
encoder's output through avemotion's transformers path against CTranslate2's own on a voice.
"""

from __future__ import annotations

import argparse
import re
import struct
from pathlib import Path

import numpy as np

# CTranslate2's data type ids in model.bin (its DataType enum)
CT2_TYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
SPEC = "WhisperSpec"
HEAD_WIDTH = 64  # every Whisper size has 64-wide attention heads
SOURCE_POSITIONS, TARGET_POSITIONS = 1500, 448


class ModelFile:
    """A reader of CTranslate2's model.bin (binary version 6): the spec's name, then each variable
    as its name, shape, type and bytes, then aliases."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.offset = 0

    def read(self, form: str) -> tuple:
        values = struct.unpack_from("<" + form, self.data, self.offset)
        self.offset += struct.calcsize("<" + form)
        return values

    def text(self) -> str:
        (length,) = self.read("H")
        return self.bytes(length).rstrip(b"\0").decode()

    def bytes(self, count: int) -> bytes:
        self.offset += count
        return self.data[self.offset - count : self.offset]

    def variables(self) -> dict[str, np.ndarray]:
        (version,) = self.read("I")
        spec = self.text()
        if version < 5 or spec != SPEC:
            raise SystemExit(f"not a CTranslate2 Whisper of binary version 5 or later ({spec!r}, version {version})")
        self.read("I")  # the spec's revision
        (count,) = self.read("I")
        variables = {}
        for _ in range(count):
            name = self.text()
            (rank,) = self.read("B")
            shape = self.read("I" * rank)
            kind, size = self.read("B")[0], self.read("I")[0]
            if kind not in CT2_TYPES:
                raise SystemExit(f"{name}: CTranslate2 type {kind} (an int8 or bfloat16 conversion?): convert "
                                 "Whisper to CTranslate2 in float16 or float32")
            variables[name] = np.frombuffer(self.bytes(size), CT2_TYPES[kind]).reshape(shape)
        return variables


def transformers_weights(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CTranslate2's Whisper variables under transformers' names."""
    weights = {}

    def put(target: str, source: str) -> None:
        weights[f"{target}.weight"] = variables[f"{source}/weight"]
        weights[f"{target}.bias"] = variables[f"{source}/bias"]

    def norm(target: str, source: str) -> None:
        weights[f"{target}.weight"] = variables[f"{source}/gamma"]
        weights[f"{target}.bias"] = variables[f"{source}/beta"]

    def split(target: str, source: str, names: tuple[str, ...]) -> None:
        """A fused projection into its parts (the key has no bias in Whisper)."""
        for name, weight, bias in zip(names, np.split(variables[f"{source}/weight"], len(names)),
                                      np.split(variables[f"{source}/bias"], len(names)), strict=True):
            weights[f"{target}.{name}.weight"] = weight
            if name != "k_proj":
                weights[f"{target}.{name}.bias"] = bias

    def self_attention_and_feed_forward(target: str, source: str) -> None:
        """What an encoder layer is, and a decoder layer has besides its attention to the encoder."""
        norm(f"{target}.self_attn_layer_norm", f"{source}/self_attention/layer_norm")
        split(f"{target}.self_attn", f"{source}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        put(f"{target}.self_attn.out_proj", f"{source}/self_attention/linear_1")
        norm(f"{target}.final_layer_norm", f"{source}/ffn/layer_norm")
        put(f"{target}.fc1", f"{source}/ffn/linear_0")
        put(f"{target}.fc2", f"{source}/ffn/linear_1")

    put("model.encoder.conv1", "encoder/conv1")
    put("model.encoder.conv2", "encoder/conv2")
    weights["model.encoder.embed_positions.weight"] = variables["encoder/position_encodings/encodings"]
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    for layer in range(layer_count(variables, "encoder")):
        self_attention_and_feed_forward(f"model.encoder.layers.{layer}", f"encoder/layer_{layer}")
    weights["model.decoder.embed_tokens.weight"] = variables["decoder/embeddings/weight"]
    weights["model.decoder.embed_positions.weight"] = variables["decoder/position_encodings/encodings"]
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for layer in range(layer_count(variables, "decoder")):
        source, target = f"decoder/layer_{layer}", f"model.decoder.layers.{layer}"
        self_attention_and_feed_forward(target, source)
        norm(f"{target}.encoder_attn_layer_norm", f"{source}/attention/layer_norm")
        put(f"{target}.encoder_attn.q_proj", f"{source}/attention/linear_0")
        split(f"{target}.encoder_attn", f"{source}/attention/linear_1", ("k_proj", "v_proj"))
        put(f"{target}.encoder_attn.out_proj", f"{source}/attention/linear_2")
    return weights


def layer_count(variables: dict[str, np.ndarray], part: str) -> int:
    """How many layers the encoder or decoder has (its `layer_0/…`, `layer_1/…` variables)."""
    return len({name.split("/")[1] for name in variables if re.match(rf"{part}/layer_\d+/", name)})


def whisper_config(variables: dict[str, np.ndarray]):
    """Whisper's architecture, read from its variables' shapes."""
    from transformers import WhisperConfig

    width, mels, _ = variables["encoder/conv1/weight"].shape
    return WhisperConfig(vocab_size=variables["decoder/embeddings/weight"].shape[0], num_mel_bins=mels,
                         d_model=width, encoder_layers=layer_count(variables, "encoder"),
                         decoder_layers=layer_count(variables, "decoder"),
                         encoder_attention_heads=width // HEAD_WIDTH, decoder_attention_heads=width // HEAD_WIDTH,
                         encoder_ffn_dim=4 * width, decoder_ffn_dim=4 * width,
                         max_source_positions=SOURCE_POSITIONS, max_target_positions=TARGET_POSITIONS)


def convert(source: Path, target: Path) -> None:
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    variables = ModelFile(source / "model.bin").variables()
    config = whisper_config(variables)
    model = WhisperForConditionalGeneration(config)
    state = {name: torch.from_numpy(array.astype(np.float32)) for name, array in transformers_weights(variables).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    left = [name for name in missing if name != "proj_out.weight"]  # tied to the token embedding
    if left or unexpected:
        raise SystemExit(f"weights left unset: {left}; not placed: {unexpected}")
    model.tie_weights()
    model.save_pretrained(target)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(target)
    print(f"{target}: Whisper with {config.encoder_layers} encoder layers of width {config.d_model}")


def check(source: Path, target: Path) -> float:
    """The largest difference between the encoder's output pooled through avemotion's transformers
    path and CTranslate2's own (float32), on a second of noise."""
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    from avemotion.media.speech import load_speech_encoder, mean_and_std

    voice = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    layered = load_speech_encoder("transformers", str(target)).embed_one(voice)
    whisper = ctranslate2.models.Whisper(str(source), device="cpu", compute_type="float32")
    mel = FeatureExtractor(feature_size=whisper.n_mels)(voice, padding=0)
    output = np.asarray(whisper.encode(ctranslate2.StorageView.from_array(mel[np.newaxis]), to_cpu=True))
    return float(np.abs(layered[-1] - mean_and_std(output)[0]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a CTranslate2 Whisper folder (model.bin)")
    parser.add_argument("target", type=Path, help="the transformers folder to write")
    args = parser.parse_args()
    if not (args.source / "model.bin").is_file():
        raise SystemExit(f"{args.source}: no model.bin (a CTranslate2 Whisper folder, faster-whisper's)")
    convert(args.source, args.target)
    print(f"largest difference from CTranslate2's encoder output, pooled: {check(args.source, args.target):.2e}")


if __name__ == "__main__":
    main()
