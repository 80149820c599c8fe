"""Stage 4, train: the paper's recipe with PyTorch Lightning, on an honest split, into one run folder.

The recipe (AdamW, cross-entropy, early stopping on validation loss, the best weights restored and
used on the test split; from random weights a one-cycle schedule, spectrogram masks and mixup) is
a :class:`~avemotion.config.TrainSettings`; the run folder's layout is
:class:`~avemotion.training.runs.RunFolder`'s. The labels are the corpus's (:func:`corpus_labels`): the
model's head has one output per label, and the checkpoint carries them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from avemotion.config import TrainSettings
from avemotion.csvfiles import read_csv, write_csv
from avemotion.datasets import corpus_labels
from avemotion.datasets.index import common_labels_only
from avemotion.datasets.listing import is_image
from avemotion.datasets.splits import actor_folds, make_split
from avemotion.errors import UsageError
from avemotion.media.features import typical_duration
from avemotion.media.inputs import FRAMES, MEL, WAVEFORM
from avemotion.media.preprocess import (
    CachedClips,
    FeatureCache,
    clip_media,
    clips_with_inputs,
    ensure_cached,
    entry_keys,
)
from avemotion.media.speech import SPEECH_RATE
from avemotion.runtime.card import MAX_TEST_TIME_SPEEDS, SPEED_RANGE
from avemotion.runtime.linear_probe import PROBE_C, fit_logistic_layer
from avemotion.runtime.speakers import (
    SPEAKER_HEAD_C,
    SpeakerNormalisation,
    clip_groups,
    require_speakers,
    standardised_by_speaker,
)
from avemotion.runtime.svm_probe import fit_svm_layer
from avemotion.training.augment import jitter_frames
from avemotion.training.checkpoint import Checkpoint, save_checkpoint
from avemotion.training.embeddings import (
    Embeddings,
    clip_features_of_frozen,
    prepare_frozen_backbones,
    speed_perturbed_embeddings,
)
from avemotion.training.evaluate import (
    clip_features,
    plot_loss_curves,
    predict_probabilities,
    predictions_table,
    summarise_folds,
    write_evaluation,
)
from avemotion.training.hidden_probe import fit_hidden_layer
from avemotion.training.models import (
    EmotionNet,
    FrameEncoder,
    HiddenLayerFusion,
    KernelClassifier,
    SpectrogramEncoder,
    model_inputs,
)
from avemotion.training.runs import RunFolder
from avemotion.training.transfer import BRANCH, init_frame_encoder

__all__ = ["EmotionModule", "TrainSettings", "TrainingInterrupted", "fit", "train", "train_one"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (or a crash Lightning shut down gracefully); the message says
    where the last completed epoch is."""


