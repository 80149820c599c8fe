"""Emotion over time: the probabilities of every label in a window sliding over a long video (or,
for an audio-only model, a long audio file), in one streaming decoding pass.

Each window is judged as `predict` judges a clip cut to that stretch: 8 frames spread from its
first to its last frame and the log-Mel spectrogram of its audio, with the model's feature
settings. Work is shared between overlapping windows. The file is decoded once, and its audio
resampled once. Frames are taken on a time grid twice as fine as a window's frame spacing, and
each goes through the image backbone once; a window uses the grid frames nearest to its 8
positions (at most a quarter of the spacing away, 0.09 s for 2.5 s windows), where predicting each
stretch would put 16 frames a second through the backbone. A window's spectrogram is computed from
its own samples with predict's function, so it is exactly a clip's (about a millisecond; slicing
one long spectrogram would differ at every window's edges, where a clip is zero-padded). Only the
grid frames and samples of windows not yet finished are held, so memory stays bounded whatever the
length.

The classifier judges all the windows' outputs together at the end: a speaker-normalised one
(:class:`~avemotion.runtime.predict.SpeakerNormalisedClassifier`) takes the recording as one
person's, every window's features standardised with the statistics of all the windows' (the
recording must be at least `speakers.MIN_SPEAKER_WINDOWS` windows long). Those outputs are what it
holds to the end: 2 kB a window for the ResNet-18 audio model, 15 MB for an hour at a 0.5 s hop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
import soxr
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from tqdm import tqdm

from avemotion.config import TimelineSettings
from avemotion.csvfiles import write_csv
from avemotion.errors import UsageError
from avemotion.media.features import (
    FaceBoxes,
    FeatureSettings,
    MediaError,
    MediaReader,
    as_read,
    square,
    to_rgb,
    voice_inputs,
)
from avemotion.media.inputs import FRAMES, SAMPLE_RATE, network_inputs, voice_is_silent
from avemotion.media.voice_activity import VoiceActivity, available

EMBED_BATCH = 16  # grid frames per image-backbone call
WINDOW_BATCH = 32  # windows per call of the rest of the network


@dataclass(frozen=True)
class _Plan:
    """Where each window starts, and which grid frames and audio samples it reads."""

    window: float  # seconds
    hop: float  # seconds
    n_frames: int
    grid: float  # seconds between grid frames
    sample_rate: int  # audio samples per second
    samples: int  # audio samples of one window

    @classmethod
    def of(cls, window: float, hop: float, features: FeatureSettings, frame_period: float) -> _Plan:
        # predict spreads n frames from a clip's first frame to its last, one frame period before the end
        spacing = max(window - frame_period, 1e-3) / (features.n_frames - 1)
        return cls(window, hop, features.n_frames, spacing / 2, features.sample_rate,
                   round(window * features.sample_rate))

    def start(self, index: int) -> float:
        return index * self.hop

    def slots(self, index: int) -> list[int]:
        """The grid frames of window `index`, nearest to its n equally spaced positions."""
        start = self.start(index)
        return [round((start + 2 * i * self.grid) / self.grid) for i in range(self.n_frames)]

    def first_sample(self, index: int) -> int:
        return round(self.start(index) * self.sample_rate)


class _GridFrames:
    """Picks, from frames arriving in order, the one nearest to each grid time (0, g, 2g, …)."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.next_slot = 0
        self.previous: tuple[float, av.VideoFrame] | None = None

    def add(self, time: float, frame: av.VideoFrame) -> list[tuple[int, av.VideoFrame]]:
        chosen = []
        while self.next_slot * self.step <= time:
            target = self.next_slot * self.step
            nearer_before = self.previous is not None and target - self.previous[0] < time - target
            chosen.append((self.next_slot, self.previous[1] if nearer_before else frame))
            self.next_slot += 1
        self.previous = (time, frame)
        return chosen

    def finish(self, slots_needed: int) -> list[tuple[int, av.VideoFrame]]:
        """The last frame for any grid time past it that a window still reads."""
        if self.previous is None:
            return []
        chosen = [(slot, self.previous[1]) for slot in range(self.next_slot, slots_needed)]
        self.next_slot = max(self.next_slot, slots_needed)
        return chosen


