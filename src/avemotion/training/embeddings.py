"""Frozen-backbone embeddings: each clip's encoder features (per frame for the video branch, per
clip for the audio branch), computed once.

With `--freeze-backbones` only the LSTM, fusion and head train, so the backbones' outputs never
change: they are computed once per clip and cached, and an epoch over the whole dataset reads small
arrays instead of running the image networks. The cache is keyed by the backbones' weights (a hash
of their parameters) and by the feature settings, so it is never reused for another model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from avemotion.media.inputs import WAVEFORM, network_inputs
from avemotion.media.preprocess import (
    FeatureCache,
    entry_keys,
    remove_partial_files,
    write_npz_atomically,
)
from avemotion.media.speech import speed_perturbed
from avemotion.training.evaluate import device_of
from avemotion.training.models import EmotionNet

EMBEDDING_BATCH = 16  # clips per backbone call while filling the cache
CALIBRATION_CLIPS = 256  # training clips whose statistics replace a random backbone's
# Raised whenever an encoder's features change for the same weights and settings, so that no cache
# of the old features is read as the new. 2: Whisper through transformers reads the voice's own
# frames, no longer padded to 30 s.
EMBEDDING_FORMAT = 2
BATCHNORM_FILE = "batchnorm.pt"


def backbone_digest(model: EmotionNet, feature_digest: str) -> str:
    """A short hash of the backbones' names and weights (an external encoder's by its identity's
    digest), the feature settings and the embedding format."""
    hasher = hashlib.sha256(f"{EMBEDDING_FORMAT}:{feature_digest}".encode())
    for identity in model.external_identities().values():
        hasher.update(identity.digest.encode())
    for backbone in model.backbones():
        hasher.update(type(backbone).__name__.encode())
        for name, tensor in backbone.state_dict().items():
            hasher.update(name.encode())
            hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:12]


class EmbeddingCache:
    """One .npz per clip (named by its feature-cache entry) holding each branch's encoder
    features, float16: `video` (T, D_v) and `audio` (D_a). A voice played at another speed
    (speed perturbation, training clips only) has its own .npz beside the clip's."""

    def __init__(self, cache_root: Path, model: EmotionNet, features: FeatureCache) -> None:
        self.model = model
        self.features = features
        self.root = Path(cache_root) / f"embeddings-{backbone_digest(model, features.settings.digest())}"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str, speed: float = 1.0) -> Path:
        return self.root / (f"{key}.npz" if speed == 1 else f"{key}.speed-{speed:g}.npz")

    def fill(self, keys: list[str], progress: bool = True, speed: float = 1.0) -> int:
        """Compute the embeddings of the entries not yet cached (their voices played at `speed`);
        return how many were computed."""
        remove_partial_files(self.root)
        missing = [key for key in keys if not self.path(key, speed).is_file()]
        batches = [missing[i : i + EMBEDDING_BATCH] for i in range(0, len(missing), EMBEDDING_BATCH)]
        description = "backbone embeddings" + (f", voices at speed {speed:g}" if speed != 1 else "")
        self.model.eval()
        for batch in tqdm(batches, desc=description, unit="batch", disable=not progress):
            self._embed_batch(batch, speed)
        return len(missing)

    @torch.no_grad()
    def calibrate_batchnorm(self, keys: list[str], kept: frozenset[str] = frozenset()) -> None:
        """Give randomly initialised backbones' batch norms the statistics of real inputs.

        With their default statistics (mean 0, variance 1) a random EfficientNet in eval mode maps
        every clip to nearly the same features, leaving a frozen model nothing to learn from. The
        statistics are averaged over up to CALIBRATION_CLIPS training clips once, saved beside the
        embeddings, and end up in the run's checkpoint with the rest of the weights. The encoders
        of the branches in `kept` are trained ones (``--init-from``) and keep their statistics."""
        kept_prefixes = tuple(f"encoders.{branch}." for branch in kept)
        norms = {name: module for name, module in self.model.named_modules()
                 if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
                 and not name.startswith(kept_prefixes)}
        saved = self.root / BATCHNORM_FILE
        if not norms:
            return
        if saved.is_file():
            self.model.load_state_dict(torch.load(saved, weights_only=True), strict=False)
            return
        momenta = {name: module.momentum for name, module in norms.items()}
        for module in norms.values():
            module.reset_running_stats()
            module.momentum = None  # a plain average over every calibration batch
        self.model.train()
        for start in range(0, min(len(keys), CALIBRATION_CLIPS), EMBEDDING_BATCH):
            self._backbone_outputs(keys[start : start + EMBEDDING_BATCH])
        self.model.eval()
        for name, module in norms.items():
            module.momentum = momenta[name]
        statistics = {f"{name}.{key}": value for name, module in norms.items()
                      for key, value in module.state_dict().items() if key.startswith(("running", "num"))}
        partial = saved.with_name(f".partial-{os.getpid()}-{saved.name}")
        torch.save(statistics, partial)  # several DDP processes may calibrate at once
        os.replace(partial, saved)

    @torch.no_grad()
    def _embed_batch(self, keys: list[str], speed: float = 1.0) -> None:
        arrays = self._backbone_outputs(keys, speed)
        for index, key in enumerate(keys):
            write_npz_atomically(self.path(key, speed), **{k: v[index].astype(np.float16) for k, v in arrays.items()})

    def _backbone_outputs(self, keys: list[str], speed: float = 1.0) -> dict[str, np.ndarray]:
        """Each branch's encoder features of some entries (their voices played at `speed`: for a
        model that reads the waveform alone), named like the cache's arrays."""
        entries = [network_inputs(self.features.read(key, self.model.inputs).inputs) for key in keys]
        stacked = {name: np.stack([entry[name] for entry in entries]) for name in self.model.inputs}
        if speed != 1:
            stacked[WAVEFORM] = speed_perturbed(stacked[WAVEFORM], speed)
        device = device_of(self.model)
        batch = {name: torch.from_numpy(array).to(device) for name, array in stacked.items()}
        return {branch: value.cpu().numpy() for branch, value in self.model.embed(batch).items()}

    def load(self, keys: list[str], speed: float = 1.0) -> dict[str, torch.Tensor]:
        """All entries' embeddings (of their voices played at `speed`), one float32 tensor per branch."""
        branches = {branch: [] for branch in self.model.encoders}
        for key in keys:
            with np.load(self.path(key, speed)) as entry:
                for branch, arrays in branches.items():
                    arrays.append(entry[branch])
        return {branch: torch.from_numpy(np.stack(arrays).astype(np.float32))
                for branch, arrays in branches.items()}