class EmotionModule(L.LightningModule):
    """The network, the loss and the optimiser; in frozen mode only the temporal model, fusion and head."""

    def __init__(self, model: EmotionNet, settings: TrainSettings) -> None:
        super().__init__()
        self.model = model
        self.settings = settings
        if settings.freeze_backbones:
            for backbone in model.backbones():
                backbone.requires_grad_(False)
            # the frozen backbones are rebuilt as they were (same weights, same seed) whenever a run
            # starts, so its epoch checkpoints leave them out (tens of megabytes an epoch otherwise)
            self.strict_loading = False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.settings.freeze_backbones:
            trainable = {name for name, parameter in self.model.named_parameters() if parameter.requires_grad}
            checkpoint["state_dict"] = {
                key: value for key, value in checkpoint["state_dict"].items()
                if not key.startswith("model.encoders.") or key.removeprefix("model.") in trainable}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits from the inputs by name, or from the encoders' features by branch when frozen."""
        if self.settings.freeze_backbones:
            return self.model.forward_embeddings(inputs)
        return self.model(inputs)

    def _step(self, batch, stage: str) -> torch.Tensor:
        inputs, target = batch
        if stage == "train" and self.settings.jitter_frames and FRAMES in inputs:
            inputs = {**inputs, FRAMES: jitter_frames(inputs[FRAMES])}
        if stage == "train" and self.settings.mixup > 0:
            return self._mixup_step(inputs, target)
        logits = self(inputs)
        loss = self._loss(logits, target, stage)
        self._log(stage, loss, (logits.argmax(dim=1) == target).float().mean(), len(target))
        return loss

    def _loss(self, logits: torch.Tensor, target: torch.Tensor, stage: str) -> torch.Tensor:
        """Cross-entropy, with the training targets smoothed if asked (validation's stay plain,
        so that its loss means the same whatever the recipe)."""
        smoothing = self.settings.label_smoothing if stage == "train" else 0.0
        return F.cross_entropy(logits, target, label_smoothing=smoothing)

    def _mixup_step(self, inputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Mixup: each clip blended with another of the batch, the loss blended in the same share."""
        alpha = torch.tensor(float(self.settings.mixup))
        share = float(torch.distributions.Beta(alpha, alpha).sample())  # seeded with the run
        partner = torch.randperm(len(target), device=target.device)
        blend = lambda x: share * x.float() + (1 - share) * x.float()[partner]
        logits = self({name: blend(value) for name, value in inputs.items()})
        loss = (share * self._loss(logits, target, "train")
                + (1 - share) * self._loss(logits, target[partner], "train"))
        hits = share * (logits.argmax(dim=1) == target).float() + (1 - share) * (
            logits.argmax(dim=1) == target[partner]).float()
        self._log("train", loss, hits.mean(), len(target))
        return loss

    def _log(self, stage: str, loss: torch.Tensor, accuracy: torch.Tensor, batch_size: int) -> None:
        options = {"on_step": False, "on_epoch": True, "batch_size": batch_size, "sync_dist": True}
        self.log(f"{stage}_loss", loss, prog_bar=True, **options)
        self.log(f"{stage}_acc", accuracy, **options)

    def training_step(self, batch, batch_index):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_index):
        return self._step(batch, "val")

    def configure_optimizers(self):
        groups = self._parameter_groups()
        optimiser = torch.optim.AdamW(groups, weight_decay=self.settings.weight_decay)
        if self.settings.schedule == "constant":
            return optimiser
        if self.settings.schedule != "onecycle":
            raise UsageError(f"unknown schedule {self.settings.schedule!r}; choose constant or onecycle")
        one_cycle = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=[group["lr"] for group in groups],
            total_steps=max(1, int(self.trainer.estimated_stepping_batches)))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": one_cycle, "interval": "step"}}


    def _parameter_groups(self) -> list[dict]:
        """The trainable weights at the learning rate; a fine-tuned pretrained speech encoder's at
        its encoder's fraction of it, pretrained image backbones' at --backbone-lr-scale of it."""
        rate = self.settings.learning_rate
        slow_groups = [{"params": tuned, "lr": rate * encoder.PRETRAINED_LR_SCALE}
                       for encoder in self.model.encoders.values() if (tuned := encoder.fine_tuned_parameters())]
        if self.settings.backbone_lr_scale != 1 and (pretrained := self._pretrained_image_parameters()):
            slow_groups.append({"params": pretrained, "lr": rate * self.settings.backbone_lr_scale})
        slow = {id(parameter) for group in slow_groups for parameter in group["params"]}
        rest = [parameter for parameter in self.parameters() if parameter.requires_grad and id(parameter) not in slow]
        return [{"params": rest, "lr": rate}, *slow_groups]

    def _pretrained_image_parameters(self) -> list[nn.Parameter]:
        """The trainable weights of the image backbones that started from ImageNet."""
        if not self.model.settings.pretrained:
            return []
        image_encoders = [encoder for encoder in self.model.encoders.values()
                          if isinstance(encoder, (FrameEncoder, SpectrogramEncoder))]
        return [parameter for encoder in image_encoders for parameter in encoder.backbone.parameters()
                if parameter.requires_grad]


class EpochTimer(L.Callback):
    """Logs each epoch's wall-clock seconds (training and validation) beside its losses."""

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        module.log("epoch_seconds", time.perf_counter() - self.started, on_epoch=True,
                   rank_zero_only=True)


def train(table: pd.DataFrame, cache: FeatureCache, out_dir: str | Path, settings: TrainSettings,
          resume: bool = False, metadata_path: str | list[str] | None = None) -> dict:
    """Train (or K-fold cross-validate) into out_dir; return the test metrics (or their summary).

    Clips missing from the feature cache are preprocessed first; clips that fail to decode are
    left out, with their reasons in the cache's failures.csv. A table of several corpora
    (datasets.index.read_metadata_tables) is trained on every label where it is present, or on the
    labels every corpus has with `common_labels`."""
    run = RunFolder(out_dir)
    if settings.common_labels:
        table = common_labels_only(table)
    if settings.model.speech_encoder and cache.settings.sample_rate != SPEECH_RATE:
        raise UsageError(f"{settings.model.name}: its speech encoder reads voices at {SPEECH_RATE} Hz, "
                         f"not the {cache.settings.sample_rate} Hz these feature settings make")
    table = clips_with_inputs(table, settings.model)
    if settings.speaker_norm and settings.corpus_norm:
        raise UsageError("--speaker-norm and --corpus-norm standardise clips in different company: choose one")
    if settings.speaker_norm:
        require_speakers(table)
    cache = cache.with_inputs(model_inputs(settings.model))
    table = ensure_cached(table, cache, settings.progress)
    run.root.mkdir(parents=True, exist_ok=True)
    if settings.folds > 1:
        return _cross_validate(table, cache, run, settings, resume, metadata_path)
    split = _load_or_make_split(table, run, settings, resume)
    return train_one(table, split, cache, run, settings, resume, metadata_path)


def _cross_validate(table, cache, run: RunFolder, settings, resume, metadata_path) -> dict:
    """One run per actor-grouped fold, in fold-1 … fold-K, and the mean ± std of every metric."""
    results = []
    for number, split in enumerate(actor_folds(table, settings.folds, settings.seed), start=1):
        fold = run.fold(number)
        fold.root.mkdir(parents=True, exist_ok=True)
        if is_first_process():
            _save_split(table, split, fold)
        results.append(train_one(table, split, cache, fold, settings, resume, metadata_path))
    if not is_first_process():
        return {}
    summary = summarise_folds(results)
    _write_config(run, settings, cache, metadata_path)
    run.write_json(run.cv_summary, summary)
    return summary


def _load_or_make_split(table, run: RunFolder, settings: TrainSettings, resume: bool) -> pd.Series:
    """The saved split when resuming, else a new one from the settings' kind and seed (the same
    in every DDP process, since it depends on the seed alone)."""
    if resume and run.split.is_file():
        by_clip = read_csv(run.split).set_index("clip")["split"]
        return table["clip"].map(by_clip).rename("split")
    split = make_split(table, settings.split, settings.seed)
    if is_first_process():
        _save_split(table, split, run)
    return split


def is_first_process() -> bool:
    """True except in the extra processes of a multi-process (DDP) run, which Lightning starts
    with LOCAL_RANK / NODE_RANK set; those must not write the run's files."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _save_split(table: pd.DataFrame, split: pd.Series, run: RunFolder) -> None:
    """Which clip went where, with the columns that let a reader check the split's honesty."""
    columns = [c for c in ("clip", "actor_id", "gender", "emotion") if c in table]
    write_csv(table[columns].assign(split=split.to_numpy()), run.split)


def train_one(table, split, cache, run: RunFolder, settings: TrainSettings, resume: bool,
              metadata_path: str | None) -> dict:
    """Fit on the train part, early-stop on val, evaluate the best weights on test.

    Under DDP every process trains; only the first writes the run's results, and the others
    return an empty dict."""
    L.seed_everything(settings.seed, workers=True, verbose=False)
    labels = corpus_labels(table)
    settings = replace(settings, model=replace(settings.model, num_classes=len(labels)))
    model = EmotionNet(settings.model, image_size=cache.settings.frame_size, weights=settings.weights)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    origins = {}
    if settings.init_from is not None:
        origins[BRANCH] = init_frame_encoder(model, settings.init_from, cache.settings.frame_size)
    if not model.trains_encoders:  # speech encoders only: their embeddings are computed once
        settings = replace(settings, freeze_backbones=True)
    if settings.linear_probe and not settings.freeze_backbones:
        raise UsageError("the linear probe fits the last layer on frozen encoders' features: "
                         "add --freeze-backbones")
    if settings.model.fusion == "svm" and not settings.linear_probe:
        raise UsageError(f"{settings.model.name}'s last layer is a support-vector machine, fitted in "
                         "closed form: leave out --no-linear-probe (or choose its _linear_ model)")
    _check_speeds(settings, model)
    if is_first_process():
        _write_config(run, settings, cache, metadata_path)
    parts = {name: table[split.to_numpy() == name] for name in ("train", "val", "test")}
    if settings.freeze_backbones:
        datasets = prepare_frozen_backbones(model, parts, cache, labels, settings.progress,
                                            trained=frozenset(origins))
    else:
        datasets = _cached_datasets(table, parts, cache, labels, settings)
    loaders = _loaders(datasets, settings)
    module = EmotionModule(model, settings)
    if settings.linear_probe:
        if not is_first_process():
            return {}
        fit_probe(model, *_probe_clips(model, datasets, parts, cache, labels, settings), len(labels), settings.seed)
        epoch, best_loss = 0, None
    else:
        best = fit(module, loaders["train"], loaders["val"], settings, run, resume)
        if not is_first_process():
            return {}
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"],
                               strict=module.strict_loading)
        epoch, best_loss = _kept_epoch(run, settings)
    normalisation = None
    if settings.normalised_by:
        normalisation, probabilities = fit_speaker_normalisation(model, table, split, cache, labels,
                                                                 settings.batch_size, settings.linear_probe,
                                                                 settings.normalised_by)
    else:
        probabilities, as_recorded = _test_probabilities(module, loaders["test"], parts["test"], cache, labels,
                                                         settings)
    save_checkpoint(run.model, model, Checkpoint.of(model, cache.settings, labels, normalisation,
                                                    normalised_by=settings.normalised_by or "speaker", epoch=epoch,
                                                    best_metric=best_loss,
                                                    window_seconds=_typical_length(parts["train"]),
                                                    encoder_origins=origins,
                                                    test_time_speeds=settings.test_time_speeds,
                                                    grayscale_frames=grayscale_frames(parts["train"], cache, model.inputs)))
    test = parts["test"]
    predictions = predictions_table(list(test["clip"]), list(test["emotion"]), probabilities, labels)
    extra = {"model": settings.model.name, "best_epoch": epoch, "best_val_loss": best_loss,
             "pretrained": settings.model.pretrained, "split": settings.split,
             "speaker_norm": settings.speaker_norm, "corpus_norm": settings.corpus_norm}
    if settings.test_time_speeds:  # what hearing each voice at those speeds too gained
        targets = np.asarray(datasets["test"].targets)
        extra["accuracy_as_recorded"] = float((as_recorded.argmax(axis=1) == targets).mean())
    return write_evaluation(run, predictions, labels, metadata=table, extra=extra)


