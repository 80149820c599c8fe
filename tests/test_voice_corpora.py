"""The corpora of voices alone (TESS, URDU, ASED, TurEV-DB): each is recognised by its own names, in
the release's own folders, its labels meet in the canonical vocabulary, its speakers come from the
names, and what is not one of its recordings is reported, not indexed. Several corpora train as
one: each clip keeps its corpus, speakers stay apart, splits hold every corpus, and a label that
only some corpora have is trained where present or left out, and said so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from avemotion.cli import main
from avemotion.datasets.index import (
    common_labels_only,
    index_dataset,
    label_coverage,
    read_metadata_tables,
    write_metadata,
)
from avemotion.datasets.listing import IndexResult
from avemotion.datasets.splits import actor_split
from avemotion.datasets.synth import write_media
from avemotion.errors import UsageError
from avemotion.media.features import SAMPLE_RATE, load_audio
from avemotion.samples import sample_audio, sample_videos
from avemotion.training.checkpoint import load_checkpoint

from conftest import make_tree

# Each corpus: names as its release has them (odd ones included), then what the table must say.
CORPORA = {
    "tess": ["TESS/OAF_angry/OAF_back_angry.wav", "TESS/YAF_pleasant_surprise/YAF_back_ps.wav",
             "TESS/OAF_neutral/OA_bite_neutral.wav", "TESS/YAF_sad/YAF_bath_sad.wav"],
    "urdu": ["Angry/SM1_F10_A010.wav", "Happy/SF1_F01_H01.wav", "Neutral/SM27_F03_N77.wav", "Sad/SF11_F02_S05.wav"],
    "ased": ["05Angry/a5-03-01-02-50.wav", "02Fearful/f2-04-02-01-54.wav", "04Sad/S4-04-02-01-29.wav",
             "01Neutral/n1-01-01-01-01.wav"],
    "turevdb": ["Sound Source/Angry/1234_kz_gurbuz.wav", "Sound Source/Calm/1234_sk_dizge.wav",
                "Sound Source/Happy/6783_mt_ceren.wav", "Sound Source/Sad/7895_hl_odenek.wav"],
}
EXPECTED = {  # clip -> (speaker, gender, label)
    "tess": {"OAF_back_angry": ("OAF", "female", "anger"), "YAF_back_ps": ("YAF", "female", "surprise"),
             "OA_bite_neutral": ("OAF", "female", "neutral"), "YAF_bath_sad": ("YAF", "female", "sadness")},
    "urdu": {"SM1_F10_A010": ("SM1", "male", "anger"), "SF1_F01_H01": ("SF1", "female", "happiness"),
             "SM27_F03_N77": ("SM27", "male", "neutral"), "SF11_F02_S05": ("SF11", "female", "sadness")},
    "ased": {"a5-03-01-02-50": (50, "male", "anger"), "f2-04-02-01-54": (54, "female", "fear"),
             "S4-04-02-01-29": (29, "female", "sadness"), "n1-01-01-01-01": (1, "female", "neutral")},
    "turevdb": {"1234_kz_gurbuz": (1234, "unknown", "anger"), "1234_sk_dizge": (1234, "unknown", "calm"),
                "6783_mt_ceren": (6783, "unknown", "happiness"), "7895_hl_odenek": (7895, "unknown", "sadness")},
}
# A name of the corpus's shape with a code outside its vocabulary
UNKNOWN = {"tess": "TESS/OAF_x/OAF_back_bored.wav", "urdu": "Other/SM1_F11_X01.wav",
           "ased": "06Other/x6-01-01-01-01.wav", "turevdb": "Sound Source/Other/1234_zz_kelime.wav"}


def indexed(root, files: list[str]) -> IndexResult:
    return index_dataset(make_tree(root, files))


@pytest.mark.parametrize("name", CORPORA)
def test_a_voice_corpus_is_recognised_by_its_names_and_read_into_canonical_labels(name, tmp_path):
    picture = f"{CORPORA[name][0].split('/')[0]}/cover.jpg"  # an image among the voices
    result = indexed(tmp_path, [*CORPORA[name], UNKNOWN[name], picture])
    assert result.dataset == name
    table = result.table.set_index("clip")
    rows = {clip: (row["actor_id"], row["gender"], row["emotion"]) for clip, row in table.iterrows()}
    assert rows == EXPECTED[name]
    assert set(table["modality"]) == {"audio"} and set(table["video_path"]) == {""}
    assert all(path.endswith(".wav") for path in table["audio_path"])
    assert result.counts() == {"stray_file": 1, "unknown_code": 1}


def test_the_voice_corpora_share_the_canonical_labels_they_have():
    from avemotion.datasets import CORPORA as KNOWN

    assert KNOWN["tess"].labels == ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
    assert KNOWN["turevdb"].labels == ("anger", "calm", "happiness", "sadness")  # calm stays calm
    assert KNOWN["urdu"].labels == ("anger", "happiness", "neutral", "sadness")
    assert KNOWN["ased"].labels == ("anger", "fear", "happiness", "neutral", "sadness")
    assert KNOWN["ravdess"].labels is not None and "calm" in KNOWN["ravdess"].labels


def voice_corpus(root: Path, names: list[str]) -> Path:
    """A corpus of real voices (the bundled clips' sound) under the given names; its table's path."""
    sources = sample_audio() + sample_videos()
    for number, name in enumerate(names):
        source = sources[number % len(sources)]
        target = (root / "data" / name).with_suffix(source.suffix if source.suffix != ".flv" else ".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".flv":  # a voice corpus holds sound files: the video's sound as WAV
            write_media(target, None, audio=load_audio(source), audio_rate=SAMPLE_RATE)
        else:
            shutil.copy(source, target)
    table = index_dataset(root / "data").table
    write_metadata(table, root / "metadata.csv")
    return root / "metadata.csv"


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory) -> list[Path]:
    """URDU (4 labels) and TurEV-DB (calm among them) under their own names: speakers 1-4 of each."""
    root = tmp_path_factory.mktemp("corpora")
    urdu = [f"SM{speaker}_F0{take}_{code}0{take}" for speaker in (1, 2, 3, 4) for code in "AHNS" for take in (1, 2)]
    turev = [f"100{speaker}_{code}_kelime{take}" for speaker in (1, 2, 3, 4) for code in ("kz", "sk", "mt", "hl")
             for take in (1, 2)]
    return [voice_corpus(root / "urdu", urdu), voice_corpus(root / "turevdb", turev)]


def test_several_tables_read_as_one_keep_corpora_and_speakers_apart(two_corpora, tmp_path):
    table = read_metadata_tables(two_corpora)
    assert table.groupby("dataset").size().to_dict() == {"turevdb": 32, "urdu": 32}
    assert table["actor_id"].nunique() == 8  # speaker 1 of each corpus is two speakers
    assert set(table.query("dataset == 'urdu'")["actor_id"]) == {f"urdu:SM{speaker}" for speaker in (1, 2, 3, 4)}
    assert label_coverage(table)["calm"] == ["turevdb"]
    assert set(common_labels_only(table)["emotion"]) == {"anger", "happiness", "sadness"}
    split = actor_split(table)
    for corpus in ("urdu", "turevdb"):  # every corpus trained, validated and tested on
        assert set(split[table["dataset"] == corpus]) == {"train", "val", "test"}
    coded = pd.DataFrame({"clip": ["1001_DFA_ANG_XX"], "dataset": ["crema-d"], "modality": ["audio"],
                          "video_path": [""], "actor_id": [1001], "gender": ["male"], "emotion": ["ANG"]})
    write_metadata(coded, tmp_path / "cremad.csv")  # CREMA-D's own codes meet the others' names
    assert read_metadata_tables([two_corpora[0], tmp_path / "cremad.csv"]).iloc[-1]["emotion"] == "anger"
    shutil.copy(two_corpora[0], tmp_path / "again.csv")
    with pytest.raises(UsageError, match="32 clip names are in more than one of the tables"):
        read_metadata_tables([two_corpora[0], tmp_path / "again.csv"])


@pytest.mark.slow  # trains
def test_train_takes_several_tables_and_says_what_becomes_of_labels_only_some_have(two_corpora, tmp_path, capsys):
    def trained(out: Path, *extra: str) -> list[str]:
        arguments = ["train", "--model", "resnet18_vit_lstm_audio_only", "--no-pretrained", "--epochs", "1",
                     "--metadata", *map(str, two_corpora), "--cache", str(tmp_path / "cache"), "--out", str(out)]
        assert main([*arguments, *extra]) == 0
        return load_checkpoint(out / "model.ckpt")[1].labels

    assert trained(tmp_path / "all") == ["anger", "calm", "happiness", "neutral", "sadness"]
    assert "calm: only in turevdb; trained where present" in capsys.readouterr().out
    config = json.loads((tmp_path / "all" / "config.json").read_text())
    assert config["metadata"] == [str(path.resolve()) for path in two_corpora]
    split = pd.read_csv(tmp_path / "all" / "split.csv")
    assert split["actor_id"].str.split(":").str[0].nunique() == 2
    assert trained(tmp_path / "common", "--common-labels") == ["anger", "happiness", "sadness"]
    assert "neutral: only in urdu; left out (--common-labels)" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "all")]) == 0  # the run's own tables, read again
