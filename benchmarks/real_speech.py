"""First results on real voices: RAVDESS speech, 8 emotions, speaker-independent 6-fold.

    pip install -e '.[train,speech,bench]'
    python benchmarks/real_speech.py RAVDESS_DIR [--work DIR] [--models …] [--folds 1 2 …]
        [--weights WHISPER_BASE_DIR] [--speed-perturbation 0.9 1.1] [--test-time-speeds 0.9 1.1]

RAVDESS_DIR holds the RAVDESS speech audio (``Actor_01/03-01-05-01-02-01-01.wav`` …, or the same
files flat; CC BY-NC-SA 4.0, never shipped with avemotion). Fold k holds out actors 4k-3 … 4k; two
actors of the next block (one man, one woman) are the validation speakers, and the other 18 train.
On the same folds, side by side, the field's standard hand-crafted baseline: openSMILE's eGeMAPS
functionals (88 per clip) and an RBF support-vector machine (scikit-learn's defaults, features
standardised on the training speakers), trained on the same 18 actors as the models
(`egemaps_svm`), and, since it needs no validation speakers, also on all 20 (`egemaps_svm_20`).

`--split train-folds` uses `avemotion train --folds 6`'s folds instead (actors grouped by
StratifiedGroupKFold, gender-balanced, about 15 % of all actors validating), so that the user's
command and the benchmark can be compared on the same systems.

Two protocols, every model and the baseline under both:
- clip: each clip judged on its own, as `avemotion predict` judges a new clip;
- speaker: each speaker's features standardised with the statistics of all that speaker's clips
  (unlabelled): the baseline's eGeMAPS functionals, and the features the models' last layer reads
  (512 or 1280 per clip), as `avemotion train --speaker-norm` does. Its first step trains the same
  network as the clip protocol, so the fold's clip-level network is reused, and only the second
  step (standardise per speaker, fit the speaker head on the training speakers) is run; its
  seconds are the clip training's plus that step's.

The audio-only models train from random weights with `avemotion train`'s from-scratch recipe;
`whisper_base_audio_only` (and any other frozen speech encoder) trains its layer weights and last
layer on the encoder's features, computed once per clip and cached, with `train`'s frozen-speech
recipe, from its weights in `--weights DIR` (a CTranslate2 model folder) or the hub. Beside the
scores it times the encoder alone on the first clips (seconds per clip, one thread and two).
`--seed N` trains them again with another seed, an independent run that shows how much a score
owes to one training run. `--speed-perturbation` and `--test-time-speeds` pass `train`'s options of
those names to the frozen speech encoders' runs (kept apart in WORK/runs-speed-…, runs-test-speed-…;
with test-time speeds each fold's metrics.json also holds its accuracy with the voices judged as
recorded; the speaker protocol judges each voice once). Each fold's result is kept in WORK, so an
interrupted run resumes where it stopped, a fold cut short from its last completed epoch. Prints and writes
(WORK/real_speech.json, .md) accuracy, unweighted accuracy (mean per-class recall) and macro F1,
mean ± std over the folds, and the training seconds per fold.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm import tqdm

from avemotion.config import TrainSettings, recipe
from avemotion.csvfiles import read_csv
from avemotion.datasets.index import index_dataset
from avemotion.datasets.splits import actor_folds
from avemotion.media.features import FeatureSettings, load_audio
from avemotion.media.preprocess import FeatureCache, ensure_cached
from avemotion.media.speech import load_speech_encoder
from avemotion.registry import SPEECH_ENCODERS, model_settings
from avemotion.runtime.speakers import standardised_by_speaker
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.models import model_inputs
from avemotion.training.runs import RunFolder
from avemotion.training.train import fit_speaker_normalisation, train_one

MODELS = ("whisper_base_audio_only", "resnet18_vit_lstm_audio_only", "effnet_lstm_audio_only")
TIMED_CLIPS = 100  # clips the speech encoder is timed on
PROTOCOLS = ("clip", "speaker")
FOLDS = 6
ACTORS_PER_FOLD = 4
BASELINE = "egemaps_svm"


def speech_table(ravdess_dir: Path) -> pd.DataFrame:
    """The RAVDESS speech clips (audio only) as an avemotion metadata table."""
    result = index_dataset(ravdess_dir, "ravdess")
    table = result.table
    table = table[(table["vocal_channel"] == "speech") & (table["modality"] == "audio")]
    if table.empty:
        raise SystemExit(f"{ravdess_dir}: no RAVDESS speech audio (03-01-*.wav) found")
    return table.reset_index(drop=True)


def fold_split(table: pd.DataFrame, fold: int) -> pd.Series:
    """Fold k (1-6): actors 4k-3…4k test, one man and one woman of the next block val, the rest train."""
    test = set(range(ACTORS_PER_FOLD * (fold - 1) + 1, ACTORS_PER_FOLD * fold + 1))
    following = ACTORS_PER_FOLD * (fold % FOLDS)
    val = {following + 1, following + 2}  # odd: a man, even: a woman
    split = table["actor_id"].map(lambda a: "test" if a in test else "val" if a in val else "train")
    return split.rename("split")


def scores(true, predicted) -> dict:
    """Accuracy, unweighted accuracy (macro recall), macro precision and F1, each label's F1, and
    the predicted labels themselves (for agreement with other judges)."""
    true, predicted = list(true), list(predicted)
    labels = sorted(set(true))
    per_label = f1_score(true, predicted, labels=labels, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(true, predicted)),
            "unweighted_accuracy": float(recall_score(true, predicted, average="macro", zero_division=0)),
            "macro_precision": float(precision_score(true, predicted, average="macro", zero_division=0)),
            "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
            "f1_per_label": {label: float(value) for label, value in zip(labels, per_label)},
            "predicted": predicted}


def clip_run(runs: Path, name: str, fold: int) -> RunFolder:
    return RunFolder(runs / name / "clip" / f"fold-{fold}")


def model_fold(table, split, cache, runs: Path, name: str, fold: int, overrides: dict) -> dict:
    """Train one audio-only model on one fold (or read the result a previous run left; a training
    cut short continues from its last completed epoch)."""
    run = clip_run(runs, name, fold)
    result_file = run.root / "real_speech_fold.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    settings = replace(model_recipe(name), **overrides)
    run.root.mkdir(parents=True, exist_ok=True)
    cache = cache.with_inputs(model_inputs(settings.model))
    earlier = seconds_spent_before(run)
    started = time.perf_counter()
    train_one(table, split, cache, run, settings, resume=True, metadata_path=None)
    seconds = earlier + time.perf_counter() - started
    predictions = read_csv(run.predictions)
    result = {**scores(predictions["true"], predictions["predicted"]), "seconds": seconds}
    run.write_json(result_file, result)
    return result


def seconds_spent_before(run: RunFolder) -> float:
    """The seconds an interrupted earlier training of this fold spent on the epochs it logged (none
    when it left no checkpoint to continue from, and so starts again)."""
    if not (run.checkpoints / "last.ckpt").is_file():
        return 0.0
    return float(sum(read_csv(log)["epoch_seconds"].sum() for log in run.logs.glob("attempt-*/metrics.csv")))


def training_overrides(weights: Path | None, seed: int = 0, epochs: int | None = None,
                       lr: float | None = None, speeds: tuple[float, ...] = (),
                       test_speeds: tuple[float, ...] = ()) -> tuple[dict, str]:
    """The settings a run changes in the recipe, and the suffix of the folders and files that keep
    its results: another seed or a quick look never reads (or overwrites) the recipe's own runs."""
    overrides = {"seed": seed, "weights": str(weights) if weights else None,
                 **({"max_epochs": epochs} if epochs else {}), **({"learning_rate": lr} if lr else {}),
                 **({"speed_perturbation": tuple(speeds)} if speeds else {}),
                 **({"test_time_speeds": tuple(test_speeds)} if test_speeds else {})}
    variant = ((f"-seed-{seed}" if seed else "") + (f"-epochs-{epochs}" if epochs else "")
               + (f"-lr-{lr:g}" if lr else "") + "".join(f"-speed-{speed:g}" for speed in speeds)
               + "".join(f"-test-speed-{speed:g}" for speed in test_speeds))
    return overrides, variant


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speed-perturbation", nargs="+", type=float, default=(), metavar="SPEED",
                        help="fit the frozen speech encoders' probe also on the training voices played "
                        "at these speeds (kept in WORK/runs-speed-…)")
    parser.add_argument("--test-time-speeds", nargs="+", type=float, default=(), metavar="SPEED",
                        help="judge each test voice also played at these speeds, its probabilities "
                        "averaged (kept in WORK/runs-test-speed-…)")


