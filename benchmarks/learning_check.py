"""The learning check on a SYNTHETIC corpus (drawn faces and generated voices with CREMA-D's names
and layout; not CREMA-D data): a hybrid and both of its unimodal ablations trained with frozen
random backbones on the actor-independent split, with the demo's recipe. tests/test_learning.py
runs it at the demo's size; this script runs it on any synthetic corpus, and with --alternatives
also trains the attention-pooling and gated-fusion variants of the hybrid on the same split, so
they can be compared with the paper's LSTM and concatenation.

    python benchmarks/learning_check.py CORPUS_DIR [--family resnet18_vit_lstm] [--frame-size 64]
        [--seeds 0 1 2] [--alternatives] [--shuffle-labels]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.datasets.index import index_dataset
from avemotion.demo import train_from_scratch
from avemotion.media.features import FeatureSettings
from avemotion.media.preprocess import FeatureCache, preprocess
from avemotion.registry import alternatives, hybrids, with_ablations


def learning_check(table: pd.DataFrame, cache: FeatureCache, out_dir: Path,
                   family: str = "resnet18_vit_lstm", seed: int = 0) -> dict[str, dict]:
    """Test metrics of the hybrid and of its audio-only and video-only ablations, by model name."""
    trained = train_from_scratch(table, cache, out_dir, with_ablations(family), seed)
    return {run.root.name: metrics for run, metrics in trained}


def alternatives_check(table: pd.DataFrame, cache: FeatureCache, out_dir: Path,
                       family: str = "resnet18_vit_lstm", seed: int = 0) -> dict[str, dict]:
    """Test metrics of the family's alternative temporal model and fusion, with the same recipe."""
    trained = train_from_scratch(table, cache, out_dir, alternatives(family), seed)
    return {run.root.name: metrics for run, metrics in trained}


def shuffled_labels(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same clips with their emotions permuted at random: nothing left to learn."""
    emotions = np.random.default_rng(seed).permutation(table["emotion"].to_numpy())
    return table.assign(emotion=emotions)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="a folder written by `avemotion synth`")
    parser.add_argument("--family", default="resnet18_vit_lstm", choices=hybrids())
    parser.add_argument("--frame-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--alternatives", action="store_true",
                        help="also train the attention-pooling and gated-fusion variants")
    parser.add_argument("--shuffle-labels", action="store_true",
                        help="permute the labels first: a broken corpus the check must fail on")
    parser.add_argument("--cache", type=Path, help="feature cache (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    table = index_dataset(args.corpus).table
    with tempfile.TemporaryDirectory() as tmp:
        cache = preprocess(table, args.cache or Path(tmp) / "cache",
                           FeatureSettings(frame_size=args.frame_size), progress=False).cache
        results: dict[str, list[dict]] = {}
        for seed in args.seeds:
            trained_on = shuffled_labels(table, seed) if args.shuffle_labels else table
            started = time.perf_counter()
            runs = learning_check(trained_on, cache, Path(tmp) / f"seed-{seed}", args.family, seed)
            if args.alternatives:
                runs |= alternatives_check(trained_on, cache, Path(tmp) / f"seed-{seed}", args.family, seed)
            print(f"seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
            for name, metrics in runs.items():
                results.setdefault(name, []).append(
                    {"seed": seed, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]})
    print(f"SYNTHETIC corpus: {len(table)} clips, {table['actor_id'].nunique()} actors, actor split, "
          f"frozen random backbones, {args.frame_size} px frames"
          + (", LABELS SHUFFLED" if args.shuffle_labels else ""))
    summary = {name: {"accuracy": float(np.mean([r["accuracy"] for r in rows])),
                      "accuracy_std": float(np.std([r["accuracy"] for r in rows])),
                      "macro_f1": float(np.mean([r["macro_f1"] for r in rows])), "runs": rows}
               for name, rows in results.items()}
    for name, figures in summary.items():
        print(f"{name:<32} test accuracy {figures['accuracy']:.3f} ± {figures['accuracy_std']:.3f} "
              f"over seeds {args.seeds}")
    if args.json:
        args.json.write_text(json.dumps({"clips": len(table), "seeds": args.seeds,
                                         "shuffled_labels": args.shuffle_labels, "results": summary},
                                        indent=2))


if __name__ == "__main__":
    main()
