"""A SYNTHETIC corpus shaped like CREMA-D, to measure full-size runs without the real dataset.

Every clip is real, playable media with CREMA-D's names and layout: a drawn face whose mouth, brows
and eyes follow the emotion and its intensity (with head motion, noise and a per-actor look), and a
voice whose pitch contour, loudness and syllable rate follow the emotion (with a per-actor pitch and
noise). Neither modality alone determines the label: anger and disgust share one face, and neutral
and sad share one voice, so a fused model can beat both of its unimodal ablations. Nothing here is
CREMA-D data, and every file says so in its folder's SYNTHETIC.txt.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import soxr
from tqdm import tqdm

from avemotion.datasets.cremad import EMOTIONS, STATEMENTS
from avemotion.errors import UsageError
from avemotion.settings import setting

FPS = 30
SECONDS = 2.3
FRAME_SIZE = (160, 120)  # width, height in pixels
AUDIO_RATE = 16_000  # Hz

# Face per emotion: mouth curve (+ smile, - frown), mouth opening, brow tilt (+ raised inner end),
# eye opening. Anger and disgust are drawn alike on purpose: video alone cannot separate them.
FACES = {
    "ANG": (-0.7, 0.35, -0.9, 0.75),
    "DIS": (-0.7, 0.35, -0.9, 0.75),
    "FEA": (-0.2, 0.9, 0.9, 1.35),
    "HAP": (0.95, 0.45, 0.2, 0.85),
    "NEU": (0.0, 0.1, 0.0, 1.0),
    "SAD": (-0.9, 0.05, 0.8, 0.55),
}
# Voice per emotion: pitch factor, pitch slope over the clip, loudness, syllables per second.
# Neutral and sad sound alike on purpose: audio alone cannot separate them.
VOICES = {
    "ANG": (1.35, -0.1, 1.0, 5.5),
    "DIS": (0.85, -0.35, 0.55, 2.8),
    "FEA": (1.6, 0.45, 0.7, 6.5),
    "HAP": (1.45, 0.35, 0.85, 4.8),
    "NEU": (1.0, 0.0, 0.45, 3.8),
    "SAD": (1.0, 0.0, 0.45, 3.8),
}
# How far an intensity moves face and voice from neutral.
INTENSITY_SCALE = {"LO": 0.55, "MD": 0.75, "HI": 1.0, "XX": 0.85}
NEUTRAL_FACE = FACES["NEU"]
NEUTRAL_VOICE = VOICES["NEU"]


@dataclass(frozen=True)
class Actor:
    """What stays the same across one synthetic actor's clips."""

    actor_id: int
    gender: str  # 'male' or 'female'
    age: int
    skin: tuple[int, int, int]  # RGB
    face_scale: float
    pitch: float  # Hz


def make_actors(count: int, seed: int) -> list[Actor]:
    """`count` actors, about 53 % male as in CREMA-D, each with a look and a voice of their own."""
    rng = np.random.default_rng(seed)
    actors = []
    for index in range(count):
        gender = "male" if rng.random() < 48 / 91 else "female"
        base_pitch = 120.0 if gender == "male" else 210.0
        skin = tuple(int(v) for v in rng.integers([120, 80, 60], [240, 200, 170]))
        actors.append(Actor(1001 + index, gender, int(rng.integers(20, 75)), skin,
                            float(rng.uniform(0.85, 1.15)), float(base_pitch * rng.uniform(0.85, 1.15))))
    return actors


def design(actors: list[Actor], sentences: int, names_file: Path | None = None) -> list[tuple[Actor, str]]:
    """(actor, clip name) pairs: CREMA-D's own design from SentenceFilenames.csv when given, else
    its pattern: IEO spoken neutral and at three intensities of each other emotion, the other
    sentences once per emotion at unspecified intensity."""
    by_id = {actor.actor_id: actor for actor in actors}
    if names_file is not None:
        with open(names_file, newline="") as handle:
            names = [row["Filename"] for row in csv.DictReader(handle)]
        return [(by_id[int(n[:4])], n) for n in names if int(n[:4]) in by_id]
    pairs = []
    for actor in actors:
        for statement in STATEMENTS[:sentences]:
            for emotion in EMOTIONS:
                levels = ("LO", "MD", "HI") if statement == "IEO" and emotion != "NEU" else ("XX",)
                pairs += [(actor, f"{actor.actor_id}_{statement}_{emotion}_{level}") for level in levels]
    return pairs


