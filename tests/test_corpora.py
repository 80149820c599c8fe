"""Other corpora end to end: labels from the data, audio-only and video-only clips, cross-corpus
evaluation and speaker normalisation, on copies of the bundled real clips under other corpora's names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from avemotion.cli import main
from avemotion.config import FROM_SCRATCH
from avemotion.datasets import ravdess
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.datasets.synth import write_media
from avemotion.media.features import SAMPLE_RATE, load_audio
from avemotion.runtime.predict import load
from avemotion.runtime.serve import create_app
from avemotion.runtime.speakers import SpeakerNormError, clip_groups
from avemotion.samples import sample_audio, sample_videos
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.evaluate import evaluate_run

from media import write_clip

AUDIO_MODEL = "resnet18_vit_lstm_audio_only"


def voices() -> list[Path]:
    """Twelve real voices: the six bundled MP3s and the sound of the six bundled videos."""
    return sample_audio() + sample_videos()


@pytest.fixture(scope="module")
def ravdess_corpus(tmp_path_factory) -> Path:
    """24 audio-only clips under RAVDESS names: 3 actors x 8 emotions; the metadata table's path."""
    root = tmp_path_factory.mktemp("ravdess")
    sources = voices()
    for actor in (1, 2, 3):
        for emotion in range(1, 9):
            source = sources[(emotion + 4 * actor) % len(sources)]
            folder = root / "data" / f"Actor_{actor:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, folder / f"03-01-{emotion:02d}-01-01-01-{actor:02d}{source.suffix}")
    assert main(["index", str(root / "data"), "-o", str(root / "ravdess.csv")]) == 0
    return root / "ravdess.csv"