def _check_speeds(settings: TrainSettings, model: EmotionNet) -> None:
    """Refuse speeds that cannot play this model's voices: factors out of range, copies for a
    last layer that is not a probe, a model that reads more than a voice or whose encoders learn
    (its test voices' embeddings are not cached once), or averaged probabilities where speaker
    normalisation judges."""
    low, high = SPEED_RANGE
    for option, speeds in (("--speed-perturbation", settings.speed_perturbation),
                           ("--test-time-speeds", settings.test_time_speeds)):
        if not all(low <= speed <= high for speed in speeds):
            raise UsageError(f"{option}: a speed is a factor between {low:g} and {high:g} (0.9: 10 % "
                             f"slower), not {', '.join(f'{speed:g}' for speed in speeds)}")
        if speeds and model.inputs != (WAVEFORM,):
            raise UsageError(f"{option} plays voices faster or slower: {settings.model.name} reads "
                             f"{', '.join(model.inputs)}, not the waveform alone")
    if settings.speed_perturbation and not settings.linear_probe:
        raise UsageError("speed perturbation adds copies of the training voices to the probe's clips: "
                         "it needs --linear-probe")
    if len(settings.test_time_speeds) > MAX_TEST_TIME_SPEEDS:
        raise UsageError(f"--test-time-speeds: at most {MAX_TEST_TIME_SPEEDS} speeds (each is one more "
                         "pass of the encoder over every voice judged)")
    if settings.test_time_speeds and not settings.freeze_backbones:
        raise UsageError("--test-time-speeds judges the frozen encoders' embeddings of each voice at each "
                         "speed: add --freeze-backbones")
    if settings.test_time_speeds and settings.normalised_by:
        raise UsageError(f"--test-time-speeds averages each voice's probabilities; {settings.normalised_by} "
                         f"normalisation judges a {settings.normalised_by}'s clips together from their "
                         "features: choose one")


