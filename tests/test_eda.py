from __future__ import annotations

import json

import pandas as pd
from PIL import Image

from avemotion.datasets.eda import explored_columns, run_eda, value_counts
from avemotion.datasets.index import index_dataset


def assert_valid_png(path, min_side=300):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side
        # a chart, not a blank canvas: more than a handful of distinct colours
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


def test_eda_on_bundled_samples_writes_counts_charts_and_report(tmp_path, samples):
    table = index_dataset(samples).table
    report = run_eda(table, tmp_path)
    page = report.read_text()
    assert "<strong>6</strong> clips of <strong>1</strong> actors" in page
    columns = explored_columns(table)
    assert columns[:5] == ["statement", "emotion", "intensity", "gender", "modality"]
    for column in columns:
        counts = pd.read_csv(tmp_path / f"{column}_counts.csv")
        assert counts["count"].sum() == 6
        assert abs(counts["percent"].sum() - 100) < 0.1
        for kind in ("bar", "pie"):
            assert_valid_png(tmp_path / f"{column}_{kind}.png")
            assert f'src="{column}_{kind}.png"' in page
    emotions = pd.read_csv(tmp_path / "emotion_counts.csv")
    assert list(emotions["value"]) == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert set(emotions["count"]) == {1}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["columns"]["gender"] == {"male": 6}
    assert summary["columns"]["statement"] == {"DFA": 6}


def test_value_counts_keep_dataset_order_and_append_unexpected_values():
    table = pd.DataFrame({"intensity": ["XX", "HI", "LO", "XX", "ZZ"]})
    counts = value_counts(table, "intensity")
    assert list(counts["value"]) == ["LO", "HI", "XX", "ZZ"]
    assert list(counts["count"]) == [1, 1, 2, 1]
    assert list(counts["percent"]) == [20.0, 20.0, 40.0, 20.0]


def test_eda_explores_whatever_columns_a_corpus_has(tmp_path):
    table = pd.DataFrame({
        "clip": [f"c{i}" for i in range(8)], "actor_id": [1, 1, 2, 2, 3, 3, 4, 4],
        "emotion": ["calm", "anger"] * 4, "gender": ["female"] * 8,
        "vocal_channel": ["speech", "song"] * 4, "recording_site": ["lab", "lab", "home", "home"] * 2,
        "age": range(8), "video_path": [f"/x/{i}.mp4" for i in range(8)],
    })
    assert explored_columns(table) == ["emotion", "gender", "vocal_channel", "recording_site"]
    run_eda(table, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["columns"]["recording_site"] == {"home": 4, "lab": 4}
    assert summary["columns"]["vocal_channel"] == {"speech": 4, "song": 4}
    assert not (tmp_path / "age_counts.csv").exists()  # identifiers and numbers with many values are not charted
