from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from avemotion.cli import main
from avemotion.datasets.cremad import parse_clip_name
from avemotion.datasets.index import PROBLEM_KINDS, index_dataset, read_metadata, write_metadata

from conftest import make_tree, write_demographics


def kinds(result) -> dict[str, list[str]]:
    """Problem kind -> file names, for compact assertions."""
    found: dict[str, list[str]] = {}
    for problem in result.problems:
        found.setdefault(problem.kind, []).append(Path(problem.path).name)
    return found


def test_bundled_samples_give_six_male_rows_and_six_audio_only(samples):
    result = index_dataset(samples)
    table = result.table
    assert len(table) == 6
    assert set(table["actor_id"]) == {1001}
    assert set(table["gender"]) == {"male"}
    assert set(table["age"]) == {51}
    assert sorted(table["emotion"]) == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert all(Path(p).is_file() and p.endswith(".flv") for p in table["video_path"])
    audio_only = kinds(result)["audio_only"]
    assert sorted(audio_only) == [f"1002_DFA_{e}_XX.mp3" for e in ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]]
    assert result.strict_failures() == []


def test_converted_layout_takes_gender_from_last_code(tmp_path):
    make_tree(tmp_path, ["1001_DFA_ANG_XX_01.mp4", "1002_IEO_HAP_HI_02.mp4", "1003_TIE_SAD_LO_01.mp4"])
    result = index_dataset(tmp_path)
    genders = dict(zip(result.table["actor_id"], result.table["gender"]))
    assert genders == {1001: "male", 1002: "female", 1003: "male"}
    assert result.problems == []
    assert "age" not in result.table.columns and "audio_path" not in result.table.columns


def test_original_layout_joins_demographics_wav_and_crowd_votes(tmp_path):
    make_tree(tmp_path, [
        "VideoFlash/1001_DFA_ANG_XX.flv", "VideoFlash/1002_DFA_HAP_HI.flv",
        "AudioWAV/1001_DFA_ANG_XX.wav", "AudioMP3/1001_DFA_ANG_XX.mp3", "AudioMP3/1002_DFA_HAP_HI.mp3",
        "README.md", "LICENSE.txt",
    ])
    write_demographics(tmp_path / "VideoDemographics.csv", [(1001, 51, "Male"), (1002, 21, "Female")])
    votes = tmp_path / "processedResults" / "summaryTable.csv"
    votes.parent.mkdir()
    votes.write_text(
        '"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"\n'
        '"1","1001_DFA_ANG_XX","A","60","A:D","50","A","70"\n'
    )
    result = index_dataset(tmp_path)
    table = result.table.set_index("clip")
    assert result.problems == []
    assert table.loc["1001_DFA_ANG_XX", "audio_path"].endswith("AudioWAV/1001_DFA_ANG_XX.wav")
    assert table.loc["1002_DFA_HAP_HI", "audio_path"].endswith("AudioMP3/1002_DFA_HAP_HI.mp3")
    assert table.loc["1002_DFA_HAP_HI", "gender"] == "female"
    assert table.loc["1002_DFA_HAP_HI", "age"] == 21
    assert table.loc["1001_DFA_ANG_XX", "crowd_face_vote"] == "ANG:DIS"
    assert table.loc["1001_DFA_ANG_XX", "crowd_av_vote"] == "ANG"
    assert pd.isna(table.loc["1002_DFA_HAP_HI", "crowd_av_vote"])


