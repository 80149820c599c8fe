"""The paper's own corpus, its voices: all of CREMA-D's audio (7,442 WAVs, 91 actors, six emotions).

    pip install -e '.[train,speech,bench]'
    python benchmarks/cremad_voices.py CREMAD_DIR --documents CREMAD_METADATA_DIR [--work DIR]
        [--models whisper_base_audio_only …] [--weights WHISPER_BASE_DIR] [--splits actor random]
        [--folds 1 2 …] [--lr X] [--speed-perturbation 0.9 1.1] [--test-time-speeds 0.9 1.1]

CREMAD_DIR holds the WAVs (any layout, linked folders too); CREMAD_METADATA_DIR the release's
VideoDemographics.csv and summaryTable.csv (genders and the crowd's votes). CREMA-D is ODbL / DbCL:
never shipped with avemotion. Two ways to split, side by side on the same systems:

- actor: actor-independent 5-fold, exactly `avemotion train --folds 5` (each actor tested once, the
  test and validation actors of each fold balanced by gender): the honest figure;
- random: one clip-level random split (70 / 15 / 15 %, stratified by emotion, every actor in every
  part): the kind of split a paper that states none likely used, shown to say how much sharing
  actors between training and test inflates a figure.

Systems: eGeMAPS + RBF SVM (on the training actors, and on training and validation), and the models
named (by default Whisper base frozen under its SVM head; the from-scratch audio branches
`resnet18_vit_lstm_audio_only` and `effnet_lstm_audio_only` take about half an hour a fold on 2 cores,
so name them where there is the time or a GPU). Each under the clip and the speaker-normalised
protocol, as benchmarks/real_speech.py runs them. Printed and written (WORK/cremad_voices.json,
.md): the paper's Table 1 columns (accuracy, macro precision, recall, F1), each emotion's F1, how
often each system agrees with the crowd's voice-only majority vote (the crowd recognised 0.409 of
the voices heard alone, Cao et al. 2014), seconds per fold, and WORK/confusion-*.png. Each fold's
result is kept in WORK, so an interrupted run resumes where it stopped (a fold from its last
completed epoch), and `--folds` runs a part of the actor-independent folds now and the rest later
(the tables then cover the folds run).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from real_speech import (
    BASELINE,
    add_speed_arguments,
    baseline_fold,
    egemaps_features,
    fold_split,
    model_fold,
    speaker_fold,
    speech_table,
    summarise,
    training_overrides,
)
from real_speech import FOLDS as RAVDESS_FOLDS
from sklearn.metrics import confusion_matrix
from tqdm import tqdm

from avemotion.datasets.index import index_dataset
from avemotion.datasets.splits import actor_folds, random_split
from avemotion.media.features import FeatureSettings, MediaError, load_audio
from avemotion.media.preprocess import FeatureCache, ensure_cached
from avemotion.media.speech import SPEECH_RATE, voiced
from avemotion.registry import model_settings
from avemotion.training.evaluate import plot_confusion_matrix
from avemotion.training.models import model_inputs

FOLDS = 5
SPLITS = ("actor", "random")
PROTOCOLS = ("clip", "speaker")
CROWD_VOICE_ACCURACY = 0.409  # the crowd's recognition of the voices alone (Cao et al. 2014)


def voices_table(corpus: Path, documents: Path | None) -> pd.DataFrame:
    """Every CREMA-D voice as an audio-only metadata table, with genders and crowd votes."""
    result = index_dataset(corpus, "crema-d", documents)
    table = result.table[result.table["modality"] == "audio"].reset_index(drop=True)
    if table.empty:
        raise SystemExit(f"{corpus}: no CREMA-D voices (1001_DFA_ANG_XX.wav …) found")
    print(result.summary())
    return table


def splits_of(table: pd.DataFrame, kind: str, numbers: list[int]) -> dict[int, pd.Series]:
    """The folds of a kind of split by number: those of `train --folds 5` named, or the one
    clip-level random split."""
    if kind == "random":
        return {1: random_split(table, seed=0)}
    return {number: split for number, split in enumerate(actor_folds(table, FOLDS, seed=0), start=1)
            if number in numbers}


CORPUS_FOLDS = {"ravdess": RAVDESS_FOLDS, "crema-d": FOLDS}


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a benchmark that runs on RAVDESS's or CREMA-D's voices."""
    parser.add_argument("corpus_dir", type=Path, help="the RAVDESS speech folder, or CREMA-D's voices")
    parser.add_argument("--corpus", choices=tuple(CORPUS_FOLDS), default="ravdess")
    parser.add_argument("--documents", type=Path, default=None,
                        help="CREMA-D: the folder of VideoDemographics.csv and summaryTable.csv")


