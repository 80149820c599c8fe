"""ImageNet weights from a local file, in the layout of the library that saved them, for a timm backbone.

A user offline passes a file with ``--weights PATH``: timm's own layout (a file from the hub, or one
that timm saved), torchvision's (``mobilenet_v2-b0353104.pth``: ``features.<n>.conv.<…>``) or
``efficientnet_pytorch``'s (``efficientnet-lite0-*.pth``: ``_blocks.<n>._depthwise_conv``). A file in
another library's layout is renamed into timm's, block by block, and checked against the backbone's
ImageNet architecture before any weight is loaded: every tensor of the file is used and every tensor
of the backbone is given, with equal shapes, or a :class:`WeightsUnavailable` sentence says which
ones do not fit. What is left after that (dropping the 1000-class classifier, summing the first
convolution's colours for a one-channel input) timm does as it does for its own files.
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
import torch
from torch import nn

from avemotion.errors import WeightsUnavailable

StateDict = dict[str, torch.Tensor]

# torchvision's MobileNetV2 block `features.<n>.conv.<path>` -> the timm block's module. The first
# block has no expansion (timm's DepthwiseSeparableConv); the others are inverted residuals.
_TORCHVISION_BLOCK = {
    False: {"0.0": "conv_dw", "0.1": "bn1", "1": "conv_pw", "2": "bn2"},
    True: {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2": "conv_pwl", "3": "bn3"},
}
# efficientnet_pytorch's block `_blocks.<n>.<module>` -> the timm block's module, likewise.
_EFFICIENTNET_PYTORCH_BLOCK = {
    False: {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
            "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"},
    True: {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
           "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
           "_bn2": "bn3"},
}
_EFFICIENTNET_PYTORCH_ENDS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
                              "_bn1": "bn2", "_fc": "classifier"}


def read_weights(path: Path) -> StateDict:
    """A weights file's tensors by name (safetensors or a PyTorch pickle of tensors only; a
    checkpoint's `state_dict` or `model` entry, 'module.' prefixes removed, as timm reads them)."""
    try:
        return timm.models.load_state_dict(str(path))
    except Exception as error:  # unpickling and safetensors raise many kinds; all mean "not weights"
        reason = (str(error).splitlines() or [""])[0][:200]
        raise WeightsUnavailable(f"{path}: not a weights file timm or PyTorch can read "
                                 f"({type(error).__name__}: {reason})") from error


def layout(state_dict: StateDict) -> str:
    """Which library's key names a state dict has: torchvision, efficientnet_pytorch or timm."""
    if any(key.startswith("features.") for key in state_dict) and any(".conv." in key for key in state_dict):
        return "torchvision"
    if any(key.startswith("_blocks.") for key in state_dict):
        return "efficientnet_pytorch"
    return "timm"


def to_timm_layout(state_dict: StateDict, backbone: str, source: Path) -> StateDict:
    """The state dict with timm's key names for `backbone`, checked against its ImageNet
    architecture (every key used, every shape equal); timm's own layout is passed through as it is,
    for timm to check (a ViT's position embeddings are resized there for other frame sizes)."""
    kind = layout(state_dict)
    if kind == "timm":
        return state_dict
    reference = timm.create_model(backbone, pretrained=False)
    blocks = _timm_blocks(reference, backbone, kind, source)
    rename = {"torchvision": _torchvision_name, "efficientnet_pytorch": _efficientnet_pytorch_name}[kind]
    renamed, unused = {}, []
    for key, tensor in state_dict.items():
        target = rename(key, blocks)
        if target is None:
            unused.append(key)
        else:
            renamed[target] = tensor
    _check_fits(renamed, unused, reference.state_dict(), backbone, kind, source)
    return renamed


def _timm_blocks(model: nn.Module, backbone: str, kind: str, source: Path) -> list[tuple[str, bool]]:
    """The backbone's blocks in order, as ("blocks.<stage>.<index>", whether it expands its input):
    the other libraries number the same blocks one after another."""
    stages = getattr(model, "blocks", None)
    if stages is None:
        raise WeightsUnavailable(f"{source}: a {kind} weights file, and {backbone} is not a MobileNet or "
                                 "EfficientNet whose blocks it could name; use timm's own weights for it")
    return [(f"blocks.{stage}.{index}", hasattr(block, "conv_pwl"))
            for stage, blocks in enumerate(stages) for index, block in enumerate(blocks)]


def _torchvision_name(key: str, blocks: list[tuple[str, bool]]) -> str | None:
    """torchvision's MobileNetV2 key -> timm's: features.0 is the stem, features.<last> the head."""
    if match := re.fullmatch(r"classifier\.1\.(\w+)", key):
        return f"classifier.{match[1]}"
    if not (match := re.fullmatch(r"features\.(\d+)\.(.+)\.(\w+)", key)):
        return None
    number, path, tensor = int(match[1]), match[2], match[3]
    if number == 0:
        module = {"0": "conv_stem", "1": "bn1"}.get(path)
    elif number == len(blocks) + 1:
        module = {"0": "conv_head", "1": "bn2"}.get(path)
    else:
        return _block_name(number - 1, path.removeprefix("conv."), tensor, blocks, _TORCHVISION_BLOCK)
    return None if module is None else f"{module}.{tensor}"


def _efficientnet_pytorch_name(key: str, blocks: list[tuple[str, bool]]) -> str | None:
    """efficientnet_pytorch's key -> timm's."""
    if match := re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key):
        return _block_name(int(match[1]), match[2], match[3], blocks, _EFFICIENTNET_PYTORCH_BLOCK)
    if (match := re.fullmatch(r"(\w+)\.(\w+)", key)) and match[1] in _EFFICIENTNET_PYTORCH_ENDS:
        return f"{_EFFICIENTNET_PYTORCH_ENDS[match[1]]}.{match[2]}"
    return None


def _block_name(number: int, module: str, tensor: str, blocks: list[tuple[str, bool]],
                modules: dict[bool, dict[str, str]]) -> str | None:
    if number >= len(blocks):
        return None
    prefix, expands = blocks[number]
    target = modules[expands].get(module)
    return None if target is None else f"{prefix}.{target}.{tensor}"


def _check_fits(renamed: StateDict, unused: list[str], expected: StateDict, backbone: str, kind: str,
                source: Path) -> None:
    """Raise a sentence naming what does not fit, unless every tensor found its place."""
    unused = unused + [key for key in renamed if key not in expected]
    missing = [key for key in expected if key not in renamed]
    misshapen = [f"{key} {tuple(renamed[key].shape)} (expected {tuple(value.shape)})"
                 for key, value in expected.items() if key in renamed and renamed[key].shape != value.shape]
    problems = [f"{label}: {_some(keys)}" for label, keys in
                (("not used", unused), ("missing", missing), ("other shapes", misshapen)) if keys]
    if problems:
        raise WeightsUnavailable(f"{source}: these {kind} weights do not fit {backbone} ("
                                 + "; ".join(problems) + "); is it the file of another architecture?")


def _some(keys: list[str], shown: int = 3) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def local_weights_overlay(backbone: str, path: Path) -> dict:
    """timm's pretrained-configuration overlay that loads `path`'s weights, in timm's layout."""
    return {"state_dict": to_timm_layout(read_weights(path), backbone, path)}
