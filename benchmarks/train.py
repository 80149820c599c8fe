"""Training speed on this machine.

1. Fine-tuning: samples/s of one training step (forward, backward, AdamW) of each hybrid on a batch
   of 8 real clips at 224x224, random weights, on the CPU (2 threads).
2. --freeze-backbones: seconds per epoch over 7,442 cached clips (the six sample clips' arrays and
   embeddings linked under 7,442 CREMA-D names), 70/15/15 actor split, batch 8.

    python benchmarks/train.py [--threads 2] [--clips 7442]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import default_collate

from avemotion.datasets.cremad import EMOTIONS, STATEMENTS
from avemotion.datasets.index import index_dataset
from avemotion.media.features import FeatureSettings
from avemotion.media.preprocess import CachedClips, entry_keys, preprocess
from avemotion.registry import model_settings
from avemotion.samples import sample_dir
from avemotion.training.embeddings import EmbeddingCache
from avemotion.training.models import create_model
from avemotion.training.train import EmotionModule, TrainSettings, train


def finetune_samples_per_second(name: str, batch: tuple, repeats: int = 3) -> float:
    torch.manual_seed(0)
    settings = TrainSettings(model=model_settings(name, pretrained=False))
    module = EmotionModule(create_model(name, pretrained=False), settings).train()
    optimiser = module.configure_optimizers()

    def step():
        loss = torch.nn.functional.cross_entropy(module(batch[0]), batch[1])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return repeats * len(batch[1]) / (time.perf_counter() - started)


def linked_corpus(table: pd.DataFrame, cache, clips: int) -> pd.DataFrame:
    """A CREMA-D-sized table whose feature entries are hard links to the six real clips' entries."""
    rows = []
    for i in range(clips):
        source = table.iloc[i % len(table)]
        actor = 1001 + i % 91
        name = f"{actor}_{STATEMENTS[(i // 91) % 12]}_{source['emotion']}_X{i:05d}"
        rows.append({"clip": name, "video_path": source["video_path"], "actor_id": actor,
                     "statement": "DFA", "emotion": source["emotion"], "intensity": "XX",
                     "gender": "male" if actor < 1049 else "female"})
    corpus = pd.DataFrame(rows)
    sources = dict(zip(table["video_path"], entry_keys(table)))
    for key, video in zip(entry_keys(corpus), corpus["video_path"]):
        if not cache.path(key).exists():
            os.link(cache.path(sources[video]), cache.path(key))
    return corpus


def link_embeddings(model_name: str, table: pd.DataFrame, corpus: pd.DataFrame, cache, root: Path) -> None:
    """Compute the six real clips' embeddings once and link them under every corpus name."""
    torch.manual_seed(0)  # the same initial weights train() will create with seed 0
    embeddings = EmbeddingCache(root, create_model(model_name, pretrained=False), cache)
    embeddings.calibrate_batchnorm(entry_keys(table))
    embeddings.fill(entry_keys(table), progress=False)
    by_emotion = dict(zip(table["emotion"], entry_keys(table)))
    for key, emotion in zip(entry_keys(corpus), corpus["emotion"]):
        if not embeddings.path(key).exists():
            os.link(embeddings.path(by_emotion[emotion]), embeddings.path(key))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, default=7442)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = index_dataset(sample_dir()).table
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = preprocess(table, tmp / "cache", FeatureSettings(), workers=1, progress=False).cache
        dataset = CachedClips(table, cache, list(EMOTIONS))
        batch = default_collate([dataset[i % len(dataset)] for i in range(8)])
        print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads")
        print("fine-tuning, batch 8 of real clips at 224x224, random weights:")
        figures = {"finetune_samples_per_second": {}, "frozen_seconds_per_epoch": {}}
        for name in ("resnet18_vit_lstm", "effnet_lstm"):
            rate = finetune_samples_per_second(name, batch)
            figures["finetune_samples_per_second"][name] = rate
            print(f"  {name:<20} {rate:6.1f} samples/s")
        corpus = linked_corpus(table, cache, args.clips)
        print(f"--freeze-backbones, {len(corpus)} cached clips, actor split, batch 8:")
        for name in ("resnet18_vit_lstm", "effnet_lstm"):
            link_embeddings(name, table, corpus, cache, tmp / "cache")
            settings = TrainSettings(model=model_settings(name, pretrained=False), freeze_backbones=True,
                                     max_epochs=args.epochs, progress=False)
            run = tmp / f"run-{name}"
            started = time.perf_counter()
            train(corpus, cache, run, settings)
            total = time.perf_counter() - started
            seconds = pd.read_csv(run / "history.csv")["epoch_seconds"]
            figures["frozen_seconds_per_epoch"][name] = float(seconds.median())
            print(f"  {name:<20} {seconds.median():6.1f} s/epoch (train + validation), "
                  f"{total:.0f} s for the whole run of {args.epochs} epochs")
    if args.json:
        args.json.write_text(json.dumps({"clips": args.clips, **figures}, indent=2))


if __name__ == "__main__":
    main()
