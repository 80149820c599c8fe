"""How close the ready model's compact voice head (a linear layer, under 1 MB) comes to the
every-layer SVM (163 MB on CREMA-D): the linear probe's penalty chosen on RAVDESS, checked on CREMA-D.

    pip install -e '.[train,speech]'
    python benchmarks/studies/compact_voice_head.py --corpus crema-d=CREMAD_WAVS ravdess=RAVDESS_DIR \\
        --documents CREMAD_METADATA_DIR --weights WHISPER_BASE_DIR [--work DIR] [--penalties 0.01 0.03 0.1 0.3]

Every layer of Whisper base, mean- and std-pooled side by side (7,168 numbers a voice: the ready
voice's features, read from benchmarks/cross_corpus.py's embedding cache when WORK is its work
folder), under the product's linear probe (an L2 logistic regression on standardised features,
`runtime.linear_probe`) at each penalty C of --penalties: first on RAVDESS's six speaker-independent
folds (`train --folds 6`'s), where C is chosen by the mean accuracy, then on CREMA-D's five
actor-independent folds (`train --folds 5`'s, those of the SVM's 0.745 in the results), for the
chosen C beside the product's. Each fold's fit is kept in WORK/compact-head, so a run resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import product_benchmarks  # noqa: F401  (benchmarks/ on the path)
from cross_corpus import joined_table, whisper_features

from avemotion.datasets.splits import actor_folds
from avemotion.runtime.linear_probe import PROBE_C, fit_logistic_layer

FOLDS = {"ravdess": 6, "crema-d": 5}


def fold_accuracy(values: np.ndarray, table: pd.DataFrame, test: np.ndarray, penalty: float) -> float:
    """The probe fitted on every clip but the fold's test speakers', judged on theirs."""
    labels = sorted(set(table["emotion"]))
    targets = np.array([labels.index(label) for label in table["emotion"]])
    layer = fit_logistic_layer(values[~test], targets[~test], len(labels), penalty)
    return float((layer.logits(values[test]).argmax(axis=1) == targets[test]).mean())


def corpus_accuracies(values: np.ndarray, table: pd.DataFrame, corpus: str, penalty: float, work: Path) -> list[float]:
    """Each fold's accuracy on one corpus at one penalty, kept in WORK/compact-head as it is made."""
    rows = (table["dataset"] == corpus).to_numpy()
    voices, features = table[rows].reset_index(drop=True), values[rows]
    accuracies = []
    for number, split in enumerate(actor_folds(voices, FOLDS[corpus], seed=0), start=1):
        kept = work / "compact-head" / f"{corpus}-C{penalty:g}-fold{number}.json"
        if not kept.is_file():
            kept.parent.mkdir(parents=True, exist_ok=True)
            accuracy = fold_accuracy(features, voices, (split == "test").to_numpy(), penalty)
            kept.write_text(json.dumps({"accuracy": accuracy}))
            print(f"{corpus} C={penalty:g} fold {number}: {accuracy:.3f}", flush=True)
        accuracies.append(json.loads(kept.read_text())["accuracy"])
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs=2, required=True, metavar="NAME=DIR", help="crema-d=… ravdess=…")
    parser.add_argument("--documents", type=Path, required=True, help="CREMA-D's metadata folder")
    parser.add_argument("--weights", type=Path, required=True, help="the folder holding Whisper base")
    parser.add_argument("--work", type=Path, default=Path("cross-corpus-bench"))
    parser.add_argument("--penalties", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    args = parser.parse_args()
    corpora = {name: Path(folder) for name, folder in (pair.split("=", 1) for pair in args.corpus)}
    table, values = whisper_features(joined_table(corpora, args.documents, None, args.work), args.work, args.weights)
    ravdess = {penalty: corpus_accuracies(values, table, "ravdess", penalty, args.work) for penalty in args.penalties}
    for penalty, accuracies in ravdess.items():
        print(f"RAVDESS C={penalty:g}: {np.mean(accuracies):.3f} ± {np.std(accuracies):.3f}")
    chosen = max(ravdess, key=lambda penalty: np.mean(ravdess[penalty]))
    print(f"chosen on RAVDESS: C={chosen:g}")
    for penalty in sorted({chosen, PROBE_C}):
        accuracies = corpus_accuracies(values, table, "crema-d", penalty, args.work)
        print(f"CREMA-D C={penalty:g}: {np.mean(accuracies):.3f} ± {np.std(accuracies):.3f} "
              f"({', '.join(f'{value:.3f}' for value in accuracies)})")


if __name__ == "__main__":
    main()
