"""Why EfficientNet-B0 from scratch trailed the ResNet-18 on voices: its variants side by side.

    pip install -e '.[train,bench]'
    python benchmarks/studies/effnet_recipe.py RAVDESS_DIR [--work DIR] [--variants recipe lr-3e-3 …]
        [--folds 1 2 …] [--jobs N]
    python benchmarks/studies/effnet_recipe.py CREMAD_DIR --corpus crema-d --documents DIR [--variants …] …

The audio branch of the paper's Hybrid 2 (`effnet_lstm_audio_only`) trained from random weights on
benchmarks/real_speech.py's RAVDESS folds (fold k holds out actors 4k-3 … 4k). `recipe` is what
`avemotion train --no-pretrained` gives it (config.FROM_SCRATCH with FROM_SCRATCH_EFFICIENTNET: its
stem max-pooled, a peak learning rate of 3e-3); `resnet-recipe` is the ResNet-18's recipe as it
was given to the EfficientNet before (peak lr 1e-3, the stem's convolution strided). Every other
variant changes one or two things of one of them (named `recipe-…` when of the recipe): the
training settings (peak learning rate, schedule length, batch size, spectrogram masks), or the
backbone (stochastic depth, the last downsampling stride, how its residual blocks start, its
squeeze-and-excitation or its activation, how its stem downsamples or whether it does, its stem's
kernel size, each spectrogram standardised on its own, each training spectrogram's frequencies
warped). The ResNet-18 audio branch (`resnet18_vit_lstm_audio_only`)
under its recipe is the bar, and over 60 epochs the bar for a longer schedule. The backbone
variants other than the stem are not options of the product: they patch the backbone that
`avemotion.training.models` builds, for one fold's training at a time.

Printed and written (WORK/effnet_recipe.json, .md): each variant's test accuracy on each fold, its
training accuracy at the last epoch (under mixup and the masks: the share of the blended labels
hit), and its training seconds. Each fold's result is kept in WORK/effnet-recipe/VARIANT, so an
interrupted run resumes where it stopped. `--jobs N` trains N (variant, fold) pairs side by side,
each in its own process with its share of the cores: on one GPU, nine at a time.

`--corpus crema-d` confirms variants on the other corpus: the CREMA-D voices and the five
actor-independent folds of benchmarks/cremad_voices.py (its WORK's cache shared, `--documents` as
there); its `recipe` and `resnet18` train as that benchmark's clip-level runs of the two models do.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import product_benchmarks  # noqa: F401  (benchmarks/ on the path)
import torch
from cremad_voices import CORPUS_FOLDS, add_corpus_arguments, corpus_folds, corpus_table
from real_speech import clip_run, model_fold, model_recipe, training_overrides
from torch import nn
from torch.nn import functional as F

from avemotion.media.features import FeatureSettings, mel_edges_hz
from avemotion.media.preprocess import FeatureCache, ensure_cached
from avemotion.registry import model_settings
from avemotion.training import models
from avemotion.training.models import model_inputs
from avemotion.training.runs import RunFolder

EFFNET = "effnet_lstm_audio_only"
RESNET = "resnet18_vit_lstm_audio_only"
# The ResNet-18's recipe as the EfficientNet had it before its own: the shared peak learning rate,
# the stem as timm builds it.
RESNET_RECIPE = {"learning_rate": 1e-3}
STRIDED_STEM = {"stem_max_pool": False}


def zero_init_residual_ends(backbone: nn.Module) -> nn.Module:
    """Zero the scale of the last BatchNorm of each residual block, so that every block starts as
    the identity: how timm starts a ResNet (`zero_init_last`), and not an EfficientNet."""
    for block in backbone.modules():
        if getattr(block, "has_skip", False):
            last_norm = [module for module in block.children() if isinstance(module, nn.BatchNorm2d)][-1]
            nn.init.zeros_(last_norm.weight)
    return backbone


def without_last_stride(backbone: nn.Module) -> nn.Module:
    """No stride in the last downsampling stage (a 4 × 8 final map from 64 × 128, not 2 × 4)."""
    last_downsampling = next(stage[0] for stage in reversed(backbone.blocks)
                             if stage[0].conv_dw.stride != (1, 1))
    last_downsampling.conv_dw.stride = (1, 1)
    return backbone


def full_resolution_stem(backbone: nn.Module) -> nn.Module:
    """The stem neither strides nor pools: every stage sees twice the resolution in pitch and time
    (a 4 × 8 final map from 64 × 128, not 2 × 4; about four times the arithmetic). EfficientNet-B0
    was designed for 224 × 224 images, where its last map is 7 × 7."""
    backbone.conv_stem.stride = (1, 1)
    return backbone


def standardise_each_clip(backbone: nn.Module) -> nn.Module:
    """Each spectrogram standardised by its own mean and spread before the backbone, not by the
    fixed dB constants alone: a recording's level and a voice's loudness no longer shift the input."""
    # The backbone's forward is wrapped, not the backbone itself: the model reads the backbone's
    # own attributes (num_features, conv_stem), which a wrapping module would hide.
    forward = backbone.forward

    def standardised(spectrogram):
        mean = spectrogram.mean(dim=(1, 2, 3), keepdim=True)
        spread = spectrogram.std(dim=(1, 2, 3), keepdim=True)
        return forward((spectrogram - mean) / (spread + 1e-5))

    backbone.forward = standardised
    return backbone


def without_squeeze_excite(backbone: nn.Module) -> nn.Module:
    """No squeeze-and-excitation: no block gates its channels by their average over the whole
    spectrogram, a summary of the voice as much as of its emotion (the ResNet-18 has none)."""
    for block in backbone.modules():
        if hasattr(block, "se"):
            block.se = nn.Identity()
    return backbone


def with_relu(backbone: nn.Module) -> nn.Module:
    """ReLU wherever timm's EfficientNet has SiLU (49 activations, its squeeze-and-excitation's
    included), as the ResNet-18 has."""
    for module in list(backbone.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.SiLU):
                setattr(module, name, nn.ReLU(inplace=True))
    return backbone


def seven_by_seven_stem(backbone: nn.Module) -> nn.Module:
    """The stem's convolution 7 × 7, as a ResNet's is, not 3 × 3 (same stride and channels): on a
    spectrogram its first filters then span 7 Mel bins, several of a voice's harmonics at once."""
    stem = backbone.conv_stem
    backbone.conv_stem = nn.Conv2d(stem.in_channels, stem.out_channels, kernel_size=7, stride=stem.stride,
                                   padding=3, bias=False)
    return backbone


