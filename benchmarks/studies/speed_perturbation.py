"""Whisper base's every layer, its SVM probe fitted on the training voices and on each voice sped up
and slowed down.

    pip install -e '.[train,speech,bench]'
    python benchmarks/studies/speed_perturbation.py RAVDESS_DIR --weights DIR [--work DIR] [--speeds 0.9 1.1]
    python benchmarks/studies/speed_perturbation.py CREMAD_DIR --corpus crema-d --documents DIR --weights DIR …

Speed perturbation (Ko et al., 2015) plays each training voice a little faster or slower, its pitch
and its formants moved with its tempo, as a speaker with a shorter or longer vocal tract who talks
faster or slower would: the standard augmentation of speaker and speech recognisers trained on a
few hundred voices. Here each training voice is resampled by each factor (soxr) and pooled by
`whisper_base_layers_audio_only`'s encoder (every layer, mean and std over the whole voice), and the
product's SVM probe (:func:`avemotion.runtime.svm_probe.fit_svm_layer`) is fitted on the original
voices alone and on the originals with their perturbed copies (each copy grouped with its speaker
for the probe's cross-validation; past the kernel's 12,000 rows the originals are kept first), on
the actor-independent folds of benchmarks/real_speech.py (RAVDESS) or benchmarks/cremad_voices.py
(CREMA-D). Test voices are judged as recorded, and also by their probabilities averaged over them
and their copies at the same factors (test-time augmentation: the product's `train --test-time-speeds`).

DIR holds the transformers `whisper-base/` that tools/whisper_to_transformers.py makes (or a
hub name's folder). The pooled features are kept in WORK/speeds-<corpus>.npz, so a second run only
fits. Printed: the probe's accuracy fitted on the voices as recorded and with all their copies (and
with each factor's alone, --each-speed), each judged both ways, clip by clip, mean ± sd over the
folds and fold by fold, and the seconds its fits took.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import product_benchmarks  # noqa: F401  (benchmarks/ on the path)
import soxr
from cremad_voices import CORPUS_FOLDS, add_corpus_arguments, corpus_folds, corpus_table, voice_features

from avemotion.media.inputs import FeatureSettings
from avemotion.media.speech import SPEECH_RATE, load_speech_encoder, mean_and_std
from avemotion.runtime.probabilities import softmax
from avemotion.runtime.svm_probe import fit_svm_layer

ENCODER = ("transformers", "openai/whisper-base")  # whisper_base_layers_audio_only's


def speed_name(speed: float) -> str:
    return f"speed-{speed:g}"


def sped(voice: np.ndarray, speed: float) -> np.ndarray:
    """The voice played `speed` times as fast: resampled so that it lasts 1/speed as long at the same
    rate, its pitch and formants moved by the same factor."""
    return voice if speed == 1 else soxr.resample(voice, SPEECH_RATE * speed, SPEECH_RATE).astype(np.float32)


def pooled_features(table: pd.DataFrame, weights: Path, speeds: list[float], path: Path) -> dict[str, np.ndarray]:
    """Each clip's pooled hidden states at each speed (1 included); a clip that cannot be decoded is
    reported, and its row is marked in `decoded`."""

    def features_of():
        encoder = load_speech_encoder(*ENCODER, weights=weights)
        longest = FeatureSettings().waveform_samples  # the voice the product's encoders read
        return lambda voice: {speed_name(speed): mean_and_std(encoder.hidden_states(sped(voice, speed)[:longest]))
                              for speed in speeds}

    return voice_features(table, path, [speed_name(speed) for speed in speeds], features_of,
                          "speed_perturbation.py")


def fold_accuracies(table: pd.DataFrame, splits: dict[int, pd.Series], original: np.ndarray,
                    copies: list[np.ndarray], at_speeds: list[np.ndarray]) -> tuple[dict[str, list[float]], float]:
    """The SVM probe's test accuracy on each fold, fitted on the fold's other speakers' voices and
    their `copies`, judging each test voice as recorded and by its probabilities averaged over it
    and its copies `at_speeds` (test-time augmentation); and the seconds the fits took."""
    labels = sorted(table["emotion"].unique())
    targets = table["emotion"].map(labels.index).to_numpy()
    speakers = table["actor_id"].astype(str).to_numpy()
    flat = [features.reshape(len(table), -1) for features in [original, *copies]]
    judged_at = [features.reshape(len(table), -1) for features in at_speeds]
    accuracies, started = {"as recorded": [], "averaged over the speeds": []}, time.perf_counter()
    for split in splits.values():
        train = (split != "test").to_numpy()
        test = ~train
        copied = np.arange(train.sum() * len(flat)) >= train.sum()  # the rows after the originals
        layer = fit_svm_layer(np.concatenate([features[train] for features in flat]),
                              np.tile(targets[train], len(flat)), len(labels), np.tile(speakers[train], len(flat)),
                              copies=copied)
        judged = [layer.logits(features[test]) for features in [flat[0], *judged_at]]  # as recorded first
        averaged = np.mean([softmax(decisions) for decisions in judged], axis=0)
        for name, decisions in (("as recorded", judged[0]), ("averaged over the speeds", averaged)):
            accuracies[name].append(float((decisions.argmax(axis=1) == targets[test]).mean()))
    return accuracies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--weights", type=Path, required=True, help="a folder holding whisper-base/")
    parser.add_argument("--work", type=Path, default=Path(".cache/speed-perturbation"))
    parser.add_argument("--speeds", nargs="+", type=float, default=[0.9, 1.1],
                        help="the factors each training voice is also played at (1: as recorded)")
    parser.add_argument("--each-speed", action="store_true",
                        help="also fit with each factor's copies alone")
    args = parser.parse_args()

    table = corpus_table(args)
    splits = corpus_folds(table, args.corpus, list(range(1, CORPUS_FOLDS[args.corpus] + 1)))
    args.work.mkdir(parents=True, exist_ok=True)
    speeds = sorted({1.0, *args.speeds})
    arrays = pooled_features(table, args.weights, speeds, args.work / f"speeds-{args.corpus}.npz")
    decoded = arrays["decoded"]  # the folds stay those of the whole corpus, less what could not be read
    table = table[decoded].reset_index(drop=True)
    splits = {fold: split[decoded].reset_index(drop=True) for fold, split in splits.items()}
    original, perturbed = arrays[speed_name(1.0)], [speed for speed in speeds if speed != 1]
    at_speeds = [arrays[speed_name(speed)] for speed in perturbed]
    trainings = {"as recorded": [], f"+ {' '.join(map(speed_name, perturbed))}": at_speeds}
    if args.each_speed and len(perturbed) > 1:
        trainings |= {f"+ {speed_name(speed)}": [arrays[speed_name(speed)]] for speed in perturbed}
    for name, copies in trainings.items():
        accuracies, seconds = fold_accuracies(table, splits, original, copies, at_speeds)
        for judged, folds in accuracies.items():
            print(f"{name}, judged {judged}: {np.mean(folds):.3f} ± {np.std(folds):.3f} "
                  f"({', '.join(f'{accuracy:.3f}' for accuracy in folds)})", flush=True)
        print(f"{name}: fits {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
