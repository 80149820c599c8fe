"""The full-size learning check on a SYNTHETIC corpus (drawn faces and generated voices with
CREMA-D's names and layout; not CREMA-D data): --freeze-backbones from random weights, the
actor-independent split, the fused model and both unimodal ablations. The CI-sized version is
tests/test_learning.py.

    python benchmarks/learning_check.py CORPUS_DIR [--family resnet18_vit_lstm] [--frame-size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from avemotion.features import FeatureSettings
from avemotion.index import index_dataset
from avemotion.preprocess import preprocess
from avemotion.train import learning_check


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="a folder written by `avemotion synth`")
    parser.add_argument("--family", default="resnet18_vit_lstm")
    parser.add_argument("--frame-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, help="feature cache (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    table = index_dataset(args.corpus).table
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache or Path(tmp) / "cache"
        cache = preprocess(table, cache_dir, FeatureSettings(frame_size=args.frame_size),
                           progress=False).cache
        results = {}
        started = time.perf_counter()
        for name, metrics in learning_check(table, cache, Path(tmp), args.family, args.seed):
            results[name] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                             "seconds": time.perf_counter() - started}
            print(f"{name:<32} test accuracy {metrics['accuracy']:.3f}  macro F1 "
                  f"{metrics['macro_f1']:.3f}  ({results[name]['seconds']:.0f} s)", flush=True)
            started = time.perf_counter()
    print(f"SYNTHETIC corpus: {len(table)} clips, {table['actor_id'].nunique()} actors, actor split, "
          f"frozen random backbones, {args.frame_size} px frames, seed {args.seed}")
    if args.json:
        args.json.write_text(json.dumps({"clips": len(table), "results": results}, indent=2))


if __name__ == "__main__":
    main()