def model_recipe(name: str) -> TrainSettings:
    """`avemotion train`'s recipe for a model: frozen speech features for a speech encoder (its
    weights from --weights), from random weights for the others."""
    model = model_settings(name)
    if not model.frozen_speech:
        model = replace(model, pretrained=False)
    return recipe(TrainSettings(model=model, progress=False))


def speaker_fold(table, split, cache, runs: Path, name: str, fold: int, overrides: dict) -> dict:
    """`--speaker-norm` on one fold: the fold's clip-level network, then speaker normalisation's
    second step, as `train` runs it."""
    trained = model_fold(table, split, cache, runs, name, fold, overrides)
    model, info = load_checkpoint(clip_run(runs, name, fold).model, weights=overrides.get("weights"))
    cache = cache.with_inputs(model.inputs)
    started = time.perf_counter()
    _, probabilities = fit_speaker_normalisation(model, table, split, cache, info.labels, 64,
                                                 linear_probe=model_recipe(name).linear_probe)
    predicted = [info.labels[index] for index in probabilities.argmax(axis=1)]
    seconds = trained["seconds"] + time.perf_counter() - started
    return {**scores(table["emotion"][(split == "test").to_numpy()], predicted), "seconds": seconds}


def egemaps_features(table: pd.DataFrame, work: Path) -> pd.DataFrame:
    """eGeMAPS v02 functionals of every clip, kept in WORK as they are computed, so that an
    interrupted extraction resumes with the clips it had not reached. They are always read back from
    that file, so a first run and a later one score the very same values (openSMILE's float32 and
    the file's decimal text differ in the last digits)."""
    path = work / "egemaps.csv"
    done = pd.read_csv(path, index_col="clip") if path.is_file() else None
    missing = table if done is None else table[~table["clip"].isin(done.index)]
    if len(missing):
        write_egemaps(missing, done, path)
        done = pd.read_csv(path, index_col="clip")
    return done.loc[table["clip"]]


