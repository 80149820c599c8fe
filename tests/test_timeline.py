from __future__ import annotations

import json
import subprocess
import sys

import av
import numpy as np
import pandas as pd
import pytest

from avemotion.cli import main
from avemotion.config import TimelineSettings
from avemotion.datasets.cremad import EMOTIONS
from avemotion.datasets.synth import concatenate_clips, write_media
from avemotion.media.features import (
    FaceBoxes,
    FeatureSettings,
    MediaError,
    frame_positions,
    load_audio,
    log_mel,
    to_rgb,
)
from avemotion.runtime.predict import load
from avemotion.runtime.timeline import EMBED_BATCH, _Timeline, emotion_timeline, plot_timeline
from avemotion.samples import sample_audio, sample_videos
from avemotion.training.export import export_onnx

from conftest import calibrated_checkpoint
from media import write_clip
from test_eda import assert_valid_png

WINDOW, HOP = 2.0, 0.5


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """About 13 s of the six real clips one after another: the emotion changes every ~2.2 s."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    concatenate_clips(sample_videos(), path, seconds=12)
    return path


@pytest.fixture(scope="module")
def classifier(checkpoint):
    return load(checkpoint)


@pytest.fixture(scope="module")
def timeline(classifier, long_video):
    return classifier.timeline(long_video, window=WINDOW, hop=HOP)


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [(frame.time, frame) for frame in container.decode(video=0)]


def stretch_inputs(frames, audio, start, window, settings):
    """What predict reads from the stretch [start, start + window) cut out as a clip."""
    inside = [frame for time, frame in frames if start - 1e-6 <= time < start + window - 1e-6]
    chosen = [inside[i] for i in frame_positions(len(inside), settings.n_frames)]
    images = np.stack([to_rgb(frame, settings.frame_size).transpose(2, 0, 1) for frame in chosen])
    stretch = audio[round(start * settings.sample_rate) : round((start + window) * settings.sample_rate)]
    return images, log_mel(stretch, settings)[np.newaxis], [frame.time for frame in chosen]


def test_one_row_per_window_over_the_whole_video(timeline, long_video):
    with av.open(str(long_video)) as container:
        duration = container.duration / av.time_base
    assert list(timeline.columns) == ["start_s", "end_s", "label", *EMOTIONS]
    assert len(timeline) == int((duration - WINDOW) // HOP) + 1
    assert np.allclose(np.diff(timeline["start_s"]), HOP)
    assert np.allclose(timeline["end_s"] - timeline["start_s"], WINDOW)
    assert np.allclose(timeline[list(EMOTIONS)].sum(axis=1), 1, atol=1e-5)
    assert (timeline["label"] == timeline[list(EMOTIONS)].idxmax(axis=1)).all()
    assert timeline[list(EMOTIONS)].std().max() > 0.01  # the windows differ


def test_each_window_is_judged_as_predict_judges_that_stretch(classifier, timeline, long_video):
    settings = classifier.card.feature_settings
    frames, audio = decoded_frames(long_video), load_audio(long_video)
    spacing = (WINDOW - 1 / 30) / (settings.n_frames - 1)
    differences = []
    for _, row in timeline.iterrows():
        images, mel, times = stretch_inputs(frames, audio, row["start_s"], WINDOW, settings)
        logits = classifier.network({"frames": images[np.newaxis], "mel": mel[np.newaxis]})[0]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        differences.append(np.abs(expected - row[list(EMOTIONS)].to_numpy(float)).max())
        # the grid frames a window uses are at most a quarter of the frame spacing (plus half a
        # frame) from predict's; everything else is predict's own computation
        ideal = row["start_s"] + np.arange(settings.n_frames) * spacing
        assert np.abs(np.array(times) - ideal).max() <= 1 / 30
    assert max(differences) < 0.05 and np.mean(differences) < 0.01, np.round(differences, 4)


@pytest.mark.slow
def test_an_audio_only_model_on_long_audio_is_exactly_predict_on_each_stretch(
        tmp_path, sample_batch, sample_cache, classifier):
    model = load(calibrated_checkpoint("effnet_lstm_audio_only", tmp_path / "audio.ckpt", sample_batch,
                                       sample_cache.settings))
    voices = np.concatenate([load_audio(path) for path in sample_audio()] * 2)
    recording = write_media(tmp_path / "voices.wav", None, audio=voices)
    table = model.timeline(recording, window=WINDOW, hop=HOP)
    assert len(table) == int((len(voices) / 16_000 - WINDOW) // HOP) + 1
    settings = model.card.feature_settings
    audio = load_audio(recording)
    for _, row in table.iloc[::3].iterrows():
        start = round(row["start_s"] * 16_000)
        # stored as predict stores a clip's spectrogram: float16
        mel = log_mel(audio[start : start + round(WINDOW * 16_000)], settings).astype(np.float16)
        logits = model.network({"mel": mel[np.newaxis, np.newaxis].astype(np.float32)})[0]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert np.abs(expected - row[list(EMOTIONS)].to_numpy(float)).max() < 1e-5
    with pytest.raises(MediaError, match="voices.wav: no video track, and effnet_lstm reads video and audio"):
        classifier.timeline(recording)
    # silence, then noise, between two voices: where nobody speaks windows are marked, never given
    # an emotion (the voice-activity detector tells noise from speech)
    pause = np.zeros(4 * 16_000, np.float32)
    noise = np.random.default_rng(0).normal(0, 0.05, 4 * 16_000).astype(np.float32)
    gapped = write_media(tmp_path / "gapped.wav", None,
                         audio=np.concatenate([voices[:48_000], noise, pause, voices[:48_000]]))
    marked = model.timeline(gapped, window=WINDOW, hop=HOP)
    nobody = (marked["start_s"] >= 3.0) & (marked["end_s"] <= 11.0)
    assert nobody.any() and (marked["label"][nobody] == "(no voice)").all()
    # the first clip's sentence is spoken from 0.58 to 1.34 s, and again from 11.58 s
    assert (marked["label"][marked["end_s"] <= 3.0] != "(no voice)").all()
    spoken = (marked["start_s"] <= 11.6) & (marked["end_s"] >= 12.2)
    assert spoken.any() and (marked["label"][spoken] != "(no voice)").all()
    plot_timeline(marked, tmp_path / "gapped.png")  # the unjudged windows stay blank in the band


@pytest.mark.slow
def test_memory_holds_about_one_window_whatever_the_length(classifier, long_video, tmp_path, monkeypatch):
    held = []
    release = _Timeline._release

    def measured(self, next_window):
        release(self, next_window)
        held.append((len(self.frames), len(self.audio.samples) if self.audio is not None else 0))

    monkeypatch.setattr(_Timeline, "_release", measured)
    longer = tmp_path / "longer.mp4"
    concatenate_clips(sample_videos(), longer, seconds=36)
    maxima = []
    for video in (long_video, longer):
        held.clear()
        classifier.timeline(video, window=WINDOW, hop=HOP)
        maxima.append(np.max(held, axis=0))
    (frames, samples), (frames_longer, samples_longer) = maxima
    # a window's grid frames, plus one batch waiting for the backbone (and the audio meanwhile)
    grid = (WINDOW - 1 / 30) / (2 * 7)
    assert frames_longer <= 15 + EMBED_BATCH
    assert samples_longer <= (WINDOW + EMBED_BATCH * grid + 1) * 16_000
    assert frames_longer <= frames + 2 and samples_longer <= samples * 1.1  # not growing with length


def test_smoothing_is_a_centred_moving_average(classifier, long_video, timeline):
    smoothed = classifier.timeline(long_video, window=WINDOW, hop=HOP, smooth=3)
    raw = timeline[list(EMOTIONS)].to_numpy()
    middle = smoothed[list(EMOTIONS)].to_numpy()[1:-1]
    assert np.allclose(middle, (raw[:-2] + raw[1:-1] + raw[2:]) / 3, atol=1e-5)


def test_a_clip_shorter_than_the_window_is_one_window_equal_to_predict(classifier):
    clip = sample_videos()[3]
    table = classifier.timeline(clip, window=10.0)
    assert len(table) == 1 and table.loc[0, "start_s"] == 0
    expected = classifier.predict(clip).probabilities
    assert table.loc[0, list(EMOTIONS)].to_dict() == pytest.approx(expected, abs=1e-5)


def test_the_window_defaults_to_the_training_clips_length(tmp_path, sample_batch, sample_cache, long_video):
    path = calibrated_checkpoint("effnet_lstm", tmp_path / "m.ckpt", sample_batch, sample_cache.settings,
                                 window_seconds=3.0)
    table = emotion_timeline(load(path), long_video, TimelineSettings(hop=1.0))
    assert np.allclose(table["end_s"] - table["start_s"], 3.0)


def test_bad_inputs_give_one_clear_line(classifier, tmp_path, capsys, checkpoint):
    silent = write_media(tmp_path / "silent.mp4", [np.zeros((48, 64, 3), np.uint8)] * 90, fps=30)
    with pytest.raises(MediaError, match="silent.mp4: no audio track, and effnet_lstm reads video and audio"):
        classifier.timeline(silent)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 100)
    assert main(["timeline", str(checkpoint), str(tmp_path / "broken.mp4"), "-o", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "broken.mp4" in error and error.count("\n") == 1


def test_frames_larger_than_the_limit_are_refused_as_predict_refuses_them(classifier, tmp_path, monkeypatch):
    import avemotion.media.features

    clip = write_clip(tmp_path / "wide.mp4", frames=30, size=(160, 120))
    monkeypatch.setattr(avemotion.media.features, "MAX_FRAME_PIXELS", 100 * 100)  # 8K, scaled down to the clip
    with pytest.raises(MediaError, match="wide.mp4: 160x120 video is larger than this tool reads"):
        classifier.timeline(clip)


def test_cli_writes_csv_json_and_picture(checkpoint, long_video, tmp_path, capsys, timeline):
    out = tmp_path / "out"
    assert main(["timeline", str(checkpoint), str(long_video), "-o", str(out), "--window", str(WINDOW)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(timeline)} windows of 2 s every 0.5 s" in printed and "share of time:" in printed
    written = pd.read_csv(out / "timeline.csv")
    assert written[list(EMOTIONS)].to_numpy() == pytest.approx(timeline[list(EMOTIONS)].to_numpy(), abs=1e-6)
    document = json.loads((out / "timeline.json").read_text())
    assert document["window_s"] == WINDOW and len(document["windows"]) == len(timeline)
    assert sum(document["share_of_time"].values()) == pytest.approx(1, abs=1e-3)
    assert_valid_png(out / "timeline.png")


# A timeline from an exported model alone, listing the heavy packages imported on the way.
TORCH_FREE_TIMELINE = """
import json, sys
from avemotion.cli import main
model, video, out = sys.argv[1:]
code = main(["timeline", model, video, "-o", out, "--window", "2", "--hop", "0.5"])
heavy = sorted(name for name in ("torch", "timm", "lightning") if name in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.slow
def test_an_exported_model_alone_gives_the_same_timeline_without_torch(checkpoint, long_video, tmp_path,
                                                                      timeline):
    exported = export_onnx(checkpoint, tmp_path / "model.onnx")
    completed = subprocess.run([sys.executable, "-c", TORCH_FREE_TIMELINE, str(exported), str(long_video),
                                str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                               check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
    from_onnx = pd.read_csv(tmp_path / "out" / "timeline.csv")
    assert from_onnx[list(EMOTIONS)].to_numpy() == pytest.approx(timeline[list(EMOTIONS)].to_numpy(), abs=1e-4)


@pytest.mark.slow
def test_face_crop_follows_the_face_through_the_video(tmp_path, sample_batch, long_video, timeline, monkeypatch):
    cropped = FeatureSettings(frame_size=64, face_crop=True)
    model = load(calibrated_checkpoint("effnet_lstm", tmp_path / "crop.ckpt", sample_batch, cropped))
    detections = []
    see = FaceBoxes.see
    monkeypatch.setattr(FaceBoxes, "see", lambda self, image: detections.append(1) or see(self, image))
    table = model.timeline(long_video, window=WINDOW, hop=HOP)
    assert len(table) == len(timeline) and len(detections) >= 2 * len(table)  # every grid frame looked at
    assert not np.allclose(table[list(EMOTIONS)], timeline[list(EMOTIONS)], atol=1e-3)  # the crop changes inputs
