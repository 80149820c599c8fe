"""Speaker normalisation: each speaker's spectrograms standardised with that speaker's own statistics.

Voices differ more from person to person than one person's voice differs from emotion to emotion;
standardising every Mel bin with the mean and spread of all of one speaker's (unlabelled) clips
removes much of the person and keeps the emotion. It is common in speaker-independent studies, and
it is honest only where several clips of the person are at hand: a model trained this way judges a
folder of one speaker's clips, or a long recording of one person, never a lone clip.

The standardised values are mapped back onto the dB scale of ordinary spectrograms (MEL_DB_MEAN ±
MEL_DB_STD), so the network's own input standardisation is the same in both modes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from avemotion.features import MEL_DB_MEAN, MEL_DB_STD

MIN_SPEAKER_CLIPS = 2  # fewer clips than this give no statistics of the person to standardise with
MIN_STD_DB = 1e-3


class SpeakerNormError(ValueError):
    """Speaker normalisation asked for where it cannot be honest; the message says what to do."""


@dataclass(frozen=True)
class SpeakerStatistics:
    """The mean and spread of each Mel bin over all of one speaker's spectrograms (dB)."""

    mean: np.ndarray  # float32 (n_mels,)
    std: np.ndarray  # float32 (n_mels,)

    @classmethod
    def of(cls, mels: Iterable[np.ndarray]) -> SpeakerStatistics:
        """The statistics of some spectrograms (1, n_mels, time) or (n_mels, time), all time steps pooled."""
        gathered = RunningStatistics()
        for mel in mels:
            gathered.add(mel)
        return gathered.result()

    def normalise(self, mel: np.ndarray) -> np.ndarray:
        """A spectrogram standardised per Mel bin, on the ordinary dB scale: float32, same shape."""
        standardised = (mel.astype(np.float32) - self.mean[:, None]) / self.std[:, None]
        return (MEL_DB_MEAN + MEL_DB_STD * standardised).astype(np.float32)


def statistics_by_speaker(speakers: list, mels: list[np.ndarray], source: str) -> dict:
    """Each speaker's statistics from all of that speaker's clips; a speaker with too few clips
    is refused with a message naming it and `source`."""
    grouped: dict = {}
    for speaker, mel in zip(speakers, mels):
        grouped.setdefault(speaker, []).append(mel)
    few = [speaker for speaker, group in grouped.items() if len(group) < MIN_SPEAKER_CLIPS]
    if few:
        raise SpeakerNormError(
            f"{source}: speaker normalisation needs at least {MIN_SPEAKER_CLIPS} clips of each "
            f"speaker; {len(few)} speakers have fewer (first: {few[0]})")
    return {speaker: SpeakerStatistics.of(group) for speaker, group in grouped.items()}


def require_speakers(table) -> None:
    """Refuse a table without speakers for speaker normalisation."""
    if "actor_id" not in table or table["actor_id"].isna().all() or (table["actor_id"].astype(str) == "").all():
        raise SpeakerNormError("speaker normalisation needs each clip's speaker: this table has no "
                               "speaker column (actor_id; `speaker` in a manifest)")


def speaker_normaliser(table, cache):
    """(clip, mel) -> mel standardised with its speaker's statistics, computed from every clip of
    that speaker in the table (its labels unused)."""
    require_speakers(table)
    speakers = list(table["actor_id"])
    mels = [cache.read(clip, ("audio",)).mel for clip in table["clip"]]
    statistics = statistics_by_speaker(speakers, mels, "the table")
    speaker_of = dict(zip(table["clip"], speakers))
    return lambda clip, mel: statistics[speaker_of[clip]].normalise(mel)


class RunningStatistics:
    """A speaker's statistics gathered one spectrogram at a time (a long recording's windows, or a
    folder's clips), holding only sums."""

    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | float = 0.0
        self.squares: np.ndarray | float = 0.0

    def add(self, mel: np.ndarray) -> None:
        columns = np.asarray(mel, np.float64).reshape(mel.shape[-2], -1)
        self.count += columns.shape[1]
        self.total = self.total + columns.sum(axis=1)
        self.squares = self.squares + (columns**2).sum(axis=1)

    def result(self) -> SpeakerStatistics:
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))
        return SpeakerStatistics(mean.astype(np.float32), np.maximum(std, MIN_STD_DB).astype(np.float32))