def train_args(metadata: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["train", "--model", AUDIO_MODEL, "--no-pretrained", "--metadata", str(metadata),
            "--cache", str(cache), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def ravdess_run(ravdess_corpus) -> Path:
    """An audio-only model trained from scratch on the 8-label corpus (2 epochs)."""
    out = ravdess_corpus.parent / "run"
    assert main(train_args(ravdess_corpus, out, ravdess_corpus.parent / "cache", "--epochs", "2")) == 0
    return out


@pytest.mark.slow  # trains
def test_an_audio_only_model_learns_the_corpus_labels_with_the_from_scratch_recipe(ravdess_run, capsys):
    config = json.loads((ravdess_run / "config.json").read_text())["train"]
    assert config["max_epochs"] == 2  # given on the command line: kept
    for name in ("learning_rate", "schedule", "mixup", "spec_masks", "batch_size"):
        assert config[name] == FROM_SCRATCH[name], name  # the rest: the from-scratch recipe
    model, info = load_checkpoint(ravdess_run / "model.ckpt")
    assert info.labels == list(ravdess.LABELS) and len(info.labels) == 8
    assert model.head.classifier.out_features == 8
    assert info.epoch == 1  # one-cycle: the last epoch's weights are kept
    predictions = pd.read_csv(ravdess_run / "predictions.csv")
    assert list(predictions.columns[3:]) == [f"p_{label}" for label in ravdess.LABELS]
    assert json.loads((ravdess_run / "metrics.json").read_text())["labels"] == list(ravdess.LABELS)

    assert main(["evaluate", str(ravdess_run)]) == 0
    assert "test (8 clips)" in capsys.readouterr().out


@pytest.mark.slow  # trains
def test_an_audio_only_model_predicts_audio_files_and_videos(ravdess_run, tmp_path, capsys):
    wav = write_media(tmp_path / "voice.wav", None, audio=load_audio(sample_audio()[0]), audio_rate=SAMPLE_RATE)
    m4a = write_media(tmp_path / "voice.m4a", None, audio=load_audio(sample_audio()[1]), audio_rate=SAMPLE_RATE)
    flac = write_media(tmp_path / "voice.flac", None, audio=load_audio(sample_audio()[4]), audio_rate=SAMPLE_RATE)
    clips = [wav, m4a, flac, sample_audio()[2], sample_videos()[0]]
    assert main(["predict", str(ravdess_run / "model.ckpt"), *map(str, clips), "--format", "json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["error"] for r in results] == [None] * 5
    assert all(r["label"] in ravdess.LABELS and r["emotion"] == r["label"] for r in results)
    # a folder: the audio files inside it are found too
    assert main(["predict", str(ravdess_run / "model.ckpt"), str(tmp_path), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # a header and three files


@pytest.mark.slow  # trains
def test_serve_takes_audio_uploads_for_an_audio_only_model(ravdess_run):
    client = TestClient(create_app(load(ravdess_run / "model.ckpt")))
    health = client.get("/health").json()
    assert health["modalities"] == ["audio"] and health["labels"] == list(ravdess.LABELS)
    assert ".mp3" in client.get("/").text
    voice = sample_audio()[3]
    answer = client.post("/predict", files={"file": (voice.name, voice.read_bytes())})
    assert answer.status_code == 200 and answer.json()["label"] in ravdess.LABELS
    assert answer.json()["frames"] == []


def test_serve_refuses_audio_uploads_for_a_model_that_reads_video(checkpoint):
    client = TestClient(create_app(load(checkpoint)))
    voice = sample_audio()[0]
    answer = client.post("/predict", files={"file": (voice.name, voice.read_bytes())})
    assert answer.status_code == 415 and ".mp4" in answer.json()["error"]


@pytest.mark.slow  # trains
def test_cross_corpus_evaluation_scores_the_shared_labels(ravdess_run, samples, tmp_path, capsys):
    cremad = tmp_path / "cremad.csv"
    write_metadata(index_dataset(samples).table, cremad)  # six CREMA-D clips, labels ANG … SAD
    assert main(["evaluate", str(ravdess_run), "--metadata", str(cremad), "--cache", str(tmp_path / "c"),
                 "-o", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "scored on the labels both corpora share: anger, disgust, fear, happiness, neutral, sadness" in out
    assert "absent from this table" in out and "calm, surprise" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["clips"] == 6 and metrics["cross_corpus"]["model_labels_not_in_data"] == ["calm", "surprise"]
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert sorted(predictions["true"]) == ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert set(predictions["predicted"]) <= set(predictions["true"])  # the choice is among the shared labels
    probabilities = predictions.filter(like="p_").to_numpy()
    assert probabilities.shape == (6, 6) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


@pytest.mark.slow  # trains
def test_cross_corpus_evaluation_with_no_shared_label_is_one_clear_line(ravdess_run, tmp_path, capsys):
    shutil.copy(sample_audio()[0], tmp_path / "a.mp3")
    (tmp_path / "m.csv").write_text("path,label\na.mp3,boredom\n")
    assert main(["index", str(tmp_path / "m.csv"), "-o", str(tmp_path / "t.csv")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(ravdess_run), "--metadata", str(tmp_path / "t.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "share no emotion" in error


def test_a_fused_model_on_an_audio_only_corpus_is_one_clear_sentence(ravdess_corpus, tmp_path, capsys):
    args = ["train", "--model", "resnet18_vit_lstm", "--no-pretrained", "--metadata", str(ravdess_corpus),
            "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert "resnet18_vit_lstm reads video and audio, but no clip of this corpus has video" in error
    assert "audio-only" in error


@pytest.fixture(scope="module")
def speaker_norm_run(ravdess_corpus) -> Path:
    out = ravdess_corpus.parent / "speaker-run"
    assert main(train_args(ravdess_corpus, out, ravdess_corpus.parent / "cache", "--epochs", "1",
                           "--speaker-norm")) == 0
    return out


@pytest.mark.slow  # trains
def test_a_speaker_normalised_model_judges_a_speakers_clips_together(speaker_norm_run, tmp_path, capsys):
    checkpoint = speaker_norm_run / "model.ckpt"
    assert load_checkpoint(checkpoint)[1].speaker_norm is True
    assert main(["predict", str(checkpoint), str(sample_audio()[0])]) == 2
    error = capsys.readouterr().err
    assert "speaker normalisation" in error and "folder" in error and "Traceback" not in error
    speaker = tmp_path / "speaker"
    speaker.mkdir()
    for voice in sample_audio()[:3]:
        shutil.copy(voice, speaker / voice.name)
    assert main(["predict", str(checkpoint), str(speaker), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "taken as one speaker's" in captured.err
    results = json.loads(captured.out)
    assert len(results) == 3 and all(r["label"] in ravdess.LABELS for r in results)
    classifier = load(checkpoint)
    together = classifier.predict_batch(sorted(speaker.iterdir()))
    alone_with_others = classifier.predict_batch(sorted(speaker.iterdir())[:2] + [sample_videos()[0]])
    # the statistics are the speaker's: other company changes the same clip's probabilities
    assert together[0].probabilities != alone_with_others[0].probabilities
    client = TestClient(create_app(classifier))
    answer = client.post("/predict", files={"file": ("v.mp3", sample_audio()[0].read_bytes())})
    assert answer.status_code == 422 and "speaker normalisation" in answer.json()["error"]


@pytest.mark.slow  # trains
def test_speaker_normalised_probabilities_agree_in_training_evaluate_predict_and_onnx(
        speaker_norm_run, ravdess_corpus, tmp_path):
    """The test speaker's probabilities as training wrote them, as `evaluate` recomputes them from
    the checkpoint, and as `predict` and the ONNX export give them for that speaker's files."""
    written = pd.read_csv(speaker_norm_run / "predictions.csv").set_index("clip")
    columns = [f"p_{label}" for label in ravdess.LABELS]
    assert np.allclose(written[columns].sum(axis=1), 1.0, atol=1e-4)
    _, folder = evaluate_run(speaker_norm_run, progress=False)
    evaluated = pd.read_csv(folder / "predictions.csv").set_index("clip").loc[written.index]
    assert np.allclose(evaluated[columns], written[columns], atol=1e-5)

    table = pd.read_csv(ravdess_corpus).set_index("clip")
    files = [table.loc[clip, "audio_path"] for clip in written.index]
    assert table.loc[written.index, "actor_id"].nunique() == 1  # one test speaker
    checkpoint = speaker_norm_run / "model.ckpt"
    onnx = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), "-o", str(onnx)]) == 0
    for classifier in (load(checkpoint), load(onnx)):
        predicted = classifier.predict_batch(files)
        probabilities = np.array([[p.probabilities[label] for label in ravdess.LABELS] for p in predicted])
        assert np.allclose(probabilities, written[columns].to_numpy(), atol=1e-4)


@pytest.mark.slow  # trains
def test_frozen_backbones_take_speaker_normalisation_too(ravdess_corpus, tmp_path):
    out = tmp_path / "frozen"
    assert main(train_args(ravdess_corpus, out, ravdess_corpus.parent / "cache", "--epochs", "1",
                           "--freeze-backbones", "--speaker-norm")) == 0
    _, info = load_checkpoint(out / "model.ckpt")
    assert info.speaker_norm and info.speaker_normalisation is not None
    assert json.loads((out / "metrics.json").read_text())["speaker_norm"] is True


@pytest.mark.slow  # trains
def test_a_speaker_normalised_model_takes_a_long_recording_of_one_person(speaker_norm_run, tmp_path, capsys):
    voice = np.concatenate([load_audio(path) for path in sample_audio()] * 2)  # about 30 s of one man
    long_recording = write_media(tmp_path / "long.wav", None, audio=voice, audio_rate=SAMPLE_RATE)
    classifier = load(speaker_norm_run / "model.ckpt")
    timeline = classifier.timeline(long_recording, window=2.5, hop=1.0)
    assert len(timeline) > 20 and set(timeline["label"]) <= set(ravdess.LABELS)
    short = write_media(tmp_path / "short.wav", None, audio=voice[: 4 * SAMPLE_RATE], audio_rate=SAMPLE_RATE)
    with pytest.raises(ValueError, match="at least 4 windows long"):
        classifier.timeline(short, window=2.5, hop=1.0)


@pytest.mark.slow  # trains
def test_a_corpus_normalised_model_standardises_each_corpus_on_its_own(ravdess_corpus, tmp_path, capsys):
    out = tmp_path / "corpus-run"
    assert main(train_args(ravdess_corpus, out, ravdess_corpus.parent / "cache", "--epochs", "1",
                           "--freeze-backbones", "--corpus-norm")) == 0
    checkpoint = out / "model.ckpt"
    _, info = load_checkpoint(checkpoint)
    assert info.speaker_norm and info.normalised_by == "corpus"
    assert json.loads((out / "metrics.json").read_text())["corpus_norm"] is True
    # the corpus's test clips were standardised on their own, as `evaluate` standardises them
    written = pd.read_csv(out / "predictions.csv").set_index("clip")
    _, folder = evaluate_run(out, progress=False)
    evaluated = pd.read_csv(folder / "predictions.csv").set_index("clip").loc[written.index]
    columns = [f"p_{label}" for label in ravdess.LABELS]
    assert np.allclose(evaluated[columns], written[columns], atol=1e-5)

    # another corpus needs no speaker names: its clips are one corpus's
    for index, voice in enumerate(sample_audio()):
        shutil.copy(voice, tmp_path / f"v{index}.mp3")
    rows = [f"v{i}.mp3,{label}" for i, label in enumerate(["anger", "happiness", "sadness"] * 2)]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert main(["index", str(tmp_path / "m.csv"), "-o", str(tmp_path / "other.csv")]) == 0
    assert main(["evaluate", str(out), "--metadata", str(tmp_path / "other.csv"), "-o", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["normalised_by"] == "corpus"
    # three of the model's eight labels: judged choosing among those three, as the other five are absent
    assert metrics["cross_corpus"]["scored_labels"] == ["anger", "happiness", "sadness"]
    predicted = pd.read_csv(tmp_path / "e" / "predictions.csv")
    assert set(predicted["predicted"]) <= {"anger", "happiness", "sadness"}
    assert list(predicted.filter(like="p_").columns) == ["p_anger", "p_happiness", "p_sadness"]

    capsys.readouterr()
    assert main(["predict", str(checkpoint), str(tmp_path / "v0.mp3")]) == 2
    assert "corpus normalisation" in capsys.readouterr().err
    voices = tmp_path / "voices"
    voices.mkdir()
    for index in range(3):
        shutil.copy(tmp_path / f"v{index}.mp3", voices)
    assert main(["predict", str(checkpoint), str(voices)]) == 0
    assert "the 3 clips are taken as one corpus's" in capsys.readouterr().err


def test_speaker_and_corpus_normalisation_are_one_choice(ravdess_corpus, tmp_path, capsys):
    assert main(train_args(ravdess_corpus, tmp_path / "r", tmp_path / "c", "--speaker-norm", "--corpus-norm")) == 2
    assert "choose one" in capsys.readouterr().err
    assert not (tmp_path / "r" / "history.csv").exists()


def test_clips_are_grouped_by_speaker_or_by_corpus():
    table = pd.DataFrame({"actor_id": ["1", "2", "1", "2"], "dataset": ["tess", "tess", "urdu", "urdu"],
                          "clip": ["a", "b", "c", "d"]})
    assert clip_groups(table, "speaker").tolist() == ["1", "2", "1", "2"]
    assert clip_groups(table, "corpus").tolist() == ["tess", "tess", "urdu", "urdu"]
    assert clip_groups(table[["actor_id"]], "corpus").tolist() == ["corpus"] * 4  # one table: one corpus
    with pytest.raises(SpeakerNormError, match="no speaker column"):
        clip_groups(table[["dataset"]], "speaker")


def test_speaker_norm_needs_speakers(tmp_path, capsys):
    for index, voice in enumerate(sample_audio()):
        shutil.copy(voice, tmp_path / f"v{index}.mp3")
    rows = [f"v{i}.mp3,{label}" for i, label in enumerate(["a", "b", "c", "a", "b", "c"])]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert main(["index", str(tmp_path / "m.csv"), "-o", str(tmp_path / "t.csv")]) == 0
    capsys.readouterr()
    assert main(train_args(tmp_path / "t.csv", tmp_path / "r", tmp_path / "c", "--speaker-norm",
                           "--split", "random")) == 2
    assert "no speaker column" in capsys.readouterr().err
    # a speaker heard once gives no statistics: refused before any training
    rows = [f"v{i}.mp3,{label},{speaker}" for i, (label, speaker) in enumerate(zip("abcabc", "xxxyyz"))]
    (tmp_path / "m.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
    assert main(["index", str(tmp_path / "m.csv"), "-o", str(tmp_path / "t.csv")]) == 0
    capsys.readouterr()
    assert main(train_args(tmp_path / "t.csv", tmp_path / "r", tmp_path / "c", "--speaker-norm",
                           "--split", "random")) == 2
    error = capsys.readouterr().err
    assert "at least 2 clips of each speaker" in error and "first: z" in error and "Traceback" not in error
    assert not (tmp_path / "r" / "history.csv").exists()


@pytest.mark.slow  # trains
def test_a_video_only_model_trains_on_silent_video_with_seven_labels(tmp_path, capsys):
    """A manifest corpus of silent videos (and videos whose sound is unused), seven labels."""
    rows = []
    for index in range(14):
        if index % 2:
            path = write_clip(tmp_path / f"silent{index}.mp4", frames=12, audio_rate=None)
        else:
            path = Path(shutil.copy(sample_videos()[index % 6], tmp_path / f"face{index}.flv"))
        rows.append(f"{path.name},label{index % 7},{'s' + str(index % 3)},video")
    (tmp_path / "m.csv").write_text("path,label,speaker,modality\n" + "\n".join(rows) + "\n")
    assert main(["index", str(tmp_path / "m.csv"), "-o", str(tmp_path / "t.csv")]) == 0
    args = ["--metadata", str(tmp_path / "t.csv"), "--cache", str(tmp_path / "c"), "--frame-size", "32",
            "--split", "random"]
    assert main(["train", "--model", AUDIO_MODEL, "--no-pretrained", "--out", str(tmp_path / "a"), *args]) == 2
    assert "no clip of this corpus has audio" in capsys.readouterr().err
    assert main(["train", "--model", "resnet18_vit_lstm_video_only", "--no-pretrained", "--freeze-backbones",
                 "--epochs", "1", "--out", str(tmp_path / "v"), *args]) == 0
    _, info = load_checkpoint(tmp_path / "v" / "model.ckpt")
    assert info.labels == [f"label{i}" for i in range(7)]
    metrics, _ = evaluate_run(tmp_path / "v", progress=False)
    assert metrics["labels"] == info.labels and len(metrics["confusion_matrix"]) == 7
    silent = tmp_path / "silent1.mp4"
    result = load(tmp_path / "v" / "model.ckpt").predict(silent)
    assert result.ok and result.label in info.labels


@pytest.mark.slow
def test_the_documented_audio_only_command_works_as_written(ravdess_corpus, tmp_path):
    """`avemotion train --model resnet18_vit_lstm_audio_only --no-pretrained --metadata ravdess.csv …`
    with nothing else: the whole from-scratch recipe (40 epochs) on the small corpus."""
    out = tmp_path / "run"
    assert main(train_args(ravdess_corpus, out, tmp_path / "cache")) == 0
    history = pd.read_csv(out / "history.csv")
    assert len(history) == FROM_SCRATCH["max_epochs"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # it learns
