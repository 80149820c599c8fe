from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest

from avemotion.cli import main
from avemotion.datasets import synth
from avemotion.datasets.cremad import EMOTIONS
from avemotion.datasets.eda import run_eda
from avemotion.datasets.index import index_dataset
from avemotion.datasets.synth import (
    FACES,
    VOICES,
    SynthSettings,
    design,
    make_actors,
    render_voice,
    write_corpus,
)
from avemotion.media.features import FeatureSettings, extract_features, load_audio

from conftest import SHARED_METADATA


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small synthetic corpus in the original layout: 3 actors, 2 sentences."""
    root = tmp_path_factory.mktemp("synth") / "data"
    assert main(["synth", str(root), "--actors", "3", "--sentences", "2", "--seed", "5"]) == 0
    return root


def test_original_layout_indexes_like_cremad(corpus, tmp_path):
    result = index_dataset(corpus)
    assert result.problems == []
    table = result.table
    assert len(table) == 3 * (16 + 6)  # IEO: neutral + 5 emotions x 3 intensities; TIE: 6
    assert table["audio_path"].str.endswith(".wav").all()
    assert set(table["gender"]) <= {"male", "female"}
    assert (table["race"] == "Synthetic").all()
    assert "SYNTHETIC" in (corpus / "SYNTHETIC.txt").read_text()
    summary = json.loads(run_eda(table, tmp_path).with_name("summary.json").read_text())
    assert summary["columns"]["intensity"] == {"LO": 15, "MD": 15, "HI": 15, "XX": 21}


def test_clips_are_playable_media_of_the_stated_form(corpus):
    clip = next((corpus / "VideoFlash").glob("*.flv"))
    with av.open(str(clip)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (160, 120)
        assert audio.codec_context.sample_rate == 44_100
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 69  # 2.3 s at 30 fps
    features = extract_features(clip, FeatureSettings(frame_size=64))
    assert features["frames"].std() > 20 and np.isfinite(features["mel"]).all()
    wav = load_audio(corpus / "AudioWAV" / f"{clip.stem}.wav")
    assert abs(len(wav) / 16_000 - 2.3) < 0.01


def test_converted_layout_carries_gender_codes(tmp_path):
    write_corpus(tmp_path, SynthSettings(actors=2, sentences=1, layout="converted"), progress=False,
                 workers=1)
    result = index_dataset(tmp_path)
    assert result.problems == [] and len(result.table) == 2 * 16
    assert all(p.endswith(("_01.mp4", "_02.mp4")) for p in result.table["video_path"])
    assert result.table["gender"].isin(["male", "female"]).all()


def test_each_modality_leaves_one_pair_ambiguous():
    assert FACES["ANG"] == FACES["DIS"] and VOICES["ANG"] != VOICES["DIS"]
    assert VOICES["NEU"] == VOICES["SAD"] and FACES["NEU"] != FACES["SAD"]
    actor = make_actors(1, 0)[0]
    loud = render_voice(actor, "ANG", "HI", np.random.default_rng(0))
    quiet = render_voice(actor, "SAD", "HI", np.random.default_rng(0))
    assert np.sqrt(np.mean(loud**2)) > 1.5 * np.sqrt(np.mean(quiet**2))


@pytest.mark.skipif(not (SHARED_METADATA / "SentenceFilenames.csv").is_file(),
                    reason=f"the real CREMA-D names are not at {SHARED_METADATA}")
def test_the_real_design_gives_cremad_counts():
    pairs = design(make_actors(91, 0), 12, SHARED_METADATA / "SentenceFilenames.csv")
    names = pd.Series([name for _, name in pairs])
    assert len(names) == 7442
    emotions = names.str.split("_").str[2].value_counts()
    assert emotions["NEU"] == 1087 and all(emotions[e] == 1271 for e in EMOTIONS if e != "NEU")


def test_a_clip_interrupted_while_writing_is_written_again(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "VideoFlash").mkdir(parents=True)
    (root / "AudioWAV").mkdir()
    job = synth._ClipJob(make_actors(1, 0)[0], "1001_DFA_ANG_HI", str(root), "original", 0)
    real_write_media = synth.write_media

    def write_then_crash(path, frames, **options):
        real_write_media(path, frames, **options)
        if path.suffix == ".wav":  # the clip's last file: only part of it reached the disk
            path.write_bytes(path.read_bytes()[:1000])
            raise KeyboardInterrupt

    monkeypatch.setattr(synth, "write_media", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        synth._write_clip(job)
    monkeypatch.setattr(synth, "write_media", real_write_media)
    synth._write_clip(job)
    assert abs(len(load_audio(root / "AudioWAV" / "1001_DFA_ANG_HI.wav")) / 16_000 - 2.3) < 0.1
    frames = extract_features(root / "VideoFlash" / "1001_DFA_ANG_HI.flv", FeatureSettings(frame_size=32))["frames"]
    assert frames.shape == (8, 3, 32, 32)
