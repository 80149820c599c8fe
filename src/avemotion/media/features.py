"""Per-clip features: RGB frames spread over the whole clip, and the log-Mel spectrogram or the
waveform of its voice, by input name.

Pure functions of a file and a :class:`~avemotion.media.inputs.FeatureSettings` (whose constants, 16 kHz,
64 Mel bins, 1024-sample FFT window, 8 frames, 224 px, sit with the input names in
:mod:`avemotion.media.inputs`); preprocessing (cached, over a dataset) and prediction (one new clip) both
call :func:`extract_features`, so the two can never drift apart. Every file is read by one
streaming decoder, :class:`MediaReader`, which the timeline shares, and faces are cropped by one
rule, :class:`FaceBoxes`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import PIL.Image
import soxr
from av.video.reformatter import VideoReformatter

from avemotion.datasets.listing import is_image
from avemotion.errors import AvemotionError
from avemotion.media.inputs import (
    DEFAULT_INPUTS,
    FRAMES,
    MEL,
    SAMPLE_RATE,
    WAVEFORM,
    FeatureSettings,
    blank_input,
    fit_waveform,
    inputs_present,
    missing_input,
    modalities_of,
)

# Decoded frames held at once while looking for the last one; longer clips are thinned evenly so
# memory stays bounded (clips up to this many frames are sampled exactly). Past MAX_RAW_BYTES of raw
# frames, each is converted to the model's size as it is decoded (for face cropping, to at most
# MAX_HELD_SIDE pixels a side), so no resolution decides the memory used.
MAX_HELD_FRAMES = 256
MAX_HELD_SIDE = 640
MAX_RAW_BYTES = 64 << 20  # raw frames may wait unconverted up to this (a clip's worth at 480x360)
# Limits checked before (and while) decoding, so that no input's size decides the memory used.
MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD; a larger video is refused
AUDIO_RATES = (1_000, 768_000)  # Hz: a stated or decoded rate outside them is refused
# A clip's voice is read up to this long: `predict` judges the first minute of a longer recording
# (the spectrogram of two hours would take gigabytes, and squeezed into one spectrogram of
# mel_frames steps a long recording says little); `timeline` streams any length.
MAX_VOICE_SECONDS = 60.0
# A file whose decoded media ends before this fraction of the length its header states is truncated.
TRUNCATED_FRACTION = 0.8
FACE_MARGIN = 0.25  # fraction of the face box added on every side before the square crop


class MediaError(AvemotionError, ValueError):
    """A clip that cannot give features; the message names the file and the problem."""


@dataclass
class ClipFeatures:
    """The arrays of one clip by input name (see :mod:`avemotion.media.inputs`), in the cache's and the
    model's form."""

    inputs: dict[str, np.ndarray]
    face_found: bool | None = None  # None when face cropping was off, or without frames

    def __getitem__(self, name: str) -> np.ndarray:
        return self.inputs[name]

    def completed(self, names: tuple[str, ...], settings: FeatureSettings) -> ClipFeatures:
        """These features with every input of `names` they lack stood in for (an empty array)."""
        inputs = {name: self.inputs.get(name, missing_input(name, settings)) for name in names}
        return ClipFeatures(inputs, self.face_found)


def extract_features(
    media_path: str | Path, settings: FeatureSettings, audio_path: str | Path | None = None,
    inputs: tuple[str, ...] = DEFAULT_INPUTS,
) -> ClipFeatures:
    """The inputs `inputs` of one clip: frames from media_path, the voice (its spectrogram or
    waveform) from audio_path when given, else from media_path's own track. One file read once
    where it holds both."""
    media_path = Path(media_path)
    if is_image(media_path):
        return _image_features(media_path, settings, inputs)
    want_video = FRAMES in inputs
    want_audio = "audio" in modalities_of(inputs)
    voice = Path(audio_path) if audio_path is not None else media_path
    hold = functools.partial(_held_image, settings=settings)
    if want_video and voice == media_path:
        video_frames, waveform, rate = _decode(media_path, hold, want_audio=want_audio)
    else:
        video_frames = _decode(media_path, hold, want_audio=False)[0] if want_video else None
        if want_audio:
            _, waveform, rate = _decode(voice, None, want_audio=True)
    arrays, face_found = {}, None
    if want_video:
        arrays[FRAMES], face_found = _frames_to_array(video_frames, settings)
    if want_audio:
        arrays.update(voice_inputs(resample(waveform, rate, settings.sample_rate), settings, inputs))
    return ClipFeatures(arrays, face_found)


