"""Which compact head over Whisper base's every layer comes within 0.01 of the every-layer SVM (163 MB
on CREMA-D) in at most 10 MB: the linear probe at several penalties, and the hidden-layer probe at
several widths, dropouts and lengths; each chosen on RAVDESS, confirmed on CREMA-D.

    pip install -e '.[train,speech]'
    python benchmarks/studies/compact_voice_head.py --corpus crema-d=CREMAD_WAVS ravdess=RAVDESS_DIR \\
        --documents CREMAD_METADATA_DIR --weights WHISPER_BASE_DIR [--work DIR] \\
        [--penalties 0.01 0.03 0.1 0.3] [--hidden 256:0.5:40 256:0.5:60 512:0.5:40 256:0.2:40]

Every layer of Whisper base, mean- and std-pooled side by side (7,168 numbers a voice: the ready
voice's features, read from benchmarks/cross_corpus.py's embedding cache when WORK is its work
folder). The candidates:

- the product's linear probe (an L2 logistic regression on standardised features,
  `runtime.linear_probe`) at each penalty C of --penalties;
- the product's hidden-layer probe (`training.hidden_probe`: one GELU layer, AdamW on a one-cycle
  schedule) at each WIDTH:DROPOUT:EPOCHS of --hidden.

Each is fitted on every clip but a fold's test speakers and judged on theirs: first on RAVDESS's six
speaker-independent folds (`train --folds 6`'s), where each family's candidate is chosen by the mean
accuracy (ties: the smaller, then the shorter), then on CREMA-D's five actor-independent folds
(`train --folds 5`'s, those of the SVM's 0.745 in the results), for the chosen candidates beside the
product's. Each fold's fit is kept in WORK/compact-head, so a run resumes.
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
from avemotion.training import hidden_probe
from avemotion.training.hidden_probe import fit_hidden_layer

FOLDS = {"ravdess": 6, "crema-d": 5}
PRODUCT_HIDDEN = f"256:0.5:{hidden_probe.EPOCHS}"  # the width and dropout of the registered _mlp_ models


def fitted(values: np.ndarray, targets: np.ndarray, num_classes: int, candidate: str):
    """A candidate's layer: "C=…" the linear probe at that penalty, "WIDTH:DROPOUT:EPOCHS" the hidden one."""
    if candidate.startswith("C="):
        return fit_logistic_layer(values, targets, num_classes, float(candidate[2:]))
    width, dropout, epochs = candidate.split(":")
    return fit_hidden_layer(values, targets, num_classes, int(width), float(dropout), epochs=int(epochs))


def fold_accuracy(values: np.ndarray, table: pd.DataFrame, test: np.ndarray, candidate: str) -> float:
    """The candidate fitted on every clip but the fold's test speakers', judged on theirs."""
    labels = sorted(set(table["emotion"]))
    targets = np.array([labels.index(label) for label in table["emotion"]])
    layer = fitted(values[~test], targets[~test], len(labels), candidate)
    return float((layer.logits(values[test]).argmax(axis=1) == targets[test]).mean())


def corpus_accuracies(values: np.ndarray, table: pd.DataFrame, corpus: str, candidate: str, work: Path) -> list[float]:
    """Each fold's accuracy on one corpus for one candidate, kept in WORK/compact-head as it is made."""
    rows = (table["dataset"] == corpus).to_numpy()
    voices, features = table[rows].reset_index(drop=True), values[rows]
    accuracies = []
    for number, split in enumerate(actor_folds(voices, FOLDS[corpus], seed=0), start=1):
        kept = work / "compact-head" / f"{corpus}-{_file_name(candidate)}-fold{number}.json"
        if not kept.is_file():
            kept.parent.mkdir(parents=True, exist_ok=True)
            accuracy = fold_accuracy(features, voices, (split == "test").to_numpy(), candidate)
            kept.write_text(json.dumps({"accuracy": accuracy}))
            print(f"{corpus} {candidate} fold {number}: {accuracy:.3f}", flush=True)
        accuracies.append(json.loads(kept.read_text())["accuracy"])
    return accuracies


def _file_name(candidate: str) -> str:
    """Where a candidate's folds are kept (the linear probe's keep the names of earlier runs)."""
    return f"C{float(candidate[2:]):g}" if candidate.startswith("C=") else "hidden-" + candidate.replace(":", "-")


def _size(candidate: str) -> tuple[float, ...]:
    """What breaks a tie between candidates: the smaller, then the shorter to fit."""
    if candidate.startswith("C="):
        return (float(candidate[2:]),)
    width, _, epochs = candidate.split(":")
    return (int(width), int(epochs))


def _row(candidate: str, accuracies: list[float]) -> str:
    return (f"{candidate}: {np.mean(accuracies):.3f} ± {np.std(accuracies):.3f} "
            f"({', '.join(f'{value:.3f}' for value in accuracies)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", nargs=2, required=True, metavar="NAME=DIR", help="crema-d=… ravdess=…")
    parser.add_argument("--documents", type=Path, required=True, help="CREMA-D's metadata folder")
    parser.add_argument("--weights", type=Path, required=True, help="the folder holding Whisper base")
    parser.add_argument("--work", type=Path, default=Path("cross-corpus-bench"))
    parser.add_argument("--penalties", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--hidden", nargs="+", default=["256:0.5:40", "256:0.5:60", "512:0.5:40", "256:0.2:40"],
                        metavar="WIDTH:DROPOUT:EPOCHS")
    args = parser.parse_args()
    corpora = {name: Path(folder) for name, folder in (pair.split("=", 1) for pair in args.corpus)}
    table, values = whisper_features(joined_table(corpora, args.documents, None, args.work), args.work, args.weights)
    families = {"linear": [f"C={penalty:g}" for penalty in args.penalties], "hidden": args.hidden}
    product = {"linear": f"C={PROBE_C:g}", "hidden": PRODUCT_HIDDEN}
    confirmed = []
    for family, candidates in families.items():
        ravdess = {candidate: corpus_accuracies(values, table, "ravdess", candidate, args.work)
                   for candidate in candidates}
        for candidate, accuracies in ravdess.items():
            print(f"RAVDESS {_row(candidate, accuracies)}")
        chosen = max(candidates, key=lambda candidate: (round(np.mean(ravdess[candidate]), 4),
                                                     tuple(-value for value in _size(candidate))))
        print(f"{family}, chosen on RAVDESS: {chosen}")
        confirmed += sorted({chosen, product[family]})
    for candidate in confirmed:
        print(f"CREMA-D {_row(candidate, corpus_accuracies(values, table, 'crema-d', candidate, args.work))}")


if __name__ == "__main__":
    main()