def test_every_defect_is_listed_and_none_is_fatal(tmp_path):
    make_tree(tmp_path, [
        "VideoFlash/1001_DFA_ANG_XX.flv",
        "VideoFlash/1001_DFA_ANG_XX.mp4",       # the same clip in a second format
        "VideoFlash/interview.flv",             # not a clip name
        "VideoFlash/1001_DFA_ANG.flv",          # a code missing
        "VideoFlash/1001_DFA_XYZ_XX.flv",       # unknown emotion
        "VideoFlash/1001_DFA_ANG_ZZ.flv",       # unknown intensity
        "VideoFlash/1001_QQQ_ANG_XX.flv",       # unknown statement
        "VideoFlash/1001_DFA_SAD_XX_07.mp4",    # unknown gender code
        "VideoFlash/1099_DFA_HAP_XX.flv",       # actor not in the demographics file
        "VideoFlash/.DS_Store", "VideoFlash/notes.docx",
    ])
    write_demographics(tmp_path / "VideoDemographics.csv", [(1001, 51, "Male")])
    result = index_dataset(tmp_path)
    found = kinds(result)
    assert found["duplicate"] == ["1001_DFA_ANG_XX.flv"]
    assert sorted(found["unparseable_name"]) == ["1001_DFA_ANG.flv", "interview.flv"]
    assert sorted(found["unknown_code"]) == [
        "1001_DFA_ANG_ZZ.flv", "1001_DFA_SAD_XX_07.mp4", "1001_DFA_XYZ_XX.flv", "1001_QQQ_ANG_XX.flv"]
    assert found["missing_demographics"] == ["1099_DFA_HAP_XX.flv"]
    assert sorted(found["stray_file"]) == [".DS_Store", "notes.docx"]
    table = result.table.set_index("clip")
    assert list(table.index) == ["1001_DFA_ANG_XX", "1099_DFA_HAP_XX"]
    assert table.loc["1001_DFA_ANG_XX", "video_path"].endswith(".mp4")
    assert table.loc["1099_DFA_HAP_XX", "gender"] == "unknown"
    summary_lines = [line.strip() for line in result.summary().splitlines()]
    assert summary_lines[0] == "2 audio-video clips, 2 actors"
    for kind in ["duplicate", "unparseable_name", "unknown_code", "missing_demographics", "stray_file"]:
        assert f"{len(found[kind])} {PROBLEM_KINDS[kind]}" in summary_lines, kind


def test_no_demographics_and_no_gender_code_gives_unknown(tmp_path):
    make_tree(tmp_path, ["1005_ITS_FEA_MD.flv"])
    result = index_dataset(tmp_path)
    assert list(result.table["gender"]) == ["unknown"]
    assert result.problems == []


def test_cli_strict_refuses_defects_and_default_writes(tmp_path, capsys):
    data = make_tree(tmp_path / "data", ["1001_DFA_ANG_XX_01.mp4", "oops.mp4"])
    out = tmp_path / "meta.csv"
    assert main(["index", str(data), "-o", str(out), "--strict"]) == 1
    assert not out.exists()
    assert main(["index", str(data), "-o", str(out)]) == 0
    assert len(read_metadata(out)) == 1
    problems = pd.read_csv(tmp_path / "meta_problems.csv")
    assert list(problems["kind"]) == ["unparseable_name"]
    assert "oops.mp4" in capsys.readouterr().out