def _image_features(path: Path, settings: FeatureSettings, inputs: tuple[str, ...]) -> ClipFeatures:
    """A still image's inputs: one frame (face-cropped if asked) and no voice. An image in which
    no face is found is taken whole, as a face already cropped (a face corpus's images are), never
    refused as faceless: face_found is then None."""
    if FRAMES not in inputs:
        raise MediaError(f"{path}: a still image has no voice for a model that reads only audio")
    frames, face_found = model_frames([read_image(path)], settings)
    return ClipFeatures({FRAMES: frames}, face_found or None)


def read_image(path: str | Path) -> np.ndarray:
    """A still image as RGB uint8 (height, width, 3), grayscale replicated to three channels; its
    size is read from the header and checked before the pixels are decoded."""
    path = Path(path)
    check_readable(path)
    try:
        with PIL.Image.open(path) as image:
            check_frame_size(path, *image.size, kind="image")
            return np.asarray(image.convert("RGB"))
    except (PIL.UnidentifiedImageError, OSError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise MediaError(f"{path}: not a readable image ({error})") from error


def voice_inputs(samples: np.ndarray, settings: FeatureSettings, inputs: tuple[str, ...]) -> dict:
    """The audio inputs among `inputs` from a voice already at the settings' rate."""
    arrays = {}
    if MEL in inputs:
        arrays[MEL] = log_mel(samples, settings)[np.newaxis].astype(np.float16)
    if WAVEFORM in inputs:
        arrays[WAVEFORM] = fit_waveform(samples, settings)
    return arrays


def features_from_capture(images: list[np.ndarray], waveform: np.ndarray | None, rate: int,
                          settings: FeatureSettings, inputs: tuple[str, ...] = DEFAULT_INPUTS) -> ClipFeatures:
    """The inputs `inputs` of a window captured live (a camera's RGB images spread over it, a
    microphone's mono samples at `rate`), made as a clip's are: face crop if asked, square resize,
    the voice at 16 kHz. An input the capture lacks is zeros, for a model that does not read it."""
    arrays, face_found = {}, None
    if FRAMES in inputs:
        if images:
            arrays[FRAMES], face_found = model_frames(images, settings)
        else:
            arrays[FRAMES] = blank_input(FRAMES, settings)
    audio = inputs_present(inputs, "audio")
    if waveform is not None and len(waveform):
        arrays.update(voice_inputs(resample(waveform.astype(np.float32), rate, settings.sample_rate),
                                   settings, audio))
    else:
        arrays.update({name: blank_input(name, settings) for name in audio})
    return ClipFeatures(arrays, face_found)


def sample_frames(video_path: str | Path, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """The clip's frames at equally spaced positions, first to last: uint8 (n, 3, size, size)."""
    video_frames, _, _ = _decode(Path(video_path), functools.partial(_held_image, settings=settings),
                                 want_audio=False)
    return _frames_to_array(video_frames, settings)[0]


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A file's audio track as mono float32 at sample_rate."""
    _, waveform, rate = _decode(Path(path), None, want_audio=True)
    return resample(waveform, rate, sample_rate)


def typical_duration(paths: list[str | Path], sample: int = 64) -> float | None:
    """The median length in seconds of up to `sample` files evenly spread over `paths`, from their
    containers' headers (enough for a typical length; None when none can be read)."""
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int)]
    durations = []
    for path in chosen:
        try:
            with av.open(str(path)) as container:
                if container.duration:
                    durations.append(container.duration / av.time_base)
        except (av.FFmpegError, OSError):
            continue
    return float(np.median(durations)) if durations else None