EGEMAPS_CHUNK = 500  # clips computed between two saves: what an interruption can cost


def write_egemaps(table: pd.DataFrame, done: pd.DataFrame | None, path: Path) -> None:
    """Compute the functionals of the table's clips into PATH beside those already `done`, saving
    every EGEMAPS_CHUNK clips (each save whole or absent, for a run started beside this one)."""
    try:
        import opensmile
    except ImportError:
        raise SystemExit("the eGeMAPS baseline needs openSMILE: pip install -e '.[bench]'") from None
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    partial = path.with_name(f"{path.name}.partial")
    with tqdm(total=len(table), desc="eGeMAPS", unit="clip") as progress:
        for start in range(0, len(table), EGEMAPS_CHUNK):
            chunk = table.iloc[start:start + EGEMAPS_CHUNK]
            rows = []
            for audio in chunk["audio_path"]:
                rows.append(smile.process_file(audio).iloc[0])
                progress.update()
            computed = pd.DataFrame(rows, index=pd.Index(chunk["clip"], name="clip"))
            done = computed if done is None else pd.concat([done, computed])
            done.to_csv(partial)
            partial.replace(path)


def baseline_fold(table, split, features: pd.DataFrame, protocol: str, with_val: bool) -> dict:
    """eGeMAPS + RBF SVM on one fold, trained on the training speakers (and the validation ones)."""
    values = features.to_numpy()
    if protocol == "speaker":  # as --speaker-norm standardises a network's features
        values = standardised_by_speaker(values, table["actor_id"], "the benchmark's table")
    train = split.isin(["train", "val"] if with_val else ["train"]).to_numpy()
    test = (split == "test").to_numpy()
    started = time.perf_counter()
    classifier = make_pipeline(StandardScaler(), SVC(kernel="rbf"))
    classifier.fit(values[train], table["emotion"].to_numpy()[train])
    predicted = classifier.predict(values[test])
    return {**scores(table["emotion"].to_numpy()[test], predicted), "seconds": time.perf_counter() - started}


def encoder_seconds(table: pd.DataFrame, name: str, weights: Path | None, threads: int) -> dict:
    """Seconds per clip of a model's speech encoder alone (log-Mel and encoder, the voice already
    decoded at 16 kHz) on the first TIMED_CLIPS clips, with `threads` threads, and their mean length."""
    family, encoder_name = next(pair for pair in SPEECH_ENCODERS.values()
                                if pair[1] == model_settings(name).audio_backbone)
    encoder = load_speech_encoder(family, encoder_name, weights, threads=threads)
    voices = [load_audio(path) for path in table["audio_path"][:TIMED_CLIPS]]
    encoder.embed_one(voices[0])  # the first call sets up the encoder's buffers
    started = time.perf_counter()
    for voice in voices:
        encoder.embed_one(voice)
    return {"seconds_per_clip": (time.perf_counter() - started) / len(voices), "threads": threads,
            "clip_seconds": float(np.mean([len(voice) for voice in voices]) / FeatureSettings().sample_rate)}