def _blend(neutral: tuple, target: tuple, amount: float) -> np.ndarray:
    return np.array(neutral) + amount * (np.array(target) - np.array(neutral))


def render_frames(actor: Actor, emotion: str, intensity: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The clip's RGB frames: a face expressing the emotion, moving a little, over noise."""
    width, height = FRAME_SIZE
    curve, opening, brow, eye = _blend(NEUTRAL_FACE, FACES[emotion], INTENSITY_SCALE[intensity])
    phase, sway = rng.uniform(0, 2 * np.pi), rng.uniform(2, 6)
    frames = []
    for index in range(int(FPS * SECONDS)):
        t = index / FPS
        image = rng.integers(30, 90, (height, width, 3), dtype=np.uint8)
        cx = int(width / 2 + sway * np.sin(2 * np.pi * 0.7 * t + phase))
        cy = int(height / 2 + 0.5 * sway * np.cos(2 * np.pi * 0.5 * t + phase))
        talk = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)  # the mouth moves while speaking
        _draw_face(image, (cx, cy), actor, curve, opening * (0.6 + 0.4 * talk), brow, eye)
        frames.append(image)
    return frames


def _draw_face(image, centre, actor: Actor, curve, opening, brow, eye) -> None:
    """Head, eyes, brows and mouth with OpenCV's drawing functions, bold enough to survive
    shrinking to 64 pixels."""
    cx, cy = centre
    s = actor.face_scale
    ink = (20, 20, 20)
    cv2.ellipse(image, (cx, cy), (int(44 * s), int(54 * s)), 0, 0, 360, actor.skin, -1)
    for side in (-1, 1):
        ex, ey = cx + side * int(17 * s), cy - int(12 * s)
        cv2.ellipse(image, (ex, ey), (int(9 * s), max(1, int(6 * s * eye))), 0, 0, 360,
                    (250, 250, 250), -1)
        cv2.circle(image, (ex, ey), max(2, int(3 * s)), ink, -1)
        inner, outer = ex - side * int(10 * s), ex + side * int(10 * s)
        lift = int(8 * s * brow)
        cv2.line(image, (inner, ey - int(13 * s) - lift), (outer, ey - int(13 * s) + lift), ink, 4)
    mouth_y = cy + int(25 * s)
    half_width = int(20 * s)
    bend = int(11 * s * curve)
    points = np.array([[cx - half_width, mouth_y - bend], [cx, mouth_y + bend],
                       [cx + half_width, mouth_y - bend]], np.int32)
    cv2.polylines(image, [points], False, ink, 4)
    if opening > 0.15:
        cv2.ellipse(image, (cx, mouth_y + bend // 2), (int(11 * s), max(2, int(10 * s * opening))),
                    0, 0, 360, (90, 20, 30), -1)


def render_voice(actor: Actor, emotion: str, intensity: str, rng: np.random.Generator) -> np.ndarray:
    """The clip's mono float32 waveform: a harmonic voice with the emotion's pitch, contour,
    loudness and syllable rate, plus noise."""
    factor, slope, loudness, rate = _blend(NEUTRAL_VOICE, VOICES[emotion], INTENSITY_SCALE[intensity])
    t = np.arange(int(AUDIO_RATE * SECONDS)) / AUDIO_RATE
    pitch = actor.pitch * factor * (1 + slope * (t / SECONDS - 0.5)) * (1 + 0.02 * rng.standard_normal())
    phase = 2 * np.pi * np.cumsum(pitch) / AUDIO_RATE
    voice = sum(np.sin(h * phase) / h for h in range(1, 6))
    syllables = np.abs(np.sin(np.pi * rate * t + rng.uniform(0, np.pi))) ** 0.6
    onset = np.clip(t / 0.15, 0, 1) * np.clip((SECONDS - t) / 0.15, 0, 1)
    waveform = 0.25 * loudness * voice * syllables * onset + 0.01 * rng.standard_normal(len(t))
    return waveform.astype(np.float32)


def write_media(path: Path, frames: list[np.ndarray] | None, fps: int = FPS,
                audio: np.ndarray | None = None, audio_rate: int = AUDIO_RATE,
                channels: int = 1) -> Path:
    """Encode RGB frames and/or a (channels, samples) or mono waveform into one media file.

    The codecs follow the container: FLV 1 + MP3 in .flv (as CREMA-D's own files), VP8 + Opus in
    .webm, MPEG-4 part 2 + AAC otherwise; a .wav (16-bit PCM) or .flac holds audio only.
    """
    suffix = path.suffix.lower()
    video_codec, audio_codec = {".flv": ("flv", "libmp3lame"), ".webm": ("libvpx", "libopus"),
                                ".wav": (None, "pcm_s16le"), ".flac": (None, "flac")}.get(suffix, ("mpeg4", "aac"))
    with av.open(str(path), "w") as container:
        video = None
        if frames is not None and video_codec is not None:
            video = container.add_stream(video_codec, rate=fps)
            video.height, video.width = frames[0].shape[:2]
            video.pix_fmt = "yuv420p"
        stream = None
        if audio is not None:
            # Opus runs only at 48 kHz; FLV carries MP3 at 44.1 kHz (as CREMA-D's own files)
            required = {".webm": 48_000, ".flv": 44_100}.get(suffix, audio_rate)
            if required != audio_rate:
                audio = soxr.resample(audio.T, audio_rate, required).T.astype(np.float32)
                audio_rate = required
            stream = container.add_stream(audio_codec, rate=audio_rate)
            stream.layout = "stereo" if channels == 2 else "mono"
        if video is not None:
            _encode_video(container, video, frames, fps)
        if stream is not None:
            _encode_audio(container, stream, audio, channels)
    return path


def _encode_video(container, stream, frames: list[np.ndarray], fps: int) -> None:
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, fps)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _encode_audio(container, stream, waveform: np.ndarray, channels: int) -> None:
    rate = stream.codec_context.sample_rate
    planar = np.tile(waveform.astype(np.float32), (channels, 1)) if waveform.ndim == 1 else waveform
    if stream.codec_context.name == "pcm_s16le":
        samples = (np.clip(planar, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="s16",
                                           layout=stream.layout.name)
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
        return
    _encode_audio_frames(container, stream, planar, pts=0)
    container.mux(stream.encode())


def _encode_audio_frames(container, stream, planar: np.ndarray, pts: int) -> int:
    """Encode (channels, samples) float32 audio whose first sample is at `pts`, in the codec's frame
    size, without flushing; return the pts after it."""
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, planar.shape[1], chunk):
        piece = np.ascontiguousarray(planar[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=stream.layout.name)
        frame.sample_rate, frame.pts = stream.codec_context.sample_rate, pts + start
        container.mux(stream.encode(frame))
    return pts + planar.shape[1]


def concatenate_clips(sources: list[Path], out: Path, seconds: float, fps: int = FPS,
                      size: tuple[int, int] = (480, 360)) -> list[tuple[float, float, Path]]:
    """A long video (MPEG-4 + AAC at 16 kHz) of the given clips one after another, looped until it
    lasts `seconds`: real faces and voices whose emotion changes at every clip boundary. Encoded
    as it is decoded, so memory stays small. Returns each piece's (start, end, source)."""
    from avemotion.media.features import load_audio

    pieces, elapsed, index, audio_pts = [], 0.0, 0, 0
    with av.open(str(out), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        frame_count = 0
        while elapsed < seconds:
            source = sources[index % len(sources)]
            with av.open(str(source)) as clip:
                for frame in clip.decode(video=0):
                    image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                    encoded = av.VideoFrame.from_ndarray(image, format="rgb24")
                    encoded.pts, encoded.time_base = frame_count, Fraction(1, fps)
                    container.mux(video.encode(encoded))
                    frame_count += 1
            waveform = load_audio(source, AUDIO_RATE)
            waveform = np.resize(waveform, round(frame_count / fps * AUDIO_RATE) - audio_pts)  # keep in step
            audio_pts = _encode_audio_frames(container, audio, waveform[np.newaxis].astype(np.float32), audio_pts)
            pieces.append((elapsed, frame_count / fps, source))
            elapsed = frame_count / fps
            index += 1
        container.mux(video.encode())
        container.mux(audio.encode())
    return pieces


def write_y4m(source: Path, path: Path, size: tuple[int, int] = (480, 360), fps: int = FPS) -> Path:
    """A clip's video as raw YUV4MPEG, the format Chromium's fake camera plays (in a loop)."""
    with av.open(str(source)) as clip, av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for frame in clip.decode(video=0):
            out.mux(stream.encode(frame.reformat(width=size[0], height=size[1], format="yuv420p")))
        out.mux(stream.encode())
    return path


SYNTHETIC_NOTE = """This folder is SYNTHETIC: drawn faces and generated voices with CREMA-D's names and
layout, written by `avemotion synth` to measure full-size runs. It holds no CREMA-D data, and results
on it say nothing about emotion recognition on real people.
"""


@dataclass(frozen=True)
class SynthSettings:
    """What a synthetic corpus holds."""

    actors: int = setting(91, "actors, numbered from 1001, each drawn male (about 53 %) or female")
    sentences: int = setting(12, "sentences per actor, each spoken in every emotion")
    seed: int = setting(0, "seed of the actors' looks and voices and of every clip's noise")
    layout: str = setting("original", "original: VideoFlash/*.flv + AudioWAV/*.wav + demographics; "
                          "converted: NAME_01.mp4")


LAYOUTS = ("original", "converted")


@dataclass(frozen=True)
class _ClipJob:
    actor: Actor
    name: str
    root: str
    layout: str
    seed: int


def write_corpus(out_dir: str | Path, settings: SynthSettings = SynthSettings(),
                 names_file: str | Path | None = None, workers: int | None = None,
                 progress: bool = True) -> int:
    """Write a synthetic corpus in the original (VideoFlash/*.flv, AudioWAV/*.wav, demographics)
    or the converted (NAME_01.mp4) layout; return the number of clips. Existing clips are kept."""
    if settings.layout not in LAYOUTS:
        raise UsageError(f"unknown layout {settings.layout!r}; choose one of {', '.join(LAYOUTS)}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTE)
    cast = make_actors(settings.actors, settings.seed)
    pairs = design(cast, settings.sentences, Path(names_file) if names_file else None)
    if settings.layout == "original":
        (root / "VideoFlash").mkdir(exist_ok=True)
        (root / "AudioWAV").mkdir(exist_ok=True)
        _write_demographics(root / "VideoDemographics.csv", cast)
    jobs = [_ClipJob(actor, name, str(root), settings.layout, settings.seed) for actor, name in pairs]
    context = multiprocessing.get_context("forkserver")
    with context.Pool(workers or os.cpu_count() or 1) as pool:
        done = pool.imap_unordered(_write_clip, jobs, chunksize=4)
        for _ in tqdm(done, total=len(jobs), unit="clip", desc="synth", disable=not progress):
            pass
    return len(jobs)


def _write_clip(job: _ClipJob) -> None:
    """Render and encode one clip (skipped when its files already exist)."""
    root = Path(job.root)
    if job.layout == "original":
        video_path = root / "VideoFlash" / f"{job.name}.flv"
        wav_path = root / "AudioWAV" / f"{job.name}.wav"
    else:
        code = "01" if job.actor.gender == "male" else "02"
        video_path, wav_path = root / f"{job.name}_{code}.mp4", None
    if video_path.exists() and (wav_path is None or wav_path.exists()):
        return
    _, _, emotion, intensity = job.name.split("_")
    rng = np.random.default_rng([job.seed, *map(ord, job.name)])
    frames = render_frames(job.actor, emotion, intensity, rng)
    voice = render_voice(job.actor, emotion, intensity, rng)
    if wav_path is not None:
        _write_media_atomically(wav_path, None, voice)
    _write_media_atomically(video_path, frames, voice)


def _write_media_atomically(path: Path, frames: list[np.ndarray] | None, audio: np.ndarray) -> None:
    """Encode under a temporary name and rename, so an interrupted run never leaves a half-written
    file that a later run would take as done."""
    partial = path.with_name(f".partial-{path.name}")
    write_media(partial, frames, audio=audio)
    os.replace(partial, path)


def _write_demographics(path: Path, actors: list[Actor]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
        for actor in actors:
            writer.writerow([actor.actor_id, actor.age, actor.gender.capitalize(), "Synthetic",
                             "Synthetic"])