def test_cli_missing_folder_is_one_clear_line(tmp_path, capsys):
    assert main(["index", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "nowhere" in error and "no such folder" in error


def test_metadata_round_trip_and_bad_table(tmp_path, samples):
    table = index_dataset(samples).table
    write_metadata(table, tmp_path / "m.csv")
    assert read_metadata(tmp_path / "m.csv").equals(table)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_metadata(tmp_path / "bad.csv")


@pytest.mark.parametrize("stem, expected", [
    ("1001_DFA_ANG_XX", (1001, "DFA", "ANG", "XX", None)),
    ("1091_WSI_NEU_XX_02", (1091, "WSI", "NEU", "XX", "02")),
    ("1001_DFA_ANG", None),
    ("1001-DFA-ANG-XX", None),
    ("01001_DFA_ANG_XX", None),
])
def test_parse_clip_name(stem, expected):
    name = parse_clip_name(stem)
    if expected is None:
        assert name is None
    else:
        assert (name.actor_id, name.statement, name.emotion, name.intensity, name.gender_code) == expected


def test_metadata_files_given_apart_from_the_media_are_joined(tmp_path):
    media, documents = tmp_path / "voices", tmp_path / "metadata"
    make_tree(media, ["CremaTrain/1001_DFA_ANG_XX.wav", "CremaTest/1002_DFA_HAP_HI.wav"])
    documents.mkdir()
    write_demographics(documents / "VideoDemographics.csv", [(1001, 51, "Male"), (1002, 21, "Female")])
    (documents / "summaryTable.csv").write_text(
        '"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"\n'
        '"1","1001_DFA_ANG_XX","A","60","A:D","50","A","70"\n')
    alone = index_dataset(media).table.set_index("clip")
    assert "age" not in alone.columns and "crowd_voice_vote" not in alone.columns
    table = index_dataset(media, documents=documents).table.set_index("clip")
    assert table.loc["1002_DFA_HAP_HI", "gender"] == "female" and table.loc["1001_DFA_ANG_XX", "age"] == 51
    assert table.loc["1001_DFA_ANG_XX", "crowd_voice_vote"] == "ANG"
    assert main(["index", str(media), "--documents", str(tmp_path / "nowhere"), "-o", str(tmp_path / "t.csv")]) == 2


def test_linked_folders_are_followed_once_and_broken_links_reported(tmp_path):
    real = make_tree(tmp_path / "real", ["1001_DFA_ANG_XX.wav", "1001_DFA_HAP_XX.wav"])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "CremaTrain").symlink_to(real, target_is_directory=True)
    (corpus / "again").symlink_to(real, target_is_directory=True)  # the same folder by two links
    (real / "loop").symlink_to(corpus, target_is_directory=True)  # a cycle back to the top
    (corpus / "1001_DFA_SAD_XX.wav").symlink_to(tmp_path / "gone.wav")
    result = index_dataset(corpus)
    assert sorted(result.table["clip"]) == ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX"]
    found = kinds(result)
    assert found["broken_link"] == ["1001_DFA_SAD_XX.wav"]
    assert len(found["link_cycle"]) >= 1 and "duplicate" not in found


def test_manifest_rows_that_are_not_clips_are_reported_and_an_empty_index_fails(tmp_path, capsys):
    make_tree(tmp_path, ["a.wav", "b.wav", "notes.txt"])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\na.wav,ANG\nb.wav,HAP,extra\nnotes.txt,SAD\n/etc/passwd,NEU\n")
    result = index_dataset(manifest)
    assert list(result.table["clip"]) == ["a"]  # the row with a field too many is not misread
    found = kinds(result)
    assert found["malformed_row"] == ["manifest.csv:3"]
    assert sorted(found["stray_file"]) == ["notes.txt", "passwd"]
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\n" + "".join(f"gone-{i}.wav,ANG\n" for i in range(1000)))
    assert main(["index", str(missing), "-o", str(tmp_path / "out" / "table.csv")]) == 1
    assert "no clip could be indexed (1000 problems), no table written" in capsys.readouterr().err
    assert not (tmp_path / "out" / "table.csv").exists() and (tmp_path / "out" / "table_problems.csv").is_file()


def test_text_a_spreadsheet_would_run_is_written_as_text_and_read_back_as_it_was(tmp_path):
    from avemotion.csvfiles import to_csv_text

    make_tree(tmp_path, ["-x.wav", "b.wav"])
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,speaker\n-x.wav,\"=cmd|' /C calc'!A0\",@a\nb.wav,'=quoted,+1\n")
    output = tmp_path / "metadata.csv"
    assert main(["index", str(manifest), "-o", str(output)]) == 0
    written = output.read_text()
    assert ",'=cmd|' /C calc'!A0," in written and ",'@a," in written and ",''=quoted," in written
    assert "\n=" not in written and ",=" not in written and ",-" not in written
    table = read_metadata(output).set_index("clip")
    assert table.loc["-x", "emotion"] == "=cmd|' /C calc'!A0" and table.loc["-x", "actor_id"] == "@a"
    assert table.loc["b", "emotion"] == "'=quoted" and str(table.loc["b", "actor_id"]) == "+1"
    assert to_csv_text(pd.DataFrame({"label": ["=SUM(A1)"], "p": [-0.5]})) == "label,p\n'=SUM(A1),-0.5\n"