def summarise(results: dict) -> dict:
    """Mean and std over folds of each score, per (system, protocol)."""
    summary = {}
    for key, folds in results.items():
        summary[key] = {name: {"mean": float(np.mean([f[name] for f in folds])),
                               "std": float(np.std([f[name] for f in folds])),
                               "median": float(np.median([f[name] for f in folds]))}
                        for name in ("accuracy", "unweighted_accuracy", "macro_f1", "seconds")}
        summary[key]["folds"] = len(folds)
    return summary


def markdown(summary: dict) -> str:
    lines = ["| system | protocol | folds | accuracy | unweighted accuracy | macro F1 | train s / fold (median) |",
             "|---|---|---|---|---|---|---|"]
    for key, row in summary.items():
        system, protocol = key.split("/")
        cells = [f"{row[n]['mean']:.3f} ± {row[n]['std']:.3f}"
                 for n in ("accuracy", "unweighted_accuracy", "macro_f1")]
        lines.append(f"| {system} | {protocol} | {row['folds']} | " + " | ".join(cells)
                     + f" | {row['seconds']['median']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ravdess_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path(".cache/real-speech"), help="cache, runs, results")
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="audio-only models to train")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--folds", nargs="+", type=int, default=list(range(1, FOLDS + 1)))
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's epochs (quick looks, kept in WORK/runs-epochs-N)")
    parser.add_argument("--lr", type=float, default=None,
                        help="override the recipe's peak learning rate (kept in WORK/runs-lr-X)")
    parser.add_argument("--seed", type=int, default=0, help="the networks' training seed (another seed: "
                        "another independent training run, kept in WORK/runs-seed-N)")
    parser.add_argument("--split", choices=("blocks", "train-folds"), default="blocks",
                        help="blocks: actors 4k-3…4k test (the default); train-folds: the folds of "
                        "`avemotion train --folds 6` (gender-stratified actor groups, 15 %% of "
                        "actors validating), kept in WORK/runs-train-folds")
    parser.add_argument("--weights", type=Path, default=None,
                        help="the speech encoders' weights (a CTranslate2 model folder for Whisper)")
    add_speed_arguments(parser)
    args = parser.parse_args()
    overrides, variant = training_overrides(args.weights, args.seed, args.epochs, args.lr,
                                            args.speed_perturbation, args.test_time_speeds)
    variant += "-train-folds" if args.split == "train-folds" else ""
    runs, results_name = args.work / f"runs{variant}", f"real_speech{variant}"

    table = speech_table(args.ravdess_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache.open(args.work / "cache", FeatureSettings())
    for name in args.models:  # the inputs each model reads, once for every fold
        table = ensure_cached(table, cache.with_inputs(model_inputs(model_settings(name))), progress=True)
    print(f"RAVDESS speech: {len(table)} clips, {table['actor_id'].nunique()} actors, "
          f"{table['emotion'].nunique()} emotions; folds {args.folds}")
    features = egemaps_features(table, args.work)
    timings = {f"{name}/{threads} thread{'s' * (threads > 1)}": encoder_seconds(table, name, args.weights, threads)
               for name in args.models if model_settings(name).frozen_speech for threads in (1, 2)}
    for key, timing in timings.items():
        print(f"{key}: {timing['seconds_per_clip']:.3f} s per clip of {timing['clip_seconds']:.1f} s")
    results: dict[str, list[dict]] = {}
    folds = actor_folds(table, FOLDS, seed=0) if args.split == "train-folds" else None
    for fold in args.folds:
        split = fold_split(table, fold) if folds is None else folds[fold - 1]
        for protocol in args.protocols:
            for name, with_val in ((BASELINE, False), (f"{BASELINE}_20", True)):
                outcome = baseline_fold(table, split, features, protocol, with_val)
                results.setdefault(f"{name}/{protocol}", []).append(outcome)
                print(f"fold {fold} {name} {protocol}: accuracy {outcome['accuracy']:.3f}", flush=True)
            for name in args.models:
                run_fold = model_fold if protocol == "clip" else speaker_fold
                outcome = run_fold(table, split, cache, runs, name, fold, overrides)
                results.setdefault(f"{name}/{protocol}", []).append(outcome)
                print(f"fold {fold} {name} {protocol}: accuracy {outcome['accuracy']:.3f} "
                      f"({outcome['seconds']:.0f} s)", flush=True)
    summary = summarise(results)
    (args.work / f"{results_name}.json").write_text(
        json.dumps({"summary": summary, "folds": results, "encoder_seconds": timings}, indent=2))
    table_md = markdown(summary)
    (args.work / f"{results_name}.md").write_text(table_md + "\n")
    print(table_md)


if __name__ == "__main__":
    main()