def corpus_table(args: argparse.Namespace) -> pd.DataFrame:
    """The voices of the corpus add_corpus_arguments named."""
    if args.corpus == "crema-d":
        return voices_table(args.corpus_dir, args.documents)
    return speech_table(args.corpus_dir)


def corpus_folds(table: pd.DataFrame, corpus: str, numbers: list[int]) -> dict[int, pd.Series]:
    """A corpus's actor-independent folds by number: RAVDESS's blocks of benchmarks/real_speech.py,
    CREMA-D's folds of `train --folds 5`."""
    if corpus == "crema-d":
        return splits_of(table, "actor", numbers)
    return {number: fold_split(table, number) for number in numbers}


def voice_features(table: pd.DataFrame, path: Path, names: list[str],
                   features_of: Callable[[], Callable[[np.ndarray], dict[str, np.ndarray]]],
                   script: str) -> dict[str, np.ndarray]:
    """Each clip's features by name, computed from its voice as the product's speech encoders read
    it (16 kHz, its first `--waveform-seconds`, the silence around it trimmed) and kept in `path`,
    so that a second run only reads them. `features_of()` gives the function from a voice to its
    features (called only when they are not kept: a run that only fits loads no encoder). A clip
    that cannot be decoded is reported, and its row is marked False in `decoded`."""
    if path.exists() and {*names, "decoded"} <= set(kept := dict(np.load(path))):
        return kept
    of_voice, longest = features_of(), FeatureSettings().waveform_samples
    rows: dict[str, list] = {name: [] for name in names}
    decoded = []
    for audio_path in tqdm(table["audio_path"], desc="encode", unit="clip"):
        try:
            voice = voiced(load_audio(audio_path, SPEECH_RATE)[:longest])
        except MediaError as error:
            tqdm.write(f"left out: {error}")
            decoded.append(False)
            continue
        decoded.append(True)
        for name, value in of_voice(voice).items():
            rows[name].append(value)
    if not any(decoded):
        raise SystemExit(f"{script}: none of the corpus's clips could be decoded")
    arrays = {name: np.stack(values) for name, values in rows.items()} | {"decoded": np.asarray(decoded)}
    np.savez(path, **arrays)
    return arrays


def crowd_agreement(table: pd.DataFrame, split: pd.Series, predicted: list[str]) -> float | None:
    """The share of test clips whose prediction is (one of) the crowd's voice-only majority labels."""
    if "crowd_voice_vote" not in table:
        return None
    votes = table["crowd_voice_vote"][(split == "test").to_numpy()].astype(str)
    return float(np.mean([label in vote.split(":") for label, vote in zip(predicted, votes)]))


def run_system(table, split, cache, features, runs: Path, name: str, fold: str, protocol: str,
               overrides: dict) -> dict:
    """One system on one fold under one protocol (kept in WORK by the functions it calls)."""
    if name in (BASELINE, f"{BASELINE}_20"):
        return baseline_fold(table, split, features, protocol, with_val=name.endswith("_20"))
    run_fold = model_fold if protocol == "clip" else speaker_fold
    return run_fold(table, split, cache, runs, name, fold, overrides)


def summary_with_table1(results: dict) -> dict:
    """real_speech's summary, with macro precision, each label's mean F1 and the crowd agreement."""
    summary = summarise(results)
    for key, folds in results.items():
        summary[key]["macro_precision"] = float(np.mean([f["macro_precision"] for f in folds]))
        labels = folds[0]["f1_per_label"]
        summary[key]["f1_per_label"] = {label: float(np.mean([f["f1_per_label"][label] for f in folds]))
                                        for label in labels}
        agreements = [f["crowd_agreement"] for f in folds if f.get("crowd_agreement") is not None]
        summary[key]["crowd_agreement"] = float(np.mean(agreements)) if agreements else None
    return summary


