"""Stage 4, train: the paper's recipe with PyTorch Lightning, on an honest split, into one run folder.

The recipe, in one place: AdamW (lr 5e-5, weight decay 1e-2), cross-entropy, batch 8, at most 10
epochs, early stopping after 3 epochs without a lower validation loss, and the best-validation-loss
weights restored and used on the test split. Every default is a field of :class:`TrainSettings`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from avemotion.checkpoint import Checkpoint, save_checkpoint
from avemotion.cremad import EMOTIONS
from avemotion.embeddings import EmbeddingCache
from avemotion.evaluate import (
    CONFIG_FILE,
    CV_SUMMARY_FILE,
    HISTORY_FILE,
    LOSS_CURVES_FILE,
    MODEL_FILE,
    SPLIT_FILE,
    plot_loss_curves,
    predict_probabilities,
    predictions_table,
    summarise_folds,
    write_evaluation,
)
from avemotion.models import EmotionNet, create_model
from avemotion.preprocess import CachedClips, FeatureCache, ensure_cached
from avemotion.registry import with_ablations
from avemotion.splits import actor_folds, make_split

CHECKPOINTS = "checkpoints"
LOGS = "logs"
LABELS = list(EMOTIONS)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (or a crash Lightning shut down gracefully); the message says
    where the last completed epoch is."""


@dataclass(frozen=True)
class TrainSettings:
    """One training run's recipe; saved, resolved, as config.json in the run folder."""

    model: str = "effnet_lstm"  # registered model name
    learning_rate: float = 5e-5  # AdamW
    weight_decay: float = 1e-2  # AdamW
    batch_size: int = 8  # clips per step
    max_epochs: int = 10  # upper bound on epochs
    patience: int = 3  # epochs without a lower validation loss before stopping
    split: str = "actor"  # 'actor' (no actor in two splits) or 'random' (clip level)
    folds: int = 0  # > 1: actor-grouped K-fold cross-validation instead of one split
    seed: int = 0  # split, initialisation and data order
    freeze_backbones: bool = False  # cache backbone embeddings once, train LSTM + fusion + head
    pretrained: bool = True  # ImageNet backbone weights (hub, cache or --weights)
    weights: str | None = None  # local file or folder of backbone weights
    lstm_hidden: int = 256  # LSTM hidden size
    accelerator: str = "auto"  # Lightning accelerator: cpu, gpu, auto
    devices: str = "auto"  # Lightning devices: a count, a list or auto
    strategy: str = "auto"  # Lightning strategy: ddp, auto…
    num_nodes: int = 1  # machines in a multi-node DDP run
    precision: str = "32-true"  # Lightning precision: 16-mixed, bf16-mixed on GPU
    num_workers: int = 0  # DataLoader worker processes (cache reads are cheap)
    progress: bool = True  # progress bars


class EmotionModule(L.LightningModule):
    """The network, the loss and the optimiser; in frozen mode only the LSTM, fusion and head."""

    def __init__(self, model: EmotionNet, settings: TrainSettings) -> None:
        super().__init__()
        self.model = model
        self.settings = settings
        if settings.freeze_backbones:
            for backbone in model.backbones():
                backbone.requires_grad_(False)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Logits from (frames, mel), or from (frame embeddings, audio embeddings) when frozen."""
        if self.settings.freeze_backbones:
            video = first if self.model.temporal is not None else None
            audio = second if self.model.spectrogram is not None else None
            return self.model.forward_embeddings(video, audio)
        return self.model(first, second)

    def _step(self, batch, stage: str) -> torch.Tensor:
        first, second, target = batch
        logits = self(first, second)
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.argmax(dim=1) == target).float().mean()
        options = {"on_step": False, "on_epoch": True, "batch_size": len(target), "sync_dist": True}
        self.log(f"{stage}_loss", loss, prog_bar=True, **options)
        self.log(f"{stage}_acc", accuracy, **options)
        return loss

    def training_step(self, batch, batch_index):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_index):
        return self._step(batch, "val")

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=self.settings.learning_rate,
                                 weight_decay=self.settings.weight_decay)


class EpochTimer(L.Callback):
    """Logs each epoch's wall-clock seconds (training and validation) beside its losses."""

    def on_train_epoch_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        module.log("epoch_seconds", time.perf_counter() - self.started, on_epoch=True,
                   rank_zero_only=True)


