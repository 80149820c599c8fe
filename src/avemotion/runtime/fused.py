"""Late fusion: a face model and a voice model judging a clip together, each on what it reads.

A :class:`FusedClassifier` holds two trained classifiers: one that reads a clip's face-cropped
frames (or an image) and one that reads its voice (or an audio file). Each gives a distribution
over its own labels, calibrated by its temperature (:attr:`EmotionClassifier.temperature`). The
rule, fixed before any clip was judged:

- a clip with a face and a voice is judged by both, and the result is the **mean of the two
  distributions over the labels they share**, each renormalised over those labels first. Equal
  weights: no labelled audio-visual clip was left to weigh the two by, and a weight tuned on test
  clips would be a result chosen by its test;
- a clip with one modality to judge is judged by that one alone: a video where no face shows by
  its voice, a silent one by its face, an image by the face, a voice file by the voice;
- a clip with neither gets an error that says why for each.

Every result says which modalities spoke, and each one's distribution (`Prediction.by_modality`).
It offers what the surfaces use of a classifier (predict, predict_batch, predict_capture, timeline,
a card with the labels, file types, window and frames), so the command line, the server and its
camera, and `avemotion.load` take it as they take one network. Thread-safe as its parts are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avemotion.datasets.listing import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from avemotion.datasets.vocabulary import canonical
from avemotion.errors import UsageError
from avemotion.runtime.card import ModelCard
from avemotion.runtime.predict import EmotionClassifier, Prediction

FACE, VOICE = "face", "voice"
NOTHING = "(no face, no voice)"  # a timeline window where neither part has anything to judge


def fused_distribution(distributions: list[dict[str, float]]) -> dict[str, float]:
    """The mean of distributions over the labels all of them have, each renormalised over those
    labels first (one distribution comes back as it is)."""
    if len(distributions) == 1:
        return dict(distributions[0])
    shared = [label for label in distributions[0] if all(label in other for other in distributions[1:])]
    if not shared:
        raise ValueError("the distributions share no label")
    rows = np.array([[distribution[label] for label in shared] for distribution in distributions])
    rows /= np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
    return {label: float(value) for label, value in zip(shared, rows.mean(axis=0))}


@dataclass(frozen=True)
class FusedCard:
    """What the surfaces read of a model's card, for a face model and a voice model together."""

    model_name: str
    labels: list[str]
    face: ModelCard
    voice: ModelCard | None  # None: the voice cannot be judged here (see FusedClassifier.voice_missing)
    speaker_norm: bool = field(default=False, init=False)  # each clip is judged on its own

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("video", "audio") if self.voice is not None else ("video",)

    @property
    def extensions(self) -> tuple[str, ...]:
        """Videos, still images (the face) and audio files (the voice)."""
        voice = self.voice.extensions if self.voice is not None else ()
        return tuple(dict.fromkeys(self.face.extensions + voice))

    @property
    def feature_settings(self):
        """The face's: the frames a camera window sends."""
        return self.face.feature_settings

    @property
    def window(self) -> float:
        """The voice's window (the length of the clips it learned from), else the face's."""
        return (self.voice or self.face).window

    def label_names(self) -> dict[str, str]:
        return {label: canonical(label) for label in self.labels}