def markdown(summary: dict) -> str:
    labels = next(iter(summary.values()))["f1_per_label"]
    lines = ["| system | split | protocol | folds | accuracy | macro precision | macro recall | macro F1 | "
             + " | ".join(f"F1 {label}" for label in labels) + " | agrees with crowd (voice) | s / fold |",
             "|---" * (10 + len(labels)) + "|"]
    for key, row in summary.items():
        system, split, protocol = key.split("/")
        crowd = f"{row['crowd_agreement']:.3f}" if row["crowd_agreement"] is not None else "-"
        lines.append(
            f"| {system} | {split} | {protocol} | {row['folds']} | "
            f"{row['accuracy']['mean']:.3f} ± {row['accuracy']['std']:.3f} | {row['macro_precision']:.3f} | "
            f"{row['unweighted_accuracy']['mean']:.3f} | {row['macro_f1']['mean']:.3f} | "
            + " | ".join(f"{row['f1_per_label'][label]:.2f}" for label in labels)
            + f" | {crowd} | {row['seconds']['median']:.0f} |")
    return "\n".join(lines)


def plot_confusions(table: pd.DataFrame, results: dict, folds: dict, work: Path, variant: str) -> None:
    """Each system's confusion matrix over the test folds it ran of the actor-independent split, clip
    protocol."""
    labels = sorted(set(table["emotion"]))
    for key, outcomes in results.items():
        system, kind, protocol = key.split("/")
        if kind != "actor" or protocol != "clip":
            continue
        tests = [(split == "test").to_numpy() for split in folds[kind].values()]
        true = np.concatenate([table["emotion"][test] for test in tests])
        predicted = np.concatenate([outcome["predicted"] for outcome in outcomes])
        plot_confusion_matrix(confusion_matrix(true, predicted, labels=labels).tolist(), labels,
                              work / f"confusion-{system}{variant}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--documents", type=Path, default=None,
                        help="folder of VideoDemographics.csv and summaryTable.csv")
    parser.add_argument("--work", type=Path, default=Path(".cache/cremad-voices"))
    parser.add_argument("--models", nargs="*", default=["whisper_base_audio_only"])
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--folds", nargs="+", type=int, default=list(range(1, FOLDS + 1)),
                        choices=range(1, FOLDS + 1), help="the actor-independent folds to run")
    parser.add_argument("--lr", type=float, default=None,
                        help="override the recipe's peak learning rate (kept in WORK/runs-lr-X)")
    parser.add_argument("--weights", type=Path, default=None, help="the speech encoders' weights folder")
    add_speed_arguments(parser)
    args = parser.parse_args()
    overrides, variant = training_overrides(args.weights, lr=args.lr, speeds=args.speed_perturbation,
                                            test_speeds=args.test_time_speeds)
    runs = args.work / f"runs{variant}"

    table = voices_table(args.corpus, args.documents)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache.open(args.work / "cache", FeatureSettings())
    for name in args.models:
        table = ensure_cached(table, cache.with_inputs(model_inputs(model_settings(name))), progress=True)
    features = egemaps_features(table, args.work)
    folds = {kind: splits_of(table, kind, args.folds) for kind in args.splits}
    results: dict[str, list[dict]] = {}
    for kind, splits in folds.items():
        for number, split in splits.items():
            fold = f"{kind}-{number}"
            for protocol in args.protocols:
                for name in (BASELINE, f"{BASELINE}_20", *args.models):
                    outcome = run_system(table, split, cache, features, runs, name, fold, protocol,
                                         overrides)
                    outcome["crowd_agreement"] = crowd_agreement(table, split, outcome["predicted"])
                    results.setdefault(f"{name}/{kind}/{protocol}", []).append(outcome)
                    print(f"{fold} {name} {protocol}: accuracy {outcome['accuracy']:.3f} "
                          f"({outcome['seconds']:.0f} s)", flush=True)
    summary = summary_with_table1(results)
    results_name = f"cremad_voices{variant}"
    (args.work / f"{results_name}.json").write_text(
        json.dumps({"summary": summary, "folds": results}, indent=2))
    plot_confusions(table, results, folds, args.work, variant)
    table_md = markdown(summary)
    (args.work / f"{results_name}.md").write_text(table_md + "\n")
    print(table_md)
    print(f"the crowd's own recognition of the voices alone: {CROWD_VOICE_ACCURACY}")


if __name__ == "__main__":
    main()
