"""Whisper base's every layer pooled over the whole voice, or only where somebody speaks.

    pip install -e '.[train,speech,bench]'
    python benchmarks/studies/speech_pooling.py RAVDESS_DIR --weights DIR [--work DIR] [--margins 0 3 8]
    python benchmarks/studies/speech_pooling.py CREMAD_DIR --corpus crema-d --documents DIR --weights DIR …

`whisper_base_layers_audio_only` pools each layer's hidden states over every frame of the voice,
its pauses and the silence before and after it included (on RAVDESS 44 % of a clip's frames are
speech, on CREMA-D 54 %, by Silero's detector). This pools them also over the speech frames alone,
each stretch of speech widened by a margin of detector frames (32 ms) on either side, and fits
the product's SVM probe (:func:`avemotion.runtime.svm_probe.fit_svm_layer`, on the training and
validation speakers) on each pooling, on the actor-independent folds of benchmarks/real_speech.py
(RAVDESS) or benchmarks/cremad_voices.py (CREMA-D), clip by clip. A clip with less than
MIN_SPEECH_FRAMES frames of speech is pooled over all its frames.

DIR holds the transformers `whisper-base/` that tools/whisper_to_transformers.py makes (or a
hub name's folder). The pooled features are kept in WORK/pooled-<corpus>.npz, so a second run only
fits. Printed: each pooling's accuracy, mean ± sd over the folds and fold by fold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import product_benchmarks  # noqa: F401  (benchmarks/ on the path)
from cremad_voices import CORPUS_FOLDS, add_corpus_arguments, corpus_folds, corpus_table, voice_features

from avemotion.media.speech import load_speech_encoder, mean_and_std
from avemotion.media.voice_activity import FRAME, VoiceActivity
from avemotion.runtime.svm_probe import fit_svm_layer

ENCODER = ("transformers", "openai/whisper-base")  # whisper_base_layers_audio_only's
MIN_SPEECH_FRAMES = 10  # encoder frames (0.2 s)


def pooling_name(margin: int) -> str:
    """The name a pooling over the speech with this margin has in the output and the kept features."""
    return f"speech+{margin}"


def detected_speech(voice: np.ndarray) -> np.ndarray:
    """Whether the detector hears speech in each of its frames (32 ms) of the voice."""
    activity = VoiceActivity()
    activity.add(np.concatenate([voice, np.zeros(FRAME, np.float32)]))  # the last part-frame judged too
    return np.asarray(activity.speech, bool)


def speech_frames(speech: np.ndarray, samples: int, frames: int, margin: int) -> np.ndarray:
    """Which of the encoder's `frames` (spread evenly over the voice's `samples`) fall where the
    detector heard speech, each stretch of speech widened by `margin` detector frames on either side."""
    if margin:
        speech = np.convolve(speech, np.ones(2 * margin + 1), mode="same") > 0
    centres = (np.arange(frames) + 0.5) * samples / frames
    return speech[np.minimum(centres // FRAME, len(speech) - 1).astype(int)]


def pooled_features(table: pd.DataFrame, weights: Path, margins: list[int], path: Path) -> dict[str, np.ndarray]:
    """Each clip's pooled hidden states, over all frames and over its speech with each margin, and
    the share of its frames that are speech; a clip that cannot be decoded is reported, and its row
    is marked in `decoded`."""

    def features_of():
        encoder = load_speech_encoder(*ENCODER, weights=weights)

        def of_voice(voice: np.ndarray) -> dict[str, np.ndarray]:
            hidden, speech = encoder.hidden_states(voice), detected_speech(voice)
            chosen = {margin: speech_frames(speech, len(voice), hidden.shape[1], margin) for margin in {0, *margins}}
            pooled = {"all": mean_and_std(hidden), "speech_share": chosen[0].mean()}
            for margin in margins:
                enough = chosen[margin].sum() >= MIN_SPEECH_FRAMES
                pooled[pooling_name(margin)] = mean_and_std(hidden[:, chosen[margin]] if enough else hidden)
            return pooled

        return of_voice

    names = ["all", *(pooling_name(margin) for margin in margins), "speech_share"]
    return voice_features(table, path, names, features_of, "speech_pooling.py")


def fold_accuracies(table: pd.DataFrame, splits: dict[int, pd.Series], features: np.ndarray) -> list[float]:
    """The SVM probe's test accuracy on each fold, fitted on the fold's other speakers."""
    labels = sorted(table["emotion"].unique())
    targets = table["emotion"].map(labels.index).to_numpy()
    speakers = table["actor_id"].astype(str).to_numpy()
    flat = features.reshape(len(table), -1)
    accuracies = []
    for split in splits.values():
        test = (split == "test").to_numpy()
        layer = fit_svm_layer(flat[~test], targets[~test], len(labels), speakers[~test])
        accuracies.append(float((layer.logits(flat[test]).argmax(axis=1) == targets[test]).mean()))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(parser)
    parser.add_argument("--weights", type=Path, required=True, help="a folder holding whisper-base/")
    parser.add_argument("--work", type=Path, default=Path(".cache/speech-pooling"))
    parser.add_argument("--margins", nargs="+", type=int, default=[0, 3, 8],
                        help="detector frames (32 ms) added to each side of each stretch of speech")
    args = parser.parse_args()

    table = corpus_table(args)
    splits = corpus_folds(table, args.corpus, list(range(1, CORPUS_FOLDS[args.corpus] + 1)))
    args.work.mkdir(parents=True, exist_ok=True)
    arrays = pooled_features(table, args.weights, args.margins, args.work / f"pooled-{args.corpus}.npz")
    decoded = arrays["decoded"]  # the folds stay those of the whole corpus, less what could not be read
    table = table[decoded].reset_index(drop=True)
    splits = {fold: split[decoded].reset_index(drop=True) for fold, split in splits.items()}
    print(f"speech: {arrays['speech_share'].mean():.2f} of the encoder's frames, on average")
    for name in ["all"] + [pooling_name(margin) for margin in args.margins]:
        accuracies = fold_accuracies(table, splits, arrays[name])
        print(f"{name}: {np.mean(accuracies):.3f} ± {np.std(accuracies):.3f} "
              f"({', '.join(f'{accuracy:.3f}' for accuracy in accuracies)})", flush=True)


if __name__ == "__main__":
    main()
