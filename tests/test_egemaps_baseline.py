"""The eGeMAPS baseline's extraction (benchmarks/real_speech.py): kept as it goes, so that an
interrupted run over thousands of voices resumes where it stopped. openSMILE itself is a benchmark
extra; a stand-in with its interface counts the files it is given."""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import pandas as pd
import pytest
import real_speech


class CountingSmile:
    """openSMILE's Smile: one row of functionals a file (here two numbers made from its name)."""

    calls: ClassVar[list[str]] = []
    fail_at: ClassVar[int | None] = None

    def __init__(self, **settings):
        pass

    def process_file(self, path: str) -> pd.DataFrame:
        if len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append(path)
        number = int(path.split("-")[-1].split(".")[0])
        return pd.DataFrame({"F0_mean": [number / 3], "loudness": [float(number)]})


@pytest.fixture
def smile(monkeypatch):
    fake = types.SimpleNamespace(Smile=CountingSmile, FeatureSet=types.SimpleNamespace(eGeMAPSv02="eGeMAPSv02"),
                                 FeatureLevel=types.SimpleNamespace(Functionals="Functionals"))
    monkeypatch.setitem(sys.modules, "opensmile", fake)
    monkeypatch.setattr(real_speech, "EGEMAPS_CHUNK", 4)
    CountingSmile.calls, CountingSmile.fail_at = [], None
    return CountingSmile


def voices(count: int) -> pd.DataFrame:
    return pd.DataFrame({"clip": [f"voice-{n}" for n in range(count)],
                         "audio_path": [f"/corpus/voice-{n}.wav" for n in range(count)]})


def test_an_interrupted_extraction_keeps_its_saved_clips_and_computes_only_the_rest(smile, tmp_path):
    table = voices(10)
    smile.fail_at = 9  # two saves of four clips, then an interruption in the third chunk
    with pytest.raises(KeyboardInterrupt):
        real_speech.egemaps_features(table, tmp_path)
    assert len(pd.read_csv(tmp_path / "egemaps.csv")) == 8

    smile.calls, smile.fail_at = [], None
    features = real_speech.egemaps_features(table, tmp_path)
    assert smile.calls == ["/corpus/voice-8.wav", "/corpus/voice-9.wav"]
    assert list(features.index) == list(table["clip"])
    assert features["loudness"].tolist() == list(range(10))

    smile.calls = []
    subset = table.iloc[[7, 2]]
    assert real_speech.egemaps_features(subset, tmp_path)["loudness"].tolist() == [7, 2]
    assert smile.calls == []  # every clip is in the file: nothing computed again