class Embeddings(Dataset):
    """Clips' cached embeddings by branch, with their labels: what a frozen model trains on."""

    def __init__(self, embeddings: dict[str, torch.Tensor], targets: torch.Tensor) -> None:
        self.embeddings = embeddings
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {branch: values[index] for branch, values in self.embeddings.items()}, self.targets[index]


def prepare_frozen_backbones(model: EmotionNet, parts: dict[str, pd.DataFrame], features: FeatureCache,
                             labels: list[str], progress: bool = True,
                             trained: frozenset[str] = frozenset()) -> dict[str, Embeddings]:
    """The frozen-backbone mode's preparation, step by step; returns each part's embeddings.

    1. Backbones that start from random weights get BatchNorm statistics from the training clips
       (those of the branches in `trained`, started from a trained model, keep theirs).
    2. Every clip's backbone embeddings are computed once and cached.
    3. The model standardises embeddings with the training clips' mean and spread (these
       statistics are buffers, so they travel in the checkpoint).
    Afterwards only the temporal model, fusion and head need to run."""
    embeddings = EmbeddingCache(features.folder, model, features)
    keys = {name: entry_keys(part) for name, part in parts.items()}  # each clip's files looked at once
    if not model.settings.pretrained:
        embeddings.calibrate_batchnorm(sorted(keys["train"]), kept=trained)
    embeddings.fill(sorted(set().union(*map(set, keys.values()))), progress)
    datasets = {name: Embeddings(embeddings.load(keys[name]), _targets(part, labels))
                for name, part in parts.items()}
    model.set_feature_standardisation(datasets["train"].embeddings)
    model.train()  # filling left it in eval mode; the frozen backbones are not called again
    return datasets


def speed_perturbed_embeddings(model: EmotionNet, parts: dict[str, pd.DataFrame], features: FeatureCache,
                               labels: list[str], speeds: tuple[float, ...],
                               progress: bool = True) -> dict[float, dict[str, Embeddings]]:
    """At each speed, each part's embeddings of its clips' voices played at that speed, computed
    once and cached beside the clips' own: the copies a probe is also fitted on (speed
    perturbation)."""
    embeddings = EmbeddingCache(features.folder, model, features)
    keys = {name: entry_keys(part) for name, part in parts.items()}  # each clip's files looked at once
    every_key = sorted(set().union(*map(set, keys.values())))
    copies = {}
    for speed in speeds:
        embeddings.fill(every_key, progress, speed)
        copies[speed] = {name: Embeddings(embeddings.load(keys[name], speed), _targets(part, labels))
                         for name, part in parts.items()}
    return copies


def _targets(part: pd.DataFrame, labels: list[str]) -> torch.Tensor:
    return torch.tensor([labels.index(label) for label in part["emotion"]])


@torch.no_grad()
def clip_features_of_frozen(model: EmotionNet, table: pd.DataFrame, features: FeatureCache,
                            progress: bool = False) -> np.ndarray:
    """(N, D) clip features (what the last layer reads) of every clip of the table, in its order,
    from the cached embeddings of the model's encoders (computed first where missing): for a
    model whose encoders never change, such as a speech encoder's."""
    embeddings = EmbeddingCache(features.folder, model, features)
    keys = entry_keys(table)
    embeddings.fill(sorted(set(keys)), progress)
    model.eval()
    return model.clip_features_from_embeddings(embeddings.load(keys)).numpy()
