from __future__ import annotations

import subprocess
import sys

import av
import cv2
import librosa
import numpy as np
import pytest
from scipy import ndimage

from avemotion.media.features import (
    FeatureSettings,
    MediaError,
    _SpreadFrames,
    extract_features,
    frame_positions,
    load_audio,
    log_mel,
    mel_decibels,
    sample_frames,
)
from avemotion.samples import sample_audio, sample_videos

from media import write_clip

SMALL = FeatureSettings(frame_size=64)


def decode_all_frames(path, size):
    """Every frame of a clip, decoded independently of avemotion and resized the OpenCV way."""
    with av.open(str(path)) as container:
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images])


@pytest.mark.parametrize("video", sample_videos(), ids=lambda p: p.stem)
def test_features_of_real_clips_have_model_shapes(video):
    features = extract_features(video, FeatureSettings())
    assert features["frames"].shape == (8, 3, 224, 224) and features["frames"].dtype == np.uint8
    assert features["mel"].shape == (1, 64, 128) and features["mel"].dtype == np.float16
    assert np.isfinite(features["mel"]).all()
    assert features["frames"].std() > 10  # real pictures, not a flat fill
    assert features["mel"].max() - features["mel"].min() > 30  # speech spans tens of dB
    assert features.face_found is None


def test_sampled_frames_are_first_to_last_equally_spaced():
    video = sample_videos()[0]
    sampled = sample_frames(video, SMALL).transpose(0, 2, 3, 1).astype(int)
    every = decode_all_frames(video, 64).astype(int)
    # which decoded frame each sampled frame is closest to
    distance = np.abs(sampled[:, None] - every[None]).mean(axis=(2, 3, 4))
    matched = distance.argmin(axis=1)
    assert list(matched) == list(frame_positions(len(every), 8))
    assert matched[0] == 0 and matched[-1] == len(every) - 1
    assert distance.min(axis=1).max() < 2.0  # equal up to the scaler's rounding


def test_frame_count_comes_from_decoding_not_the_header(tmp_path):
    clip = write_clip(tmp_path / "grey.mp4", frames=45)
    levels = sample_frames(clip, SMALL)[:, 0, 32, 32].astype(int)
    expected = (frame_positions(45, 8) * 7) % 256
    assert np.abs(levels - expected).max() <= 3


def test_spread_frames_is_exact_for_short_clips_and_bounded_for_long_ones():
    short = _SpreadFrames(capacity=16)
    for i in range(10):
        short.add(i)
    assert [i for i, _ in short.spread()] == list(range(10))
    long = _SpreadFrames(capacity=16)
    for i in range(1000):
        long.add(i)
    held = [i for i, _ in long.spread()]
    assert len(held) <= 17 and held[0] == 0 and held[-1] == 999
    gaps = np.diff(held[:-1])
    assert len(set(gaps)) == 1  # evenly spread


def test_log_mel_matches_an_independent_librosa_computation():
    waveform = load_audio(sample_videos()[3])
    assert 1.5 < len(waveform) / 16_000 < 3.0  # CREMA-D sentences last about two seconds
    ours = log_mel(waveform)
    stft = librosa.stft(waveform, n_fft=1024, hop_length=256, window="hann", center=True)
    filters = librosa.filters.mel(sr=16_000, n_fft=1024, n_mels=64)
    power = filters @ (np.abs(stft) ** 2)
    decibels = 10 * np.log10(np.maximum(power, 1e-10))
    decibels = np.maximum(decibels, decibels.max() - 80.0)
    reference = ndimage.zoom(decibels, (1, 128 / decibels.shape[1]), order=1, grid_mode=True,
                             mode="nearest")
    assert ours.shape == reference.shape == (64, 128)
    assert np.abs(ours - reference).mean() < 0.5
    assert np.abs(ours - reference).max() < 6.0


