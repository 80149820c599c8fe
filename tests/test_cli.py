from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from avemotion.cli import build_parser, main

SUBCOMMANDS = ["index", "eda", "preprocess", "models", "train", "evaluate", "compare", "demo"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: avemotion " + command in capsys.readouterr().out


def test_top_level_help_lists_the_stages():
    text = build_parser().format_help()
    for command in SUBCOMMANDS:
        assert command in text


def test_demo_end_to_end_on_bundled_clips(tmp_path):
    out = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, "-m", "avemotion", "demo", "-o", str(out), "--frame-size", "64",
         "--epochs", "2"],
        check=False, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    assert "6 audio-video clips, 1 actors" in completed.stdout
    assert "not ImageNet-pretrained" in completed.stdout
    assert len(pd.read_csv(out / "metadata.csv")) == 6
    assert (pd.read_csv(out / "index_problems.csv")["kind"] == "audio_only").sum() == 6
    page = (out / "index.html").read_text()
    assert "smoke run" in page
    linked = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert "eda/report.html" in linked and "comparison/training_loss.png" in linked
    for target in linked:
        assert (out / target).is_file(), target
    for model in ("resnet18_vit_lstm", "effnet_lstm"):
        assert f"runs/{model}/model.ckpt" in linked
        assert f"runs/{model}/evaluation/metrics.json" in linked
    table1 = pd.read_csv(out / "comparison" / "table1.csv")
    assert list(table1["model"]) == ["resnet18_vit_lstm", "effnet_lstm"]


def test_eda_on_a_missing_table_is_one_clear_line(tmp_path, capsys):
    assert main(["eda", str(tmp_path / "absent.csv"), "-o", str(tmp_path)]) == 2
    assert "absent.csv: no such metadata file" in capsys.readouterr().err