def _test_probabilities(module: EmotionModule, loader: DataLoader, test: pd.DataFrame, cache: FeatureCache,
                        labels: list[str], settings: TrainSettings) -> tuple[np.ndarray, np.ndarray]:
    """The test clips' probabilities: each voice's as recorded, averaged with those of the voice
    played at each of `test_time_speeds` (their embeddings cached beside the clip's), as a
    prediction of the trained model judges (avemotion.runtime.predict.averaged_over_speeds); and
    those of the voices as recorded alone."""
    judged = [predict_probabilities(module, loader)]
    if settings.test_time_speeds:
        copies = speed_perturbed_embeddings(module.model, {"test": test}, cache, labels,
                                            settings.test_time_speeds, settings.progress)
        judged += [predict_probabilities(module, DataLoader(at_speed["test"], batch_size=settings.batch_size))
                   for at_speed in copies.values()]
    return np.mean(judged, axis=0), judged[0]


def _probe_clips(model: EmotionNet, datasets: dict[str, Embeddings], parts: dict[str, pd.DataFrame],
                 cache: FeatureCache, labels: list[str],
                 settings: TrainSettings) -> tuple[list[Embeddings], list[pd.DataFrame], list[bool]]:
    """What the probe is fitted on: the training and validation clips' embeddings (there is no early
    stopping to keep the validation speakers for), and those of their voices played at each speed
    in `speed_perturbation`; the table of each, and whether each is such a copy."""
    fitted_on = {name: parts[name] for name in ("train", "val")}
    embedded = [datasets[name] for name in fitted_on]
    if settings.speed_perturbation:
        copies = speed_perturbed_embeddings(model, fitted_on, cache, labels, settings.speed_perturbation,
                                            settings.progress)
        embedded += [at_speed[name] for at_speed in copies.values() for name in fitted_on]
    copied = [False] * len(fitted_on) + [True] * len(fitted_on) * len(settings.speed_perturbation)
    return embedded, list(fitted_on.values()) * (1 + len(settings.speed_perturbation)), copied