MAX_WARP = 0.1  # vocal tract length perturbation's usual range: frequencies scaled by 0.9 to 1.1


def mel_centres_hz(settings: FeatureSettings = FeatureSettings()) -> torch.Tensor:
    """The centre frequency of each Mel bin of the spectrograms."""
    edges = mel_edges_hz(settings.sample_rate, settings.n_mels)
    return torch.tensor(edges[1:-1], dtype=torch.float32)


def warped_rows(centres: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """(B,) frequency factors -> (B, n_mels) fractional Mel rows to read: the row that held frequency
    f / factor, so that a voice's spectrum S(f) becomes S(f / factor), a vocal tract `factor` times
    shorter (its formants `factor` times higher)."""
    sources = centres[None, :] / factors[:, None]
    upper = torch.searchsorted(centres, sources).clamp(1, len(centres) - 1)
    low, high = centres[upper - 1], centres[upper]
    return (upper - 1) + ((sources - low) / (high - low)).clamp(0.0, 1.0)


def vocal_tract_warp(backbone: nn.Module) -> nn.Module:
    """While training, each spectrogram's frequencies (mixup's blend, when mixed) scaled by a random
    factor in 1 ± MAX_WARP (vocal tract length perturbation, Jaitly and Hinton 2013). To a first
    approximation a new speaker's voice is a known one with its formants moved, and the
    EfficientNet's gap to the ResNet is on the speakers it has not heard."""
    forward, centres = backbone.forward, mel_centres_hz()

    def warped(spectrogram):
        if not backbone.training:
            return forward(spectrogram)
        batch, _, mels, steps = spectrogram.shape
        factors = 1 + (torch.rand(batch) * 2 - 1) * MAX_WARP
        rows = warped_rows(centres, factors).to(spectrogram.device)  # (B, n_mels)
        grid_y = (rows / (mels - 1) * 2 - 1)[:, :, None].expand(batch, mels, steps)
        grid_x = torch.linspace(-1, 1, steps, device=spectrogram.device)[None, None, :].expand(batch, mels, steps)
        grid = torch.stack([grid_x, grid_y], dim=-1)
        return forward(F.grid_sample(spectrogram, grid, align_corners=True, padding_mode="border"))

    backbone.forward = warped
    return backbone


@dataclass(frozen=True)
class Variant:
    """One way to train a model on a fold: its recipe with some training and model settings
    changed, and a change to the backbone that models.create_backbone builds (timm keyword
    arguments, then a function)."""

    model: str
    overrides: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    backbone_options: dict = field(default_factory=dict)
    reshape: Callable[[nn.Module], nn.Module] | None = None


def from_resnet_recipe(overrides: dict | None = None, model_options: dict | None = None, **backbone) -> Variant:
    """The EfficientNet under the ResNet-18's recipe, with some of it changed."""
    return Variant(EFFNET, {**RESNET_RECIPE, **(overrides or {})}, {**STRIDED_STEM, **(model_options or {})},
                   **backbone)


VARIANTS = {
    "resnet18": Variant(RESNET),
    "resnet18-60-epochs": Variant(RESNET, {"max_epochs": 60}),
    "recipe": Variant(EFFNET),
    "resnet-recipe": from_resnet_recipe(),
    "lr-3e-3": from_resnet_recipe({"learning_rate": 3e-3}),
    "lr-1e-2": from_resnet_recipe({"learning_rate": 1e-2}),
    "lr-3e-3-60-epochs": from_resnet_recipe({"learning_rate": 3e-3, "max_epochs": 60}),
    "drop-path-0.2": from_resnet_recipe(backbone_options={"drop_path_rate": 0.2}),
    "no-last-stride": from_resnet_recipe(reshape=without_last_stride),
    "zero-init-residuals": from_resnet_recipe(reshape=zero_init_residual_ends),
    "zero-init-residuals-lr-3e-3": from_resnet_recipe({"learning_rate": 3e-3}, reshape=zero_init_residual_ends),
    "zero-init-residuals-lr-3e-3-drop-path-0.2": from_resnet_recipe(
        {"learning_rate": 3e-3}, backbone_options={"drop_path_rate": 0.2}, reshape=zero_init_residual_ends),
    "max-pool-stem": from_resnet_recipe(model_options={"stem_max_pool": True}),
    "recipe-zero-init-residuals": Variant(EFFNET, reshape=zero_init_residual_ends),
    "recipe-60-epochs": Variant(EFFNET, {"max_epochs": 60}),
    "recipe-batch-16": Variant(EFFNET, {"batch_size": 16}),
    "recipe-spec-masks-4": Variant(EFFNET, {"spec_masks": 4}),
    "recipe-clip-standardised": Variant(EFFNET, reshape=standardise_each_clip),
    "recipe-full-resolution": Variant(EFFNET, model_options={"stem_max_pool": False}, reshape=full_resolution_stem),
    "recipe-full-resolution-60-epochs": Variant(EFFNET, {"max_epochs": 60}, {"stem_max_pool": False},
                                                reshape=full_resolution_stem),
    "recipe-no-squeeze-excite": Variant(EFFNET, reshape=without_squeeze_excite),
    "recipe-relu": Variant(EFFNET, reshape=with_relu),
    "resnet18-clip-standardised": Variant(RESNET, reshape=standardise_each_clip),
    "recipe-vocal-tract-warp": Variant(EFFNET, reshape=vocal_tract_warp),
    "recipe-stem-7x7": Variant(EFFNET, reshape=seven_by_seven_stem),
}


@contextlib.contextmanager
def backbones_changed(variant: Variant, channels_last: bool = False) -> Iterator[None]:
    """While it lasts, models.create_backbone builds the variant's backbone (one training at a time),
    its weights and activations laid out channels last if asked."""
    original = models.create_backbone

    def create(name, pretrained, weights, in_chans, **kwargs):
        backbone = original(name, pretrained, weights, in_chans, **{**kwargs, **variant.backbone_options})
        backbone = variant.reshape(backbone) if variant.reshape else backbone
        return backbone.to(memory_format=torch.channels_last) if channels_last else backbone

    models.create_backbone = create
    try:
        yield
    finally:
        models.create_backbone = original


def last_training_accuracy(run: RunFolder) -> float:
    """The training accuracy of the fold's last epoch, from its history."""
    return float(pd.read_csv(run.history)["train_acc"].dropna().iloc[-1])


def variant_fold(table, split: pd.Series, cache, work: Path, name: str, fold: int,
                 channels_last: bool = False) -> dict:
    """Train one variant on one fold (or read the result a previous run left)."""
    variant, runs = VARIANTS[name], work / "effnet-recipe" / name
    model = replace(model_recipe(variant.model).model, **variant.model_options)
    overrides = {**training_overrides(None)[0], **variant.overrides, "model": model}
    with backbones_changed(variant, channels_last):
        result = model_fold(table, split, cache, runs, variant.model, fold, overrides)
    return {**result, "train_accuracy": last_training_accuracy(clip_run(runs, variant.model, fold))}


def markdown(results: dict[str, dict[int, dict]], folds: list[int]) -> str:
    header = " | ".join(f"fold {fold}: test (train)" for fold in folds)
    lines = [f"| variant | {header} | mean test | train s / fold |", "|---|" + "---|" * (len(folds) + 2)]
    for name, by_fold in results.items():
        cells = [f"{by_fold[fold]['accuracy']:.3f} ({by_fold[fold]['train_accuracy']:.2f})" for fold in folds]
        mean = sum(result["accuracy"] for result in by_fold.values()) / len(by_fold)
        seconds = sum(result["seconds"] for result in by_fold.values()) / len(by_fold)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} | {seconds:.0f} |")
    return "\n".join(lines)