class FusedClassifier:
    """A face classifier and a voice classifier judging each clip together (module docstring).

    `voice` may be None, with `voice_missing` saying why (its encoder's weights cannot be had, or
    PyTorch is not installed): then faces alone are judged, and each video's result says so."""

    def __init__(self, name: str, face: EmotionClassifier, voice: EmotionClassifier | None,
                 voice_missing: str | None = None) -> None:
        self.face, self.voice, self.voice_missing = face, voice, voice_missing
        labels = [canonical(label) for label in face.labels]
        if voice is not None:
            labels += [canonical(label) for label in voice.labels if canonical(label) not in labels]
        self.labels = labels
        self.card = FusedCard(name, labels, face.card, voice.card if voice is not None else None)

    def predict(self, path: str | Path) -> Prediction:
        return self.predict_batch([path])[0]

    def predict_batch(self, paths: list[str | Path], progress: bool = False) -> list[Prediction]:
        """Each clip judged by the parts that read it: a file's face by the face model unless it is
        an audio file, its voice by the voice model unless it is an image."""
        suffixes = [Path(path).suffix.lower() for path in paths]
        judged = {FACE: self._judged(self.face, paths, [s not in AUDIO_EXTENSIONS for s in suffixes], progress)}
        wants_voice = [s not in IMAGE_EXTENSIONS for s in suffixes]
        if self.voice is not None:
            judged[VOICE] = self._judged(self.voice, paths, wants_voice, progress)
        results = []
        for index, path in enumerate(paths):
            parts = {modality: outcomes[index] for modality, outcomes in judged.items() if outcomes[index]}
            missing = self._missing_voice(path) if self.voice is None and wants_voice[index] else None
            results.append(self._combined(str(path), parts, missing))
        return results

    def predict_capture(self, images: list[np.ndarray], waveform: np.ndarray | None, rate: int) -> Prediction:
        """A live window: its frames by the face model, its audio by the voice model."""
        parts = {FACE: self.face.predict_capture(images, None, rate)}
        if self.voice is not None and waveform is not None:
            parts[VOICE] = self.voice.predict_capture([], waveform, rate)
        return self._combined("capture", parts, None)

    def timeline(self, path: str | Path, window: float = 0.0, hop: float = 0.5, smooth: int = 1,
                 progress: bool = False):
        """The fused probabilities over time (see :func:`fused_timeline`)."""
        from avemotion.config import TimelineSettings

        return fused_timeline(self, path, TimelineSettings(window, hop, smooth), progress)

    def features(self, path: str | Path):
        return self.face.features(path)

    def check_recording(self, path: str | Path, seconds: float, window: float) -> None:
        """Every recording can be judged window by window."""

    @staticmethod
    def _judged(classifier: EmotionClassifier, paths: list, wanted: list[bool],
                progress: bool) -> list[Prediction | None]:
        """The classifier's predictions of the wanted paths, None for the others, in order."""
        chosen = [path for path, keep in zip(paths, wanted) if keep]
        outcomes = iter(classifier.predict_batch(chosen, progress=progress) if chosen else [])
        return [next(outcomes) if keep else None for keep in wanted]

    def _missing_voice(self, path: str | Path) -> str:
        return f"{path}: its voice was not judged: {self.voice_missing}"

    def _combined(self, path: str, parts: dict[str, Prediction], missing: str | None) -> Prediction:
        """One result from each part's: the fused distribution of those that spoke, or an error
        giving each part's reason."""
        spoke = {modality: result for modality, result in parts.items() if result.ok}
        if not spoke:
            reasons = [result.error for result in parts.values()] + ([missing] if missing else [])
            return Prediction(path=path, error="; ".join([reasons[0]] + [_without_path(reason, path)
                                                                         for reason in reasons[1:]]))
        by_modality = {modality: {canonical(label): p for label, p in result.probabilities.items()}
                       for modality, result in spoke.items()}
        probabilities = fused_distribution(list(by_modality.values()))
        kept = spoke.get(FACE) or spoke[VOICE]
        return Prediction(path=path, label=max(probabilities, key=probabilities.get), probabilities=probabilities,
                          features=kept.features, by_modality=by_modality,
                          note=_without_path(missing, path) if missing else None)


def _without_path(reason: str, path: str) -> str:
    """A part's error without the file's name it starts with ("PATH: reason" -> "reason"), to
    follow another that names it."""
    return reason.removeprefix(f"{path}: ")


def fused_timeline(classifier: FusedClassifier, path: str | Path, settings, progress: bool = False):
    """Each part's timeline of the file over the same windows (the face's where it has frames, the
    voice's where it has sound), fused window by window as a clip is: both where both have
    something to judge, the one that has where one has (a window where nobody speaks, or no face
    shows), and NOTHING where neither has. One row per window as emotion_timeline gives."""
    import pandas as pd

    from avemotion.config import TimelineSettings
    from avemotion.runtime.timeline import NO_FACE, NO_VOICE, emotion_timeline, smoothed, streams_of

    window = settings.window or classifier.card.window
    each = TimelineSettings(window, settings.hop, 1)
    present = streams_of(path)
    tables = {}
    if "video" in present:
        tables[FACE] = emotion_timeline(classifier.face, path, each, progress)
    if "audio" in present and classifier.voice is not None:
        tables[VOICE] = emotion_timeline(classifier.voice, path, each, progress)
    if not tables and present == {"audio"}:  # sound alone, and no voice model to hear it
        raise UsageError(f"{path}: its voice cannot be judged: {classifier.voice_missing}")
    if not tables:  # neither stream: the face model's reading says why
        return emotion_timeline(classifier.face, path, settings, progress)
    empty = {FACE: NO_FACE, VOICE: NO_VOICE}
    starts = sorted(set().union(*(set(table["start_s"]) for table in tables.values())))
    by_start = {modality: table.set_index("start_s") for modality, table in tables.items()}
    rows, labels = [], []
    for start in starts:
        spoke = [_window_distribution(windows.loc[start], classifier, modality)
                 for modality, windows in by_start.items()
                 if start in windows.index and windows.at[start, "label"] != empty[modality]]
        rows.append(fused_distribution(spoke) if spoke else {})
        labels.append(None if spoke else NOTHING)
    probabilities = pd.DataFrame(rows, columns=classifier.labels, dtype=float).to_numpy()
    probabilities = smoothed(probabilities, settings.smooth)
    top = [classifier.labels[int(np.nanargmax(row))] if not np.isnan(row).all() else NOTHING for row in probabilities]
    table = pd.DataFrame({"start_s": starts, "end_s": np.round(np.array(starts) + window, 3),
                          "label": [empty_label or label for empty_label, label in zip(labels, top)]})
    for index, label in enumerate(classifier.labels):
        table[label] = probabilities[:, index].round(6)
    return table


def _window_distribution(row, classifier: FusedClassifier, modality: str) -> dict[str, float]:
    """A part's timeline row as a distribution over its labels, by canonical name."""
    part: EmotionClassifier = classifier.face if modality == FACE else classifier.voice
    return {canonical(label): float(row[label]) for label in part.labels}