@torch.no_grad()
def fit_probe(model: EmotionNet, parts: list[Embeddings], tables: list[pd.DataFrame], copied: list[bool],
              num_classes: int, seed: int = 0) -> None:
    """Fit the model's head on the features it reads, from these parts' cached embeddings (their
    clips are the tables' rows; `copied` says which parts are augmented copies of others): an RBF
    support-vector machine in closed form where the model's classifier is one
    (:mod:`avemotion.runtime.svm_probe`, its penalty chosen on held-out speakers, the clips as
    recorded kept first where it must leave some out), the hidden-layer probe's fixed recipe where
    the head has a hidden layer (:mod:`avemotion.training.hidden_probe`), a logistic regression in
    closed form otherwise (:mod:`avemotion.runtime.linear_probe`)."""
    model.eval()
    targets = torch.cat([part.targets for part in parts]).numpy()
    if isinstance(model.head, HiddenLayerFusion):  # fitted on what the head reads, not the last layer
        inputs = torch.cat([model.head_inputs_from_embeddings(part.embeddings) for part in parts]).numpy()
        model.head.load_layer(fit_hidden_layer(inputs, targets, num_classes, model.settings.temporal_hidden,
                                               model.settings.dropout, seed))
        return
    features = torch.cat([model.clip_features_from_embeddings(part.embeddings) for part in parts]).numpy()
    classifier = model.head.classifier
    if isinstance(classifier, KernelClassifier):
        copies = np.repeat(copied, [len(part) for part in parts])
        classifier.load_layer(fit_svm_layer(features, targets, num_classes, _speakers(pd.concat(tables)),
                                            copies=copies))
        return
    layer = fit_logistic_layer(features, targets, num_classes, PROBE_C)
    classifier.weight.copy_(torch.from_numpy(layer.weight))
    classifier.bias.copy_(torch.from_numpy(layer.bias))