@pytest.mark.parametrize(("sample_rate", "n_fft", "hop_length", "n_mels"),
                         [(16_000, 1024, 256, 64), (22_050, 512, 160, 40), (16_000, 2048, 512, 128)])
def test_mel_decibels_equal_librosa_for_any_settings(sample_rate, n_fft, hop_length, n_mels):
    settings = FeatureSettings(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    for clip in sample_videos():
        waveform = load_audio(clip, sample_rate)
        power = librosa.feature.melspectrogram(y=waveform, sr=sample_rate, n_fft=n_fft,
                                               hop_length=hop_length, n_mels=n_mels)
        reference = librosa.power_to_db(power, ref=1.0, top_db=80.0)
        ours = mel_decibels(waveform, settings)
        assert ours.shape == reference.shape
        assert np.abs(ours - reference).max() < 1e-3  # dB


def test_mel_decibels_of_a_clip_shorter_than_one_window_is_one_column():
    assert mel_decibels(np.zeros(100, np.float32)).shape == (64, 1)


def test_audio_is_mono_16k_whatever_the_source(tmp_path):
    clip = write_clip(tmp_path / "stereo.mkv", frames=30, audio_rate=44_100, channels=2)
    waveform = load_audio(clip)
    assert waveform.ndim == 1 and waveform.dtype == np.float32
    assert abs(len(waveform) / 16_000 - 1.0) < 0.1
    assert 0.15 < np.abs(waveform).max() < 0.45  # the 0.3 tone survives the downmix
    mp3 = load_audio(sample_audio()[0])
    assert 1.5 < len(mp3) / 16_000 < 4.0


def test_short_and_long_audio_still_give_64_by_128():
    for seconds in (0.3, 2.3, 20.0):
        waveform = np.random.default_rng(0).normal(size=int(16_000 * seconds)).astype(np.float32)
        assert log_mel(waveform).shape == (64, 128)


def test_face_crop_finds_a_face_in_every_sample_clip():
    for video in sample_videos():
        cropped = extract_features(video, FeatureSettings(frame_size=64, face_crop=True))
        full = extract_features(video, SMALL)
        assert cropped.face_found is True
        assert cropped["frames"].shape == full["frames"].shape
        assert np.abs(cropped["frames"].astype(int) - full["frames"]).mean() > 10


def test_face_crop_falls_back_to_full_frames_without_a_face(tmp_path):
    clip = write_clip(tmp_path / "flat.mp4", frames=20)
    features = extract_features(clip, FeatureSettings(frame_size=64, face_crop=True))
    assert features.face_found is False
    assert features["frames"].shape == (8, 3, 64, 64)


def test_settings_digest_changes_with_every_setting():
    base = FeatureSettings()
    assert base.digest() == FeatureSettings().digest()
    changed = [FeatureSettings(frame_size=112), FeatureSettings(hop_length=128),
               FeatureSettings(face_crop=True), FeatureSettings(n_mels=128), FeatureSettings(n_frames=16)]
    digests = {settings.digest() for settings in changed}
    assert len(digests) == len(changed) and base.digest() not in digests


def bad_media(tmp_path):
    """One file per kind of bad input, with the words its error must contain."""
    good = sample_videos()[0].read_bytes()
    (tmp_path / "empty.flv").write_bytes(b"")
    (tmp_path / "truncated.flv").write_bytes(good[: len(good) // 2])
    (tmp_path / "corrupt.flv").write_bytes(b"FLV not really" * 200)
    return {
        tmp_path / "empty.flv": "empty file",
        tmp_path / "truncated.flv": "truncated",
        tmp_path / "corrupt.flv": "could not be decoded",
        write_clip(tmp_path / "silent.mp4", audio_rate=None): "no audio track",
        sample_audio()[0]: "no video track",
        tmp_path / "missing.flv": "cannot be read",
    }


def test_each_bad_input_is_a_clear_media_error(tmp_path):
    for path, words in bad_media(tmp_path).items():
        with pytest.raises(MediaError) as error:
            extract_features(path, SMALL)
        assert str(path) in str(error.value) and words in str(error.value)


# Eight threads extracting features at once, as a server's worker threads do; each result must equal
# the one computed alone. Run in a child process, because sharing a frame converter between threads
# kills the process (SIGSEGV or SIGABRT) rather than raising.
CONCURRENT_EXTRACTION = """
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from avemotion.media.features import FeatureSettings, extract_features
from avemotion.samples import sample_videos
clips = sample_videos()
settings = FeatureSettings(frame_size=64, face_crop=True)
alone = [extract_features(clip, settings) for clip in clips]
with ThreadPoolExecutor(8) as pool:
    together = list(pool.map(lambda clip: extract_features(clip, settings), clips * 4))
for index, features in enumerate(together):
    assert np.array_equal(features["frames"], alone[index % len(clips)]["frames"]), index
    assert np.array_equal(features["mel"], alone[index % len(clips)]["mel"]), index
print("identical", len(together))
"""


@pytest.mark.slow
def test_concurrent_extraction_in_threads_gives_the_same_features():
    completed = subprocess.run([sys.executable, "-c", CONCURRENT_EXTRACTION], capture_output=True,
                               text=True, timeout=300, check=False)
    assert completed.returncode == 0, (completed.returncode, completed.stderr[-2000:])
    assert completed.stdout.strip() == "identical 24"


def write_wav(path, samples: np.ndarray, rate: int, stated_rate: int | None = None):
    """A mono 16-bit WAV (or float32, for samples that are not numbers); `stated_rate` writes
    another rate into the header than the samples were made at."""
    import wave

    if samples.dtype == np.float32:  # the wave module writes integers only: a float WAV by hand
        data, rate = samples.astype("<f4").tobytes(), stated_rate or rate
        header = (b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt "
                  + (16).to_bytes(4, "little") + (3).to_bytes(2, "little") + (1).to_bytes(2, "little")
                  + rate.to_bytes(4, "little") + (4 * rate).to_bytes(4, "little")
                  + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
                  + b"data" + len(data).to_bytes(4, "little"))
        path.write_bytes(header + data)
        return path
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(stated_rate or rate)
        handle.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def test_voices_that_could_exhaust_memory_or_are_not_numbers_are_refused_or_cut(tmp_path):
    from avemotion.media.features import MAX_VOICE_SECONDS, MediaError

    tone = np.sin(np.arange(8_000) / 5).astype(np.float32)
    nan = write_wav(tmp_path / "nan.wav", np.full(8_000, np.nan, np.float32), 8_000)
    with pytest.raises(MediaError, match="nan.wav: its audio holds samples that are not finite"):
        extract_features(nan, SMALL, inputs=("mel",))
    for stated in (1, 8):  # a header claiming 1 Hz would make resampling allocate gigabytes
        lying = write_wav(tmp_path / f"rate-{stated}.wav", tone, 8_000, stated_rate=stated)
        with pytest.raises(MediaError, match=f"audio at {stated} Hz is not a sample rate"):
            extract_features(lying, SMALL, inputs=("mel",))
    # a long recording: its first MAX_VOICE_SECONDS are read, and no more
    long = write_wav(tmp_path / "long.wav", np.full(round((MAX_VOICE_SECONDS + 60) * 8_000), 0.01), 8_000)
    assert len(load_audio(long, 8_000)) == round(MAX_VOICE_SECONDS * 8_000)


@pytest.mark.slow
def test_a_video_larger_than_8k_is_refused_from_its_header(tmp_path):
    from avemotion.media.features import MediaError

    huge = write_clip(tmp_path / "huge.webm", frames=1, size=(8192, 4352), audio_rate=None)
    with pytest.raises(MediaError, match="huge.webm: 8192x4352 video is larger than this tool reads"):
        extract_features(huge, SMALL, inputs=("frames",))