def train_variant(table, splits: dict[int, pd.Series], cache: FeatureCache, work: Path, channels_last: bool,
                  task: tuple[str, int]) -> tuple[str, int, dict]:
    """One (variant, fold) training, in this process or in a worker of the pool."""
    name, fold = task
    return name, fold, variant_fold(table, splits[fold], cache, work, name, fold, channels_last)


def trained_variants(table, splits: dict[int, pd.Series], cache: FeatureCache, work: Path,
                     tasks: list[tuple[str, int]], jobs: int,
                     channels_last: bool = False) -> Iterator[tuple[str, int, dict]]:
    """Each task's result as it finishes; with jobs > 1, that many trainings side by side, each in
    its own process with its share of the cores (on a GPU they share the device: a network this
    small leaves it waiting on each step's work around the arithmetic, docs/results/speech.md, "On a GPU")."""
    train = functools.partial(train_variant, table, splits, cache, work, channels_last)
    if jobs <= 1:
        yield from map(train, tasks)
        return
    # Spawned, not forked: a fork would copy this process's thread pools (and CUDA, once used) broken.
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=torch.set_num_threads, initargs=(threads,)) as pool:
        yield from pool.imap_unordered(train, tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--work", type=Path, default=None,
                        help="cache and runs (real_speech.py's or cremad_voices.py's folder shares its "
                             "cache; default theirs: .cache/real-speech, .cache/cremad-voices)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--folds", nargs="+", type=int, default=[1])
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings side by side, each in its own process (default 1)")
    parser.add_argument("--channels-last", action="store_true",
                        help="backbones laid out channels last: the same arithmetic in another order, "
                             "faster on a CPU for the EfficientNet at full resolution")
    args = parser.parse_args()

    folds = CORPUS_FOLDS[args.corpus]
    if not set(args.folds) <= set(range(1, folds + 1)):
        parser.error(f"--folds: {args.corpus} has folds 1 to {folds}")
    args.work = args.work or Path(".cache/cremad-voices" if args.corpus == "crema-d" else ".cache/real-speech")
    table = corpus_table(args)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache.open(args.work / "cache", FeatureSettings())
    for name in {VARIANTS[variant].model for variant in args.variants}:
        table = ensure_cached(table, cache.with_inputs(model_inputs(model_settings(name))), progress=True)
    splits = corpus_folds(table, args.corpus, args.folds)
    tasks = [(name, fold) for fold in args.folds for name in args.variants]
    results: dict[str, dict[int, dict]] = {name: {} for name in args.variants}
    for name, fold, outcome in trained_variants(table, splits, cache, args.work, tasks, args.jobs,
                                                 args.channels_last):
        results[name][fold] = outcome
        print(f"fold {fold} {name}: test accuracy {outcome['accuracy']:.3f}, training accuracy "
              f"{outcome['train_accuracy']:.2f} ({outcome['seconds']:.0f} s)", flush=True)
    (args.work / "effnet_recipe.json").write_text(json.dumps(results, indent=2))
    table_md = markdown(results, args.folds)
    (args.work / "effnet_recipe.md").write_text(table_md + "\n")
    print(table_md)


if __name__ == "__main__":
    main()