def train(table: pd.DataFrame, cache: FeatureCache, out_dir: str | Path, settings: TrainSettings,
          resume: bool = False, metadata_path: str | None = None) -> dict:
    """Train (or K-fold cross-validate) into out_dir; return the test metrics (or their summary).

    Clips missing from the feature cache are preprocessed first; clips that fail to decode are
    left out, with their reasons in the cache's failures.csv."""
    out_dir = Path(out_dir)
    table = ensure_cached(table, cache, settings.progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.folds > 1:
        return _cross_validate(table, cache, out_dir, settings, resume, metadata_path)
    split = _load_or_make_split(table, out_dir, settings, resume)
    return train_one(table, split, cache, out_dir, settings, resume, metadata_path)


def _cross_validate(table, cache, out_dir, settings, resume, metadata_path) -> dict:
    """One run per actor-grouped fold, in fold-1 … fold-K, and the mean ± std of every metric."""
    results = []
    for fold, split in enumerate(actor_folds(table, settings.folds, settings.seed), start=1):
        fold_dir = out_dir / f"fold-{fold}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        if is_first_process():
            _save_split(table, split, fold_dir)
        results.append(train_one(table, split, cache, fold_dir, settings, resume, metadata_path))
    if not is_first_process():
        return {}
    summary = summarise_folds(results)
    _write_config(out_dir, settings, cache, metadata_path)
    (out_dir / CV_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _load_or_make_split(table, out_dir: Path, settings: TrainSettings, resume: bool) -> pd.Series:
    """The saved split when resuming, else a new one from the settings' kind and seed (the same
    in every DDP process, since it depends on the seed alone)."""
    saved = out_dir / SPLIT_FILE
    if resume and saved.is_file():
        by_clip = pd.read_csv(saved).set_index("clip")["split"]
        return table["clip"].map(by_clip).rename("split")
    split = make_split(table, settings.split, settings.seed)
    if is_first_process():
        _save_split(table, split, out_dir)
    return split


def is_first_process() -> bool:
    """True except in the extra processes of a multi-process (DDP) run, which Lightning starts
    with LOCAL_RANK / NODE_RANK set; those must not write the run's files."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _save_split(table: pd.DataFrame, split: pd.Series, out_dir: Path) -> None:
    """Which clip went where, with the columns that let a reader check the split's honesty."""
    columns = [c for c in ("clip", "actor_id", "gender", "emotion") if c in table]
    table[columns].assign(split=split.to_numpy()).to_csv(out_dir / SPLIT_FILE, index=False)


def train_one(table, split, cache, out_dir: Path, settings: TrainSettings, resume: bool,
              metadata_path: str | None) -> dict:
    """Fit on the train part, early-stop on val, evaluate the best weights on test.

    Under DDP every process trains; only the first writes the run's results, and the others
    return an empty dict."""
    L.seed_everything(settings.seed, workers=True, verbose=False)
    model = create_model(settings.model, weights=settings.weights, pretrained=settings.pretrained,
                         image_size=cache.settings.frame_size, lstm_hidden=settings.lstm_hidden)
    if is_first_process():
        _write_config(out_dir, settings, cache, metadata_path, model)
    parts = {name: table[split.to_numpy() == name] for name in ("train", "val", "test")}
    loaders = _loaders(model, parts, cache, settings)
    module = EmotionModule(model, settings)
    best = fit(module, loaders["train"], loaders["val"], settings, out_dir, resume)
    if not is_first_process():
        return {}
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    epoch, best_loss = _best_epoch(out_dir)
    save_checkpoint(out_dir / MODEL_FILE, model,
                    Checkpoint(model.settings, cache.settings, LABELS, epoch, best_loss))
    probabilities = predict_probabilities(module, loaders["test"])
    test = parts["test"]
    predictions = predictions_table(list(test["clip"]), list(test["emotion"]), probabilities, LABELS)
    extra = {"model": settings.model, "best_epoch": epoch, "best_val_loss": best_loss,
             "pretrained": settings.pretrained, "split": settings.split}
    return write_evaluation(out_dir, predictions, LABELS, metadata=table, extra=extra)


def _loaders(model: EmotionNet, parts: dict, cache: FeatureCache, settings: TrainSettings) -> dict:
    """DataLoaders of each part: cached arrays, or cached backbone embeddings when frozen."""
    if settings.freeze_backbones:
        embeddings = EmbeddingCache(cache.root.parent, model, cache)
        embeddings.fill(sorted(set().union(*[set(p["clip"]) for p in parts.values()])),
                        calibration_clips=sorted(parts["train"]["clip"]), progress=settings.progress)
        model.train()  # filling left it in eval mode; the frozen backbones are not called again
        datasets = {name: TensorDataset(*embeddings.load(list(part["clip"])),
                                        torch.tensor([LABELS.index(e) for e in part["emotion"]]))
                    for name, part in parts.items()}
        model.set_feature_standardisation(*datasets["train"].tensors[:2])
    else:
        datasets = {name: CachedClips(part, cache, LABELS) for name, part in parts.items()}
    generator = torch.Generator().manual_seed(settings.seed)
    return {
        name: DataLoader(dataset, batch_size=settings.batch_size, shuffle=name == "train",
                         generator=generator if name == "train" else None,
                         num_workers=settings.num_workers, persistent_workers=settings.num_workers > 0)
        for name, dataset in datasets.items()
    }


def fit(module: L.LightningModule, train_loader, val_loader, settings: TrainSettings, out_dir: Path,
        resume: bool = False) -> Path:
    """Run Lightning's loop with early stopping and checkpointing; return the best checkpoint path.

    `last.ckpt` is written after every epoch, so an interrupted run keeps its last completed epoch
    and `resume` continues from it.
    """
    checkpoints = out_dir / CHECKPOINTS
    best = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val_loss", mode="min",
                           save_top_k=1, enable_version_counter=False)
    # Saved once the whole epoch (validation included) is done, so a resume starts the next one.
    latest = ModelCheckpoint(dirpath=checkpoints, filename="last", save_on_train_epoch_end=True,
                             enable_version_counter=False)
    stopper = EarlyStopping(monitor="val_loss", mode="min", patience=settings.patience)
    last = checkpoints / "last.ckpt"
    resuming = resume and last.is_file()
    with _quiet_lightning():
        trainer = L.Trainer(
            max_epochs=settings.max_epochs, accelerator=settings.accelerator,
            devices=_devices(settings.devices), strategy=settings.strategy,
            num_nodes=settings.num_nodes, precision=settings.precision,
            callbacks=[best, latest, stopper, EpochTimer()],
            logger=CSVLogger(out_dir / LOGS, name="", version=_next_attempt(out_dir)),
            log_every_n_steps=1, enable_progress_bar=settings.progress,
            enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=out_dir,
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
        _write_history(out_dir)
    return Path(best.best_model_path)


def _next_attempt(out_dir: Path) -> str:
    """A fresh log folder for each (re)start, so a resume never overwrites earlier epochs' logs."""
    return f"attempt-{len(list((out_dir / LOGS).glob('attempt-*'))) + 1}"


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


def _write_history(out_dir: Path) -> pd.DataFrame:
    """Collapse every attempt's metrics.csv into one row per epoch (a later attempt's row wins);
    write history.csv and the loss curves."""
    attempts = sorted((out_dir / LOGS).glob("attempt-*/metrics.csv"),
                      key=lambda path: int(path.parent.name.split("-")[1]))
    raw = pd.concat([pd.read_csv(path) for path in attempts], ignore_index=True)
    columns = [c for c in ("train_loss", "val_loss", "train_acc", "val_acc", "epoch_seconds") if c in raw]
    history = raw.groupby("epoch")[columns].last().reset_index()
    history.to_csv(out_dir / HISTORY_FILE, index=False)
    plot_loss_curves(history, out_dir / LOSS_CURVES_FILE)
    return history


def _best_epoch(out_dir: Path) -> tuple[int, float]:
    """The epoch with the lowest validation loss, and that loss."""
    history = pd.read_csv(out_dir / HISTORY_FILE)
    row = history.loc[history["val_loss"].idxmin()]
    return int(row["epoch"]), float(row["val_loss"])


def _write_config(out_dir: Path, settings: TrainSettings, cache: FeatureCache,
                  metadata_path: str | None, model: EmotionNet | None = None) -> None:
    """The run's resolved settings: training, features, model, inputs and versions."""
    config = {
        "train": asdict(settings),
        "features": asdict(cache.settings),
        "feature_cache": str(cache.root),
        "metadata": metadata_path,
        "model": asdict(model.settings) if model is not None else None,
        "versions": {"torch": torch.__version__, "lightning": L.__version__},
        "cpu_count": os.cpu_count(),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def learning_check(table: pd.DataFrame, cache: FeatureCache, out_dir: Path,
                   family: str = "resnet18_vit_lstm", seed: int = 0):
    """The learning check on a synthetic corpus: a hybrid and both its ablations trained with
    frozen random backbones on the actor-independent split. Yields (model name, test metrics) as
    each run ends; tests/test_learning.py and benchmarks/learning_check.py share this recipe."""
    settings = TrainSettings(pretrained=False, freeze_backbones=True, learning_rate=3e-4,
                             max_epochs=40, patience=8, seed=seed, progress=False)
    for name in with_ablations(family):
        yield name, train(table, cache, Path(out_dir) / name, replace(settings, model=name))


def settings_from_config(path: Path) -> TrainSettings:
    """The TrainSettings a run folder's config.json recorded."""
    return replace(TrainSettings(), **json.loads(path.read_text())["train"])