def _speakers(table: pd.DataFrame) -> np.ndarray | None:
    """Each clip's speaker, or None where some clip has none (a manifest without speakers)."""
    if "actor_id" not in table or table["actor_id"].isna().any():
        return None
    return table["actor_id"].astype(str).to_numpy()


def fit_speaker_normalisation(model: EmotionNet, table: pd.DataFrame, split: pd.Series,
                              cache: FeatureCache, labels: list[str], batch_size: int,
                              linear_probe: bool = False,
                              group: str = "speaker") -> tuple[SpeakerNormalisation, np.ndarray]:
    """Speaker normalisation's second step on a trained network (or corpus normalisation's, with
    `group` "corpus"), fitted on the training clips' features; returns it and the test clips'
    probabilities (in the table's order). With the linear probe's recipe the speaker head is a probe
    too: fitted on the validation clips as well, with the probe's penalty (on the validation
    speakers of RAVDESS and CREMA-D, C = 0.1 beat 1 on frozen speech features). A model whose last
    layer is a support-vector machine gets one as its speaker head too, and one whose head has a
    hidden layer gets a hidden layer, fitted by the hidden-layer probe's recipe on what the head reads."""
    if model.trains_encoders:
        clips = DataLoader(CachedClips(table, cache, labels, model.inputs), batch_size=batch_size)
        features = clip_features(model, clips)
    else:  # its encoders' embeddings are cached once
        features = clip_features_of_frozen(model, table, cache)
    fitted_on = ("train", "val") if linear_probe else ("train",)
    train, test = split.isin(fitted_on).to_numpy(), (split == "test").to_numpy()
    targets = np.array([labels.index(label) for label in table["emotion"]])
    groups = clip_groups(table, group)
    if group == "corpus":  # a corpus's test clips standardised on their own, as a new corpus's are
        groups = np.asarray([f"{corpus}/{part}" for corpus, part in zip(groups, split)])
    if isinstance(model.head, HiddenLayerFusion):  # its hidden layer fitted again, by the probe's recipe
        standardised = standardised_by_speaker(features, groups, "the training table", group)
        normalisation = SpeakerNormalisation(fit_hidden_layer(standardised[train], targets[train], len(labels),
                                                              model.settings.temporal_hidden, model.settings.dropout))
    else:
        normalisation = SpeakerNormalisation.fit(features, groups, targets, train, len(labels),
                                                 C=PROBE_C if linear_probe else SPEAKER_HEAD_C,
                                                 svm=isinstance(model.head.classifier, KernelClassifier),
                                                 group=group, held_out=_speakers(table))
    return normalisation, normalisation.probabilities(features, groups, group=group)[test]


GRAYSCALE_CHECKED = 64  # training clips, evenly spread, whose frames decide whether the corpus is grayscale


