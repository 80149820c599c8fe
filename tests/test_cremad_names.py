"""The index and EDA on all 7,442 real CREMA-D clip names, laid out as the original release."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from avemotion.datasets.eda import run_eda
from avemotion.datasets.index import index_dataset

from conftest import SHARED_METADATA, make_tree

pytestmark = pytest.mark.skipif(
    not (SHARED_METADATA / "SentenceFilenames.csv").is_file(),
    reason=f"the real CREMA-D metadata is not at {SHARED_METADATA}",
)


@pytest.fixture(scope="module")
def cremad_names_tree(tmp_path_factory):
    """A folder with the release's 7,442 clip names (empty files) and its metadata tables."""
    root = tmp_path_factory.mktemp("cremad")
    with open(SHARED_METADATA / "SentenceFilenames.csv", newline="") as handle:
        names = [row["Filename"] for row in csv.DictReader(handle)]
    make_tree(root, [f"VideoFlash/{name}.flv" for name in names])
    shutil.copy(SHARED_METADATA / "VideoDemographics.csv", root)
    (root / "processedResults").mkdir()
    shutil.copy(SHARED_METADATA / "summaryTable.csv", root / "processedResults")
    return root


def test_index_and_eda_reproduce_the_published_counts(cremad_names_tree, tmp_path):
    result = index_dataset(cremad_names_tree)
    assert result.problems == []
    table = result.table
    assert table["crowd_av_vote"].notna().all()
    summary_path = run_eda(table, tmp_path).with_name("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["clips"] == 7442
    assert summary["actors"] == 91
    columns = summary["columns"]
    assert columns["emotion"] == {"ANG": 1271, "DIS": 1271, "FEA": 1271, "HAP": 1271, "NEU": 1087,
                                  "SAD": 1271}
    assert columns["intensity"] == {"LO": 455, "MD": 455, "HI": 455, "XX": 6077}
    assert columns["gender"] == {"male": 3930, "female": 3512}
    assert len(columns["statement"]) == 12 and sum(columns["statement"].values()) == 7442