class _Samples:
    """The file's audio at the model's rate, resampled as it arrives; the samples before the next
    window's start are let go."""

    def __init__(self, features: FeatureSettings, in_rate: int, voice_activity: VoiceActivity | None) -> None:
        self.features = features
        self.resampler = soxr.ResampleStream(in_rate, features.sample_rate, 1, dtype="float32")
        self.samples = np.zeros(0, np.float32)
        self.first = 0  # absolute index of samples[0]
        self.received = 0
        self.voice_activity = voice_activity  # where somebody speaks, when asked

    def add(self, waveform: np.ndarray, last: bool = False) -> None:
        resampled = self.resampler.resample_chunk(waveform.astype(np.float32), last=last)
        self.samples = np.concatenate([self.samples, resampled])
        self.received += len(resampled)
        if self.voice_activity is not None:
            self.voice_activity.add(resampled)

    def window(self, start: int, length: int, inputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """A stretch's audio inputs among `inputs`, exactly as predict makes a clip's."""
        stretch = self.samples[start - self.first : start - self.first + length]
        return voice_inputs(stretch, self.features, inputs)

    def has_voice(self, start: int, length: int, voice: dict[str, np.ndarray]) -> bool:
        """Whether somebody speaks in a stretch: the detector's answer, or without it (the base
        install), whether its voice input is more than silence."""
        if self.voice_activity is not None:
            return self.voice_activity.has_voice(start, length)
        return not voice_is_silent(voice)

    def drop_before(self, sample: int) -> None:
        drop = max(0, sample - self.first)
        self.samples = self.samples[drop:]
        self.first += drop


class _Timeline:
    """The streaming engine: decode, embed grid frames, gather audio samples, emit windows."""

    def __init__(self, classifier, plan: _Plan, path: Path) -> None:
        self.classifier = classifier
        self.plan = plan
        self.path = path
        self.features = classifier.card.reading_settings
        self.inputs = classifier.card.inputs
        self.uses_video = FRAMES in self.inputs
        self.uses_audio = "audio" in classifier.card.modalities
        # a voice model has nothing to judge where nobody speaks, a face model (one that crops
        # faces) where no face shows; a fused one still has the other
        self.judges_voice_only = classifier.card.modalities == ("audio",)
        self.judges_face_only = classifier.card.modalities == ("video",) and self.features.face_crop
        self.grid = _GridFrames(plan.grid)
        self.pending: list[tuple[int, av.VideoFrame]] = []
        self.frames: dict[int, np.ndarray] = {}  # grid slot -> frame features (or the frame itself)
        self.face_boxes = FaceBoxes(keep=2 * plan.n_frames)  # where the face was over about a window
        self.audio: _Samples | None = None
        self.next_window = 0
        self.last_window: int | None = None  # known at the end of the file
        self.duration = 0.0  # seconds, known at the end of the file
        self.rows: list[tuple[float, np.ndarray]] = []  # each window's start and network output
        self.empty: list[str | None] = []  # each window's label where it has nothing to judge, else None
        self.faces: set[int] = set()  # the grid slots (held) whose frame showed a face

    def run(self, progress: bool) -> list[tuple[float, np.ndarray]]:
        reads = f"{self.classifier.card.model_name} reads {' and '.join(self.classifier.card.modalities)}"
        with MediaReader(self.path, video=self.uses_video, audio=self.uses_audio, reads=reads) as media:
            stated = media.stated_seconds
            last_time = 0.0
            with tqdm(total=round(stated or 0), unit="s", desc="timeline", disable=not progress) as bar:
                for item in media.decoded():
                    if isinstance(item, av.VideoFrame):
                        self.pending += self.grid.add(item.time or 0.0, item)
                    else:
                        self._voice(media.audio_rate).add(media.samples(item))
                    if media.decoded_until > last_time + 1:
                        bar.update(round(media.decoded_until - last_time))
                        last_time = media.decoded_until
                    self._embed(final=False)
                    self._emit()
            media.check_decoded()
            self._finish(media.frame_rate)
        return self.rows

    def _voice(self, rate: int) -> _Samples:
        """The audio samples gathered so far, made at the first audio frame (its rate known)."""
        if self.audio is None:
            # where somebody speaks matters to a voice model; the detector reads 16 kHz
            detect = self.judges_voice_only and self.features.sample_rate == SAMPLE_RATE and available()
            self.audio = _Samples(self.features, rate, VoiceActivity() if detect else None)
        return self.audio

    def _finish(self, frame_rate: float) -> None:
        """End of file: the last audio samples and grid frames, then the last windows."""
        if self.audio is not None:
            self.audio.add(np.zeros(0, np.float32), last=True)
        # the last window that ends within the file (-1: the file is shorter than one window)
        self.duration = self._duration(frame_rate)
        self.last_window = int((self.duration - self.plan.window + 1e-6) // self.plan.hop)
        if self.uses_video and self.last_window >= 0:
            self.pending += self.grid.finish(self.plan.slots(self.last_window)[-1] + 1)
        self._embed(final=True)
        self._emit()

    def _duration(self, frame_rate: float) -> float:
        lengths = []
        if self.uses_video:
            lengths.append(self.grid.previous[0] + (1 / frame_rate if frame_rate else 0))
        if self.audio is not None:
            lengths.append(self.audio.received / self.features.sample_rate)
        return min(lengths)

    def _embed(self, final: bool) -> None:
        """Grid frames through the image backbone in batches (all of them at the end)."""
        while len(self.pending) >= EMBED_BATCH or (final and self.pending):
            batch, self.pending = self.pending[:EMBED_BATCH], self.pending[EMBED_BATCH:]
            images = np.stack([self._image(slot, frame) for slot, frame in batch])
            parts = self.classifier.parts
            outputs = parts.embed_frames(images) if parts is not None else images
            self.frames.update((slot, output) for (slot, _), output in zip(batch, outputs))

    def _image(self, slot: int, frame: av.VideoFrame) -> np.ndarray:
        """One frame as the model reads it: RGB, (3, size, size), face-cropped if the model was."""
        size = self.features.frame_size
        if not self.features.face_crop:
            return as_read(to_rgb(frame, size).transpose(2, 0, 1), self.features)
        image = to_rgb(frame)
        if self.face_boxes.see(image):
            self.faces.add(slot)
        return as_read(square(self.face_boxes.crop(image), size).transpose(2, 0, 1), self.features)

    def _ready(self, index: int) -> bool:
        """Whether every grid frame and audio sample the window reads is there; at the end of the
        file, whether the window ends within it."""
        if self.last_window is not None:
            return index <= self.last_window
        if self.uses_video and self.plan.slots(index)[-1] not in self.frames:
            return False
        if not self.uses_audio:
            return True
        end = self.plan.first_sample(index) + self.plan.samples
        return self.audio is not None and end <= self.audio.first + len(self.audio.samples)

    def _emit(self) -> None:
        """Score every window whose frames and samples are all there, in batches."""
        ready = []
        while self._ready(self.next_window):
            ready.append(self.next_window)
            self.next_window += 1
        for start in range(0, len(ready), WINDOW_BATCH):
            self._score(ready[start : start + WINDOW_BATCH])
        self._release(self.next_window)

    def _score(self, windows: list[int]) -> None:
        batch = {}
        if self.uses_video:
            batch[FRAMES] = np.stack([np.stack([self.frames[s] for s in self.plan.slots(w)]) for w in windows])
        if self.audio is not None:
            voices = [self.audio.window(self.plan.first_sample(w), self.plan.samples, self.inputs) for w in windows]
            batch.update({name: np.stack([voice[name] for voice in voices]) for name in voices[0]})
        if self.judges_voice_only:
            self.empty += [None if self.audio.has_voice(self.plan.first_sample(w), self.plan.samples, voice)
                           else NO_VOICE for w, voice in zip(windows, voices)]
        elif self.judges_face_only:
            self.empty += [None if self.faces.intersection(self.plan.slots(w)) else NO_FACE for w in windows]
        else:
            self.empty += [None] * len(windows)
        parts = self.classifier.parts
        network = parts.from_frame_features if parts is not None else self.classifier.network
        outputs = network(network_inputs(batch))
        self.rows += [(self.plan.start(w), output) for w, output in zip(windows, outputs)]

    def _release(self, next_window: int) -> None:
        """Forget the grid frames and samples that no window still to come reads."""
        first_slot = self.plan.slots(next_window)[0]
        for slot in [s for s in self.frames if s < first_slot]:
            del self.frames[slot]
        self.faces = {slot for slot in self.faces if slot >= first_slot}
        if self.audio is not None:
            self.audio.drop_before(self.plan.first_sample(next_window))


NO_VOICE = "(no voice)"  # the label of a window where nobody speaks, for a model that reads only the voice
NO_FACE = "(no face)"  # the label of a window where no face shows, for a face model that reads only frames


def emotion_timeline(classifier, path: str | Path, settings: TimelineSettings = TimelineSettings(),
                     progress: bool = False) -> pd.DataFrame:
    """One row per window: start_s, end_s, the top label, and each label's probability."""
    path = Path(path)
    window = settings.window or classifier.card.window
    if window <= 0 or settings.hop <= 0 or settings.smooth < 1:
        raise UsageError(f"window ({window}) and hop ({settings.hop}) must be positive, smooth at least 1")
    features, frame_period = classifier.card.reading_settings, _frame_period(path)
    plan = _Plan.of(window, settings.hop, features, frame_period)
    engine = _Timeline(classifier, plan, path)
    rows = engine.run(progress)
    starts = np.array([start for start, _ in rows])
    classifier.check_recording(path, engine.duration, plan.window)
    if rows:
        probabilities = classifier.probabilities(np.stack([output for _, output in rows]))
    else:  # shorter than one window: the whole file is the one stretch
        window, starts = engine.duration, np.zeros(1)
        whole = _Plan.of(window, settings.hop, features, frame_period)
        probabilities = _whole_file(classifier, path, whole)[None]
    probabilities = smoothed(probabilities, settings.smooth)
    labels = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
    if rows:
        labels = [empty or label for label, empty in zip(labels, engine.empty)]
    table = pd.DataFrame({"start_s": starts.round(3), "end_s": (starts + window).round(3), "label": labels})
    for index, label in enumerate(classifier.labels):
        table[label] = probabilities[:, index].round(6)
    return table


def smoothed(probabilities: np.ndarray, smooth: int) -> np.ndarray:
    """Each label's probability averaged over `smooth` windows centred on each (the ends repeated)."""
    if smooth <= 1:
        return probabilities
    kernel = np.ones(smooth) / smooth
    padded = np.pad(probabilities, ((smooth // 2, (smooth - 1) // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(probabilities.shape[1])],
                    axis=1)


def streams_of(path: str | Path) -> set[str]:
    """Which of 'video' and 'audio' a file has (an unreadable file has neither: judging it says why)."""
    try:
        with av.open(str(path)) as container:
            return {kind for kind, streams in (("video", container.streams.video), ("audio", container.streams.audio))
                    if streams}
    except (av.FFmpegError, OSError):
        return set()


def _whole_file(classifier, path: Path, plan: _Plan) -> np.ndarray:
    """The probabilities of a file shorter than a window, judged whole: by predict when the model
    sees (a clip is what predict judges), else as one window of its length."""
    if "video" in classifier.card.modalities:
        result = classifier.predict(path)
        if not result.ok:
            raise MediaError(result.error)
        return np.array([result.probabilities[label] for label in classifier.labels])
    return classifier.probabilities(_Timeline(classifier, plan, path).run(False)[0][1][None])[0]


def _frame_period(path: Path) -> float:
    """Seconds between video frames from the stream's stated rate (0 without video)."""
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
    except (av.FFmpegError, OSError):
        return 0.0
    return 1 / float(rate) if rate else 0.0


def share_of_time(table: pd.DataFrame) -> pd.Series:
    """The fraction of windows whose top label is each label, largest first."""
    return table["label"].value_counts(normalize=True)


def write_timeline(table: pd.DataFrame, out_dir: str | Path, details: dict) -> dict[str, Path]:
    """timeline.csv, timeline.json (the rows and the settings) and timeline.png; their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: out_dir / f"timeline.{name}" for name in ("csv", "json", "png")}
    write_csv(table, outputs["csv"])
    share = {label: round(float(value), 4) for label, value in share_of_time(table).items()}
    document = {**details, "share_of_time": share, "windows": table.to_dict(orient="records")}
    outputs["json"].write_text(json.dumps(document, indent=2) + "\n")
    plot_timeline(table, outputs["png"], title=f"{details.get('video', '')} ({details.get('model', '')})")
    return outputs


def plot_timeline(table: pd.DataFrame, path: Path, title: str = "") -> None:
    """Each label's probability over time (window centres), and the top label as a coloured band."""
    labels = [column for column in table.columns if column not in ("start_s", "end_s", "label")]
    centres = (table["start_s"] + table["end_s"]) / 2
    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    lines, band = figure.subplots(2, 1, sharex=True, height_ratios=[5, 1])
    width = 1.4 if len(table) < 600 else 0.6  # an hour has thousands of windows
    for index, label in enumerate(labels):
        lines.plot(centres, table[label], color=f"C{index}", linewidth=width, label=label)
    lines.set_ylabel("probability")
    lines.set_ylim(0, 1)
    lines.grid(alpha=0.3)
    lines.legend(ncol=len(labels), fontsize=8, loc="upper right")
    lines.set_title(title, fontsize=10)
    # windows with nothing to judge (nobody speaking, no face) stay blank in the band
    top = np.ma.masked_less([labels.index(label) if label in labels else -1 for label in table["label"]], 0)
    colours = ListedColormap([f"C{index}" for index in range(len(labels))])
    half_hop = (table["start_s"].iloc[1] - table["start_s"].iloc[0]) / 2 if len(table) > 1 else 0.25
    band.imshow(top[np.newaxis], aspect="auto", cmap=colours, vmin=-0.5, vmax=len(labels) - 0.5,
                interpolation="nearest", extent=(centres.iloc[0] - half_hop, centres.iloc[-1] + half_hop, 0, 1))
    band.set_yticks([])
    band.set_ylabel("top", rotation=0, ha="right", va="center")
    band.set_xlabel("time (s)")
    figure.savefig(path)