def grayscale_frames(table: pd.DataFrame, cache: FeatureCache, inputs: tuple[str, ...]) -> bool:
    """Whether the training clips' frames are grayscale (their three channels equal, in every one
    of GRAYSCALE_CHECKED clips spread over the table): a face corpus such as FER2013, whose model
    (reading `inputs`) then reads new frames in grayscale too (ModelCard.reading_settings)."""
    if FRAMES not in inputs or table.empty:
        return False
    rows = np.unique(np.linspace(0, len(table) - 1, min(len(table), GRAYSCALE_CHECKED)).astype(int))
    for key in entry_keys(table.iloc[rows]):
        frames = cache.read(key, (FRAMES,))[FRAMES]
        if not (np.array_equal(frames[:, 0], frames[:, 1]) and np.array_equal(frames[:, 1], frames[:, 2])):
            return False
    return True


def _typical_length(table: pd.DataFrame) -> float | None:
    """The training clips' typical length in seconds, read from their files' headers (None for
    still images, which have none)."""
    return typical_duration([media for media, _ in clip_media(table) if media and not is_image(media)])


def _cached_datasets(table, parts: dict, cache: FeatureCache, labels: list[str],
                     settings: TrainSettings) -> dict[str, CachedClips]:
    """Each part's clips from the feature cache, the training clips' spectrograms masked if asked."""
    inputs = model_inputs(settings.model)
    masks = {MEL: SpectrogramMasks(settings.spec_masks, settings.seed)} if settings.spec_masks and MEL in inputs else {}
    return {name: CachedClips(part, cache, labels, inputs, masks if name == "train" else None)
            for name, part in parts.items()}


class SpectrogramMasks:
    """SpecAugment's masking: `count` bands of Mel bins and `count` spans of time steps, each up to
    an eighth of the spectrogram wide, set to the spectrogram's mean. Training clips only.

    Each DataLoader worker process gets a copy of this object; each copy draws from its own
    generator, seeded with the worker's seed, so that workers do not lay the same masks."""

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.rng = np.random.default_rng(seed)
        self.worker: int | None = None  # the worker whose seed self.rng has, None in the main process

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        rng = self._generator()
        masked = mel.copy()
        fill = float(mel.mean())
        for axis in (-2, -1):  # Mel bins, then time
            size = mel.shape[axis]
            for _ in range(self.count):
                width = int(rng.integers(0, size // 8 + 1))
                start = int(rng.integers(0, size - width + 1))
                index = [slice(None)] * mel.ndim
                index[axis] = slice(start, start + width)
                masked[tuple(index)] = fill
        return masked

    def _generator(self) -> np.random.Generator:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self.worker != worker.id:
            self.rng = np.random.default_rng(worker.seed)  # the DataLoader's seed for this worker
            self.worker = worker.id
        return self.rng


def _loaders(datasets: dict, settings: TrainSettings) -> dict[str, DataLoader]:
    """A DataLoader for each part; only the training part is shuffled (with the run's seed)."""
    generator = torch.Generator().manual_seed(settings.seed)
    return {
        name: DataLoader(dataset, batch_size=settings.batch_size, shuffle=name == "train",
                         generator=generator if name == "train" else None,
                         num_workers=settings.num_workers, persistent_workers=settings.num_workers > 0)
        for name, dataset in datasets.items()
    }


def fit(module: L.LightningModule, train_loader, val_loader, settings: TrainSettings, run: RunFolder,
        resume: bool = False) -> Path:
    """Run Lightning's loop with early stopping and checkpointing; return the kept checkpoint's path.

    `last.ckpt` is written after every epoch, so an interrupted run keeps its last completed epoch
    and `resume` continues from it.
    """
    # Saved once the whole epoch (validation included) is done, so a resume starts the next one.
    latest = ModelCheckpoint(dirpath=run.checkpoints, filename="last", save_on_train_epoch_end=True,
                             enable_version_counter=False)
    # With the one-cycle schedule the weights kept are the last epoch's, with no early stopping: the
    # schedule anneals to its end, and picking an earlier epoch on a few validation speakers' loss
    # is mostly noise.
    best = None if settings.keeps_last_epoch else ModelCheckpoint(
        dirpath=run.checkpoints, filename="best", monitor="val_loss", mode="min", save_top_k=1,
        enable_version_counter=False)
    selection = [] if best is None else [best, EarlyStopping(monitor="val_loss", mode="min",
                                                             patience=settings.patience)]
    last = run.checkpoints / "last.ckpt"
    resuming = resume and last.is_file()
    if not resuming and is_first_process():  # a new run: no earlier run's epochs in its history
        for stale in (run.logs, run.checkpoints):
            shutil.rmtree(stale, ignore_errors=True)
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=settings.max_epochs, accelerator=settings.accelerator,
            devices=_devices(settings.devices), strategy=settings.strategy,
            num_nodes=settings.num_nodes, precision=settings.precision,
            callbacks=[latest, *selection, EpochTimer()],
            logger=CSVLogger(run.logs, name="", version=_next_attempt(run)),
            log_every_n_steps=1, enable_progress_bar=settings.progress,
            enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=run.root,
        )
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=last if resuming else None)
        except SystemExit:  # Lightning's answer to Ctrl-C, after a graceful shutdown
            if not trainer.interrupted:
                raise
        finally:  # Lightning leaves Ctrl-C ignored after an interruption
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.default_int_handler)
    if trainer.interrupted:
        raise TrainingInterrupted(f"training interrupted: the last completed epoch is kept in "
                                  f"{last}; continue with --resume")
    if trainer.is_global_zero:
        _write_history(run)
    return last if best is None else Path(best.best_model_path)