def resample(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample mono audio with soxr (high quality); a no-op at the target rate."""
    if rate == target_rate:
        return waveform.astype(np.float32, copy=False)
    return soxr.resample(waveform, rate, target_rate).astype(np.float32, copy=False)


def log_mel(waveform: np.ndarray, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Mel power spectrogram in dB, resized bilinearly to (n_mels, mel_frames): float32."""
    decibels = mel_decibels(waveform, settings)
    # cv2 sizes are (width, height): time becomes mel_frames wide, Mel bins stay n_mels high.
    size = (settings.mel_frames, settings.n_mels)
    return cv2.resize(decibels, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)


# The spectrogram below is librosa's `power_to_db(melspectrogram(...))` with its defaults (centred
# periodic-Hann STFT, zero padding, Slaney Mel scale and area normalisation), written out in NumPy:
# librosa's first use costs ~1.4 s per process (scipy.signal and numba imports, JIT compiles),
# which every preprocessing worker and every one-clip `predict` would pay. The tests hold it to
# librosa's own output.


def mel_decibels(waveform: np.ndarray, settings: FeatureSettings = FeatureSettings()) -> np.ndarray:
    """Mel power spectrogram in dB, one column per hop: float32 (n_mels, 1 + len // hop_length)."""
    power = _power_spectrogram(waveform.astype(np.float32, copy=False), settings.n_fft,
                               settings.hop_length)
    mel = mel_filterbank(settings.sample_rate, settings.n_fft, settings.n_mels) @ power
    decibels = 10.0 * np.log10(np.maximum(mel, 1e-10))  # ref 1.0, amin 1e-10
    return np.maximum(decibels, decibels.max() - settings.top_db).astype(np.float32)


def _power_spectrogram(waveform: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """|STFT|² of windows centred every hop_length samples: (1 + n_fft // 2, frames)."""
    padded = np.pad(waveform, n_fft // 2)
    if len(padded) < n_fft:  # shorter than one window: still one frame
        padded = np.pad(padded, (0, n_fft - len(padded)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    spectrum = np.fft.rfft(windows * _periodic_hann(n_fft), axis=1)
    return (spectrum.real**2 + spectrum.imag**2).T


@functools.lru_cache(maxsize=8)
def _periodic_hann(length: int) -> np.ndarray:
    """The Hann window of spectral analysis (periodic: its period is length, not length - 1)."""
    return _read_only((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32))


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Triangular filters on the Slaney Mel scale from 0 Hz to Nyquist, each of unit area in Hz:
    float32 (n_mels, 1 + n_fft // 2)."""
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges_hz = mel_edges_hz(sample_rate, n_mels)
    widths = np.diff(edges_hz)
    rising = (bin_hz[np.newaxis] - edges_hz[:-2, np.newaxis]) / widths[:-1, np.newaxis]
    falling = (edges_hz[2:, np.newaxis] - bin_hz[np.newaxis]) / widths[1:, np.newaxis]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    unit_area = 2.0 / (edges_hz[2:] - edges_hz[:-2])
    return _read_only((triangles * unit_area[:, np.newaxis]).astype(np.float32))


def mel_edges_hz(sample_rate: int, n_mels: int) -> np.ndarray:
    """The n_mels + 2 frequencies in Hz, evenly spaced on the Slaney Mel scale from 0 Hz to Nyquist,
    that the filters span: filter i rises from edge i, peaks at edge i + 1 (its centre) and falls to
    edge i + 2."""
    return _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2), n_mels + 2))


def _read_only(array: np.ndarray) -> np.ndarray:
    """A cached array that callers share, protected against being changed in place."""
    array.setflags(write=False)
    return array


# The Slaney Mel scale: linear below 1 kHz (15 Mel at 1 kHz), logarithmic above it (27 Mel for
# each factor of 6.4 in frequency).
_LINEAR_HZ_PER_MEL = 200.0 / 3
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    """One frequency in Hz on the Slaney Mel scale."""
    if hz < _BREAK_HZ:
        return hz / _LINEAR_HZ_PER_MEL
    return _BREAK_MEL + np.log(hz / _BREAK_HZ) / _LOG_STEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Slaney Mel values back to Hz."""
    linear = mels * _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (mels - _BREAK_MEL))
    return np.where(mels >= _BREAK_MEL, logarithmic, linear)


def _decode(
    path: Path, hold: Callable[[av.VideoFrame], np.ndarray] | None, want_audio: bool
) -> tuple[list[tuple[int, np.ndarray | av.VideoFrame]], np.ndarray | None, int]:
    """One pass over a file with a :class:`MediaReader`: spread-out video frames (raw, or made by
    `hold` once the raw ones held pass MAX_RAW_BYTES; None: no video wanted), and the mono
    waveform (its first MAX_VOICE_SECONDS) with its rate."""
    held = _SpreadFrames(MAX_HELD_FRAMES, hold, _raw_bytes, MAX_RAW_BYTES)
    voice = _Voice()
    with MediaReader(path, video=hold is not None, audio=want_audio) as media:
        for item in media.decoded():
            if isinstance(item, av.VideoFrame):
                held.add(item)
            elif not voice.full:  # past the first MAX_VOICE_SECONDS, audio is only checked
                voice.add(media.samples(item), media.audio_rate)
            elif hold is None:
                break  # nothing more to read
        else:
            media.check_complete()
        media.check_decoded()
    waveform = voice.samples() if want_audio else None
    return held.spread(), waveform, media.audio_rate


class MediaReader:
    """One sequential pass over a media file's first video track and first audio track: the one
    decoder behind predict, preprocessing and the timeline.

    Opened with ``with``, it checks what the header states before decoding (a file to read, the
    tracks asked for, frames up to 8K, an audio rate a recording has), and again everything that
    decodes (a header can lie): each frame's size, one audio rate throughout, finite samples.
    :meth:`decoded` yields each video and audio frame as it decodes, and :meth:`samples` makes an
    audio frame the mono float32 samples at :attr:`audio_rate` it holds (a reader that keeps only
    part of the audio converts only that); FFmpeg's errors become a MediaError naming the file.
    `reads` ends the message for a missing track (what the model that needs it reads)."""

    def __init__(self, path: str | Path, video: bool, audio: bool, reads: str = "") -> None:
        self.path = Path(path)
        self.want_video, self.want_audio, self.reads = video, audio, reads
        self.video_frames = 0
        self.audio_samples = 0
        self.audio_rate = 0  # Hz, stated by the header or known from the first audio frame
        self.decoded_until = 0.0  # seconds

    def __enter__(self) -> MediaReader:  # noqa: PYI034 (typing.Self is Python 3.11's; 3.10 is supported)
        check_readable(self.path)
        try:
            self.container = av.open(str(self.path))
        except av.FFmpegError as error:
            raise MediaError(f"{self.path}: could not be decoded ({error})") from error
        try:
            self._open_tracks()
        except BaseException:
            self.container.close()
            raise
        return self

    def _open_tracks(self) -> None:
        self.video = self._track(self.container.streams.video, "video") if self.want_video else None
        self.audio = self._track(self.container.streams.audio, "audio") if self.want_audio else None
        if self.video is not None:
            check_frame_size(self.path, self.video.codec_context.width, self.video.codec_context.height)
        if self.audio is not None and self.audio.codec_context.sample_rate:  # 0: known once decoded
            self.audio_rate = self.audio.codec_context.sample_rate
            check_rate(self.path, self.audio_rate)

    def __exit__(self, kind, error, traceback) -> None:
        self.container.close()
        if isinstance(error, av.FFmpegError):
            raise MediaError(f"{self.path}: could not be decoded ({error})") from error

    def _track(self, streams, kind: str):
        """The first track of a kind (whatever comes before it in the file), or a clear MediaError."""
        if not streams:
            raise MediaError(f"{self.path}: no {kind} track" + (f", and {self.reads}" if self.reads else ""))
        return streams[0]

    @property
    def stated_seconds(self) -> float | None:
        """The length the container's header states, if it states one."""
        duration = self.container.duration
        return duration / av.time_base if duration else None

    @property
    def frame_rate(self) -> float:
        """The video track's stated frame rate (0 when unknown)."""
        return float(self.video.average_rate or 0) if self.video is not None else 0.0

    def decoded(self) -> Iterator[av.VideoFrame | av.AudioFrame]:
        """Every video and audio frame of the tracks asked for, in decoding order, each checked;
        `frame.time` / :attr:`decoded_until` say where the stream is."""
        tracks = [track for track in (self.video, self.audio) if track is not None]
        for packet in self.container.demux(*tracks):
            for frame in packet.decode():
                self.decoded_until = max(self.decoded_until, frame.time or 0.0)
                if isinstance(frame, av.VideoFrame):
                    check_frame_size(self.path, frame.width, frame.height)  # trust what decodes
                    self.video_frames += 1
                else:
                    self._check_audio(frame)
                yield frame

    def _check_audio(self, frame: av.AudioFrame) -> None:
        if self.audio_rate == 0:
            self.audio_rate = frame.sample_rate
            check_rate(self.path, self.audio_rate)
        elif frame.sample_rate != self.audio_rate:
            raise MediaError(f"{self.path}: its audio changes rate ({self.audio_rate} Hz, then "
                             f"{frame.sample_rate} Hz)")
        self.audio_samples += frame.samples

    def samples(self, frame: av.AudioFrame) -> np.ndarray:
        """An audio frame's mono float32 samples; samples that are not numbers are refused."""
        samples = mono_samples(frame)
        if not np.isfinite(samples).all():
            raise MediaError(f"{self.path}: its audio holds samples that are not finite numbers "
                             "(NaN or infinite)")
        return samples

    def check_complete(self) -> None:
        """A file that decodes cleanly but stops well short of its stated length is truncated."""
        stated = self.stated_seconds
        if stated and self.decoded_until < TRUNCATED_FRACTION * stated - 0.1:
            raise MediaError(f"{self.path}: truncated (decoded {self.decoded_until:.2f} s of {stated:.2f} s)")

    def check_decoded(self) -> None:
        """Refuse a file whose tracks asked for gave nothing."""
        if self.want_video and self.video_frames == 0:
            raise MediaError(f"{self.path}: no video frame could be decoded")
        if self.want_audio and self.audio_samples == 0:
            raise MediaError(f"{self.path}: no audio could be decoded")


class _Voice:
    """A file's mono samples as they decode, up to MAX_VOICE_SECONDS."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.length = 0
        self.rate = 0

    @property
    def full(self) -> bool:
        return self.rate > 0 and self.length >= MAX_VOICE_SECONDS * self.rate

    def add(self, samples: np.ndarray, rate: int) -> None:
        self.rate = rate
        if not self.full:
            chunk = samples[: round(MAX_VOICE_SECONDS * rate) - self.length]
            self.chunks.append(chunk)
            self.length += len(chunk)

    def samples(self) -> np.ndarray:
        return np.concatenate(self.chunks).astype(np.float32, copy=False)


def check_frame_size(path: Path, width: int, height: int, kind: str = "video") -> None:
    """Refuse a frame or image larger than 8K before converting it."""
    if width * height > MAX_FRAME_PIXELS:
        raise MediaError(f"{path}: {width}x{height} {kind} is larger than this tool reads "
                         f"({MAX_FRAME_PIXELS / 1e6:.0f} megapixels a frame, 8K)")


def check_rate(path: Path, rate: int) -> None:
    """Refuse an audio rate no recording has (a header claiming 1 Hz would make resampling allocate
    gigabytes)."""
    if not AUDIO_RATES[0] <= rate <= AUDIO_RATES[1]:
        raise MediaError(f"{path}: audio at {rate} Hz is not a sample rate this tool reads "
                         f"({AUDIO_RATES[0]}-{AUDIO_RATES[1]} Hz)")


def check_readable(path: Path) -> None:
    """Turn a missing, unreadable or empty file into a clear MediaError before decoding."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise MediaError(f"{path}: cannot be read ({error.strerror})") from error
    if size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")


def mono_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded audio frame's channels averaged into float32 mono samples in [-1, 1]."""
    samples = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: (1, samples * channels), channels interleaved
        samples = samples.reshape(-1, len(frame.layout.channels)).T
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    return samples.astype(np.float32, copy=False).mean(axis=0)


class _SpreadFrames:
    """Holds at most `capacity` decoded frames spread evenly over everything seen, plus the last.

    Frames wait raw (converting only the few finally chosen is fastest) while the raw frames held
    stay under `budget` bytes by `size`; past it every held frame is converted by `convert` at once,
    and the kept ones after it too, so memory stays bounded whatever the resolution."""

    def __init__(self, capacity: int, convert: Callable = lambda frame: frame,
                 size: Callable = lambda frame: 0, budget: int = 0) -> None:
        self.capacity, self.convert, self.size, self.budget = capacity, convert, size, budget
        self.stride = 1
        self.held: list[tuple[int, object, bool]] = []  # (index, frame, still raw)
        self.raw_bytes = 0
        self.last: tuple[int, object] | None = None  # raw
        self.count = 0

    def add(self, frame) -> None:
        """See one more frame in decoding order."""
        index = self.count
        self.count += 1
        self.last = (index, frame)
        if index % self.stride:
            return
        self.held.append((index, frame, True))
        self.raw_bytes += self.size(frame)
        if len(self.held) > self.capacity:
            self.stride *= 2
            self.held = [item for item in self.held if item[0] % self.stride == 0]
            self.raw_bytes = sum(self.size(frame) for _, frame, raw in self.held if raw)
        if self.raw_bytes > self.budget:
            self.held = [(index, self.convert(frame) if raw else frame, False) for index, frame, raw in self.held]
            self.raw_bytes = 0

    def spread(self) -> list[tuple[int, object]]:
        """The held frames (raw or converted) with their indices, the last decoded frame always
        included; whoever picks among them converts the raw ones it keeps."""
        spread = [(index, frame) for index, frame, _ in self.held]
        if self.last is not None and spread[-1][0] != self.last[0]:
            spread.append(self.last)
        return spread


# One converter per thread: it keeps its scaler between frames instead of building one per frame,
# and it must not be shared, since a converter used from two threads at once crashes the process
# (a server predicts several uploads at once).
_per_thread = threading.local()  # this thread's frame converter and face detector


def _converter() -> VideoReformatter:
    """This thread's frame converter."""
    if not hasattr(_per_thread, "reformatter"):
        _per_thread.reformatter = VideoReformatter()
    return _per_thread.reformatter


def frame_positions(frame_count: int, n_frames: int) -> np.ndarray:
    """Indices of n_frames equally spaced frames from the first (0) to the last (frame_count - 1)."""
    return np.linspace(0, frame_count - 1, n_frames).round().astype(int)


def _raw_bytes(frame: av.VideoFrame) -> int:
    """About what a decoded frame holds: its planes' bytes."""
    return sum(plane.buffer_size for plane in frame.planes)


def _held_image(frame: av.VideoFrame, settings: FeatureSettings) -> np.ndarray:
    """A decoded frame as it is held: RGB at the model's size, or for face cropping at most
    MAX_HELD_SIDE pixels a side (converting and shrinking in one scaler pass, three times faster
    than converting at full size)."""
    if not settings.face_crop:
        return to_rgb(frame, settings.frame_size)
    scale = min(1.0, MAX_HELD_SIDE / max(frame.width, frame.height))
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    return _converter().reformat(frame, width=width, height=height, format="rgb24",
                                 interpolation="AREA").to_ndarray()


def _frames_to_array(
    held: list[tuple[int, np.ndarray | av.VideoFrame]], settings: FeatureSettings
) -> tuple[np.ndarray, bool | None]:
    """Pick the sampled frames from those held (converting those still raw), crop faces if asked,
    resize."""
    indices = np.array([index for index, _ in held])
    wanted = frame_positions(indices[-1] + 1, settings.n_frames)
    chosen = [held[i][1] for i in np.abs(indices[np.newaxis] - wanted[:, np.newaxis]).argmin(axis=1)]
    chosen = [_held_image(frame, settings) if isinstance(frame, av.VideoFrame) else frame for frame in chosen]
    if settings.face_crop:
        return model_frames(chosen, settings)
    return as_read(np.stack(chosen).transpose(0, 3, 1, 2), settings), None


def model_frames(images: list[np.ndarray], settings: FeatureSettings) -> tuple[np.ndarray, bool | None]:
    """RGB images of any size as the model reads them: face-cropped if the settings ask, squeezed
    to frame_size, uint8 (n, 3, size, size); and whether a face was found (None without cropping)."""
    face_found = None
    if settings.face_crop:
        images, face_found = crop_faces(images)
    squares = [square(image, settings.frame_size) for image in images]
    return as_read(np.stack(squares).transpose(0, 3, 1, 2), settings), face_found


# ITU-R BT.601 luma: how grayscale images such as FER2013's are made from colour ones
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def as_read(frames: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Frames (..., 3, H, W) uint8 in the colours the settings read: as they are, or in grayscale
    (their luma in all three channels); a contiguous copy."""
    if not settings.grayscale:
        return np.ascontiguousarray(frames)
    luma = np.tensordot(LUMA_WEIGHTS, np.moveaxis(frames, -3, 0).astype(np.float32), axes=1)
    gray = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    return np.repeat(np.expand_dims(gray, -3), 3, axis=-3)


def square(image: np.ndarray, size: int) -> np.ndarray:
    """An RGB image squeezed to size x size: area averaging to shrink, bilinear to enlarge (a
    48-pixel face, or a small face crop, to a backbone's size), where area averaging would repeat
    pixels in blocks."""
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def to_rgb(frame: av.VideoFrame, size: int | None = None) -> np.ndarray:
    """A decoded frame as an RGB uint8 array, at full size or squeezed to size x size."""
    width = height = size
    rgb = _converter().reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA")
    return rgb.to_ndarray()


def _detector() -> cv2.CascadeClassifier:
    """OpenCV's bundled frontal-face Haar cascade, loaded once per thread (a cascade keeps scratch
    state while detecting, so threads do not share one)."""
    if not hasattr(_per_thread, "face_detector"):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        _per_thread.face_detector = cv2.CascadeClassifier(str(path))
    return _per_thread.face_detector


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face in an RGB image as (x, y, width, height), or None."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    min_side = max(24, min(gray.shape) // 8)
    faces = _detector().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    return tuple(int(v) for v in max(faces, key=lambda box: box[2] * box[3]))


def crop_faces(images: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """Crop every frame of a clip to a square around the clip's face (:class:`FaceBoxes` over
    all its frames); the full frames when none is found."""
    boxes = FaceBoxes()
    found = [boxes.see(image) for image in images]
    return [boxes.crop(image) for image in images], any(found)


class FaceBoxes:
    """Where to crop a face: the median of the face boxes detected in the frames seen, the latest
    `keep` of them (all of a clip's; about a window's in a timeline), so a frame where the
    detector misses still gets the face, and the crop does not jitter from frame to frame. A clip
    sees all its frames before cropping them; a timeline crops each frame as it arrives."""

    def __init__(self, keep: int | None = None) -> None:
        self.keep = keep
        self.boxes: list[tuple[int, int, int, int]] = []

    def see(self, image: np.ndarray) -> bool:
        """Look for a face in an RGB image; whether one was found."""
        box = detect_face(image)
        if box is not None:
            self.boxes.append(box)
            if self.keep is not None:
                self.boxes = self.boxes[-self.keep :]
        return box is not None

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The square, with a margin, around the median box; the whole image before any face."""
        if not self.boxes:
            return image
        x, y, width, height = np.median(np.array(self.boxes), axis=0)
        side = max(width, height) * (1 + 2 * FACE_MARGIN)
        return _square_crop(image, x + width / 2, y + height / 2, side)


def _square_crop(image: np.ndarray, centre_x: float, centre_y: float, side: float) -> np.ndarray:
    """A square of the given side around a centre, shifted (and if need be shrunk) to fit the image."""
    image_height, image_width = image.shape[:2]
    side = int(min(side, image_width, image_height))
    left = int(np.clip(centre_x - side / 2, 0, image_width - side))
    top = int(np.clip(centre_y - side / 2, 0, image_height - side))
    return image[top : top + side, left : left + side]
