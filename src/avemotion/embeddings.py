"""Frozen-backbone embeddings: each clip's per-frame and spectrogram backbone features, computed once.

With `--freeze-backbones` only the LSTM, fusion and head train, so the backbones' outputs never
change: they are computed once per clip and cached, and an epoch over the whole dataset reads small
arrays instead of running the image networks. The cache is keyed by the backbones' weights (a hash
of their parameters) and by the feature settings, so it is never reused for another model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avemotion.models import EmotionNet
from avemotion.preprocess import FeatureCache, remove_partial_files, write_npz_atomically

EMBEDDING_BATCH = 16  # clips per backbone call while filling the cache


def backbone_digest(model: EmotionNet, feature_digest: str) -> str:
    """A short hash of the backbones' names, weights and the feature settings."""
    hasher = hashlib.sha256(feature_digest.encode())
    for backbone in model.backbones():
        hasher.update(type(backbone).__name__.encode())
        for name, tensor in backbone.state_dict().items():
            hasher.update(name.encode())
            hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:12]


class EmbeddingCache:
    """One .npz per clip holding `frames` (T, D_v) and `audio` (D_a) backbone features, float16."""

    def __init__(self, cache_root: Path, model: EmotionNet, features: FeatureCache) -> None:
        self.model = model
        self.features = features
        self.root = Path(cache_root) / f"embeddings-{backbone_digest(model, features.settings.digest())}"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, clip: str) -> Path:
        return self.root / f"{clip}.npz"

    def fill(self, clips: list[str], progress: bool = True) -> int:
        """Compute the embeddings of the clips not yet cached; return how many were computed."""
        remove_partial_files(self.root)
        missing = [clip for clip in clips if not self.path(clip).is_file()]
        batches = [missing[i : i + EMBEDDING_BATCH] for i in range(0, len(missing), EMBEDDING_BATCH)]
        self.model.eval()
        for batch in tqdm(batches, desc="backbone embeddings", unit="batch", disable=not progress):
            self._embed_batch(batch)
        return len(missing)

    @torch.no_grad()
    def _embed_batch(self, clips: list[str]) -> None:
        entries = [self.features.read(clip) for clip in clips]
        frames = torch.from_numpy(np.stack([entry.frames for entry in entries]))
        mel = torch.from_numpy(np.stack([entry.mel for entry in entries]).astype(np.float32))
        device = next(self.model.parameters()).device
        arrays = {}
        if self.model.frames is not None:
            arrays["frames"] = self.model.embed_frames(frames.to(device)).cpu().numpy()
        if self.model.spectrogram is not None:
            arrays["audio"] = self.model.embed_audio(mel.to(device)).cpu().numpy()
        for index, clip in enumerate(clips):
            write_npz_atomically(self.path(clip),
                                 **{k: v[index].astype(np.float16) for k, v in arrays.items()})

    def load(self, clips: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """All clips' embeddings as two float32 tensors (an empty one for a missing modality)."""
        frames, audio = [], []
        for clip in clips:
            with np.load(self.path(clip)) as entry:
                frames.append(entry["frames"] if "frames" in entry else np.zeros(0, np.float16))
                audio.append(entry["audio"] if "audio" in entry else np.zeros(0, np.float16))
        return (torch.from_numpy(np.stack(frames).astype(np.float32)),
                torch.from_numpy(np.stack(audio).astype(np.float32)))