def _next_attempt(run: RunFolder) -> str:
    """A fresh log folder for each (re)start, so a resume never overwrites earlier epochs' logs."""
    return f"attempt-{len(list(run.logs.glob('attempt-*'))) + 1}"


def _devices(devices: str):
    """Lightning's devices argument from the CLI's text: 'auto', a count, or a list '0,1'."""
    if devices == "auto":
        return "auto"
    return [int(d) for d in devices.split(",") if d] if "," in devices else int(devices)


class _quiet_lightning:
    """Silence Lightning's advice about DataLoader workers and small logging intervals."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        for text in ("does not have many workers", "The number of training batches",
                     "Checkpoint directory", "ckpt_path", "LeafSpec", "in eval mode"):
            warnings.filterwarnings("ignore", message=f".*{text}.*")
        self._logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        self._level = self._logger.level
        self._logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        return self._warnings.__exit__(*exc)


def _write_history(run: RunFolder) -> pd.DataFrame:
    """Collapse every attempt's metrics.csv into one row per epoch (a later attempt's row wins);
    write history.csv and the loss curves."""
    attempts = sorted(run.logs.glob("attempt-*/metrics.csv"),
                      key=lambda path: int(path.parent.name.split("-")[1]))
    raw = pd.concat([pd.read_csv(path) for path in attempts], ignore_index=True)
    columns = [c for c in ("train_loss", "val_loss", "train_acc", "val_acc", "epoch_seconds") if c in raw]
    history = raw.groupby("epoch")[columns].last().reset_index()
    history.to_csv(run.history, index=False)
    plot_loss_curves(history, run.loss_curves)
    return history


def _kept_epoch(run: RunFolder, settings: TrainSettings) -> tuple[int, float]:
    """The epoch whose weights were kept, and its validation loss: the lowest validation loss, or
    the last epoch with the one-cycle schedule."""
    history = pd.read_csv(run.history)
    row = history.iloc[-1] if settings.keeps_last_epoch else history.loc[history["val_loss"].idxmin()]
    return int(row["epoch"]), float(row["val_loss"])


def _write_config(run: RunFolder, settings: TrainSettings, cache: FeatureCache,
                  metadata_path: str | None) -> None:
    """The run's resolved settings: training (with the model's), features, inputs and versions."""
    run.write_json(run.config, {
        "train": asdict(settings),
        "features": asdict(cache.settings),
        "feature_cache": str(cache.root),
        "metadata": metadata_path,
        "versions": {"torch": torch.__version__, "lightning": L.__version__},
        "cpu_count": os.cpu_count(),
    })
