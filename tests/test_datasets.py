"""Corpora as plug-ins: RAVDESS names, manifests, a folder per label, recognition, label vocabulary."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from avemotion.cli import main
from avemotion.datasets import canonical, corpus_labels, shared_labels
from avemotion.datasets.index import index_dataset, read_metadata
from avemotion.datasets.manifest import ManifestError
from avemotion.datasets.ravdess import parse_clip_name
from avemotion.samples import sample_audio, sample_videos

from conftest import make_tree


def kinds(result) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in result.problems:
        found.setdefault(problem.kind, []).append(Path(problem.path).name)
    return found


@pytest.mark.parametrize("stem, expected", [
    ("03-01-05-01-02-01-12", {"modality": "audio", "vocal_channel": "speech", "emotion": "anger",
                              "intensity": "normal", "statement": "dogs", "repetition": 1,
                              "actor_id": 12, "gender": "female"}),
    ("01-02-08-02-01-02-01", {"modality": "audio-video", "vocal_channel": "song", "emotion": "surprise",
                              "intensity": "strong", "statement": "kids", "repetition": 2,
                              "actor_id": 1, "gender": "male"}),
    ("02-01-02-01-01-01-23", {"modality": "video", "vocal_channel": "speech", "emotion": "calm",
                              "intensity": "normal", "statement": "kids", "repetition": 1,
                              "actor_id": 23, "gender": "male"}),
    ("03-01-09-01-01-01-01", {"unknown": ["emotion '09'"]}),
    ("04-03-01-01-01-01-25", {"unknown": ["modality '04'", "vocal channel '03'", "actor '25'"]}),
    ("03-01-05-01-02-01", None),
    ("1001_DFA_ANG_XX", None),
])
def test_ravdess_names(stem, expected):
    assert parse_clip_name(stem) == expected


def ravdess_copies(root: Path, flat: bool = False) -> Path:
    """The bundled real media under RAVDESS names: voices as audio-only speech of actors 1 and 2,
    videos as audio-video speech and song of actor 3; emotion codes 01-06."""
    def place(source: Path, name: str, actor: int) -> None:
        folder = root if flat else root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / (name + source.suffix))

    for index, voice in enumerate(sample_audio()):
        for actor in (1, 2):
            place(voice, f"03-01-{index + 1:02d}-01-01-01-{actor:02d}", actor)
    for index, video in enumerate(sample_videos()):
        place(video, f"01-{index % 2 + 1:02d}-{index + 1:02d}-02-02-02-03", 3)
    return root


def test_ravdess_actor_folders_and_a_flat_folder_read_alike(tmp_path):
    nested = index_dataset(ravdess_copies(tmp_path / "nested"))
    flat = index_dataset(ravdess_copies(tmp_path / "flat", flat=True))
    assert nested.dataset == flat.dataset == "ravdess"
    assert nested.problems == flat.problems == []
    without_paths = [c for c in nested.table.columns if not c.endswith("_path")]
    pd.testing.assert_frame_equal(nested.table[without_paths], flat.table[without_paths])
    table = nested.table.set_index("clip")
    assert len(table) == 18
    assert table.loc["03-01-01-01-01-01-01", "modality"] == "audio"
    assert table.loc["03-01-01-01-01-01-01", "video_path"] == ""
    assert table.loc["03-01-01-01-01-01-01", "audio_path"].endswith("Actor_01/03-01-01-01-01-01-01.mp3")
    assert table.loc["01-02-02-02-02-02-03", "vocal_channel"] == "song"  # song is indexed, not dropped
    assert set(table["gender"]) == {"male", "female"}
    assert nested.summary().splitlines()[0] == "6 audio-video clips, 12 audio-only clips, 3 actors"


def test_ravdess_defects_are_reported(tmp_path):
    root = ravdess_copies(tmp_path / "r")
    make_tree(root, ["Actor_01/03-01-09-01-01-01-01.wav", "Actor_01/03-01-05-01.wav", "Actor_01/notes.docx"])
    shutil.copy(sample_audio()[0], root / "Actor_01" / "03-01-01-01-01-01-01.wav")  # a second copy
    result = index_dataset(root)
    found = kinds(result)
    assert found["unknown_code"] == ["03-01-09-01-01-01-01.wav"]
    assert found["unparseable_name"] == ["03-01-05-01.wav"]
    assert found["stray_file"] == ["notes.docx"]
    assert found["duplicate"] == ["03-01-01-01-01-01-01.mp3"]  # WAV preferred to MP3
    assert result.table.set_index("clip").loc["03-01-01-01-01-01-01", "audio_path"].endswith(".wav")


def test_corpus_is_recognised_by_names_unless_forced(tmp_path, samples):
    assert index_dataset(samples).dataset == "crema-d"
    assert index_dataset(ravdess_copies(tmp_path / "r")).dataset == "ravdess"
    forced = index_dataset(tmp_path / "r", dataset="crema-d")
    assert forced.table.empty and len(kinds(forced)["unparseable_name"]) == 18


def test_a_cremad_folder_of_voices_alone_is_an_audio_only_corpus(tmp_path):
    for voice in sample_audio():
        make_tree(tmp_path, [f"AudioWAV/{voice.name}"])
    result = index_dataset(tmp_path)
    assert len(result.table) == 6 and set(result.table["modality"]) == {"audio"}
    assert "audio_only" not in kinds(result)


def test_folder_per_label_with_and_without_speakers(tmp_path):
    make_tree(tmp_path, ["angry/a.wav", "angry/b.wav", "calm/spk1/a.wav", "calm/spk2/c.mp4",
                         "sad/x/a.wav", "sad/y/x/a.wav"])
    result = index_dataset(tmp_path)
    assert result.dataset == "folders" and result.problems == []
    assert sorted(result.table["clip"]) == ["angry__a", "b", "c", "spk1__a", "x__a", "x__a_2"]
    assert sorted(result.table["emotion"]) == ["angry", "angry", "calm", "calm", "sad", "sad"]
    rows = result.table.set_index(result.table["video_path"].where(result.table["video_path"] != "",
                                                                   result.table["audio_path"]))
    assert rows.loc[str(tmp_path / "calm/spk2/c.mp4"), "actor_id"] == "spk2"
    assert rows.loc[str(tmp_path / "calm/spk2/c.mp4"), "modality"] == "audio-video"
    assert rows.loc[str(tmp_path / "angry/b.wav"), "modality"] == "audio"
    assert rows.loc[str(tmp_path / "angry/b.wav"), "actor_id"] == ""


def write_manifest(folder: Path, rows: list[str], header: str = "path,label,speaker,session") -> Path:
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_manifest_rows_with_relative_and_absolute_paths_and_extra_columns(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(sample_videos()[0], media / "one.flv")
    shutil.copy(sample_audio()[1], media / "two.mp3")
    absolute = shutil.copy(sample_audio()[2], tmp_path / "three.mp3")
    manifest = write_manifest(tmp_path, [
        "media/one.flv,Angry,s1,monday", "media/two.mp3,happy,s2,tuesday", f"{absolute},Sad,s1,monday",
        "media/missing.wav,sad,s3,friday", "media/two.mp3,,s2,friday",
    ])
    result = index_dataset(manifest)
    assert result.dataset == "manifest"
    assert sorted(kinds(result)) == ["missing_file", "missing_label"]
    table = result.table.set_index("clip")
    assert list(table.index) == ["one", "two", "three"]
    assert list(table["emotion"]) == ["Angry", "happy", "Sad"]
    assert list(table["actor_id"]) == ["s1", "s2", "s1"]
    assert list(table["session"]) == ["monday", "tuesday", "monday"]  # kept as it is
    assert list(table["modality"]) == ["audio-video", "audio", "audio"]
    assert table.loc["two", "audio_path"] == str(media / "two.mp3")
    assert set(table["gender"]) == {"unknown"}


def test_manifest_without_a_label_column_is_one_clear_line(tmp_path, capsys):
    manifest = write_manifest(tmp_path, ["a.wav,x"], header="path,emotion_name")
    with pytest.raises(ManifestError, match="missing \\['label'\\]"):
        index_dataset(manifest)
    assert main(["index", str(manifest), "-o", str(tmp_path / "m.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "manifest.csv" in error and "label" in error


def test_manifest_table_round_trips_through_the_cli(tmp_path):
    shutil.copy(sample_audio()[0], tmp_path / "a.mp3")
    manifest = write_manifest(tmp_path, ["a.mp3,neutral,s1,x"])
    assert main(["index", str(manifest), "-o", str(tmp_path / "m.csv")]) == 0
    table = read_metadata(tmp_path / "m.csv")
    assert list(table["emotion"]) == ["neutral"] and table["modality"].iloc[0] == "audio"


@pytest.mark.parametrize("label, name", [
    ("ANG", "anger"), ("Angry", "anger"), ("HAP", "happiness"), ("happy", "happiness"),
    ("fearful", "fear"), ("SAD", "sadness"), ("surprised", "surprise"), ("05", "05"), ("Boredom", "boredom"),
])
def test_canonical_names(label, name):
    assert canonical(label) == name


def test_shared_labels_between_cremad_and_ravdess():
    ravdess = ["anger", "calm", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    mapping, left_out = shared_labels(ravdess, ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD", "BOR"])
    assert mapping == {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
                       "NEU": "neutral", "SAD": "sadness"}
    assert left_out == ["BOR"]


def test_labels_come_from_the_corpus():
    cremad_subset = pd.DataFrame({"dataset": "crema-d", "emotion": ["ANG", "SAD"]})
    assert corpus_labels(cremad_subset) == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    ravdess = pd.DataFrame({"dataset": "ravdess", "emotion": ["calm", "anger"]})
    assert len(corpus_labels(ravdess)) == 8
    manifest = pd.DataFrame({"dataset": "manifest", "emotion": ["b", "a", "c", "a"]})
    assert corpus_labels(manifest) == ["a", "b", "c"]
