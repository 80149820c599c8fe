from __future__ import annotations

import subprocess
import sys

import pytest

from avemotion.cli import build_parser, main
from avemotion.config import DemoSettings, ServeSettings, TimelineSettings, TrainSettings
from avemotion.datasets.synth import SynthSettings
from avemotion.media.features import FeatureSettings
from avemotion.registry import ModelSettings
from avemotion.settings import default_of, help_of

SUBCOMMANDS = ["index", "eda", "preprocess", "models", "train", "evaluate", "compare", "predict",
               "timeline", "export", "serve", "synth", "demo"]
# Where each subcommand's settings are declared.
SETTINGS_OF = {
    "preprocess": [FeatureSettings],
    "train": [TrainSettings, ModelSettings, FeatureSettings],
    "serve": [ServeSettings],
    "timeline": [TimelineSettings],
    "synth": [SynthSettings],
    "models": [FeatureSettings],
    "demo": [DemoSettings],
}


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


def subcommand_options(command: str) -> list:
    """The options (argparse actions) of one subcommand, help and positionals left out."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return [action for action in subparsers.choices[command]._actions
            if action.option_strings and action.dest != "help"]


@pytest.mark.parametrize("command", sorted(SETTINGS_OF))
def test_every_setting_option_has_its_declared_default_and_help(command):
    checked = 0
    for action in subcommand_options(command):
        owners = [cls for cls in SETTINGS_OF[command] if action.dest in cls.__dataclass_fields__]
        if not owners:
            continue
        declared = default_of(owners[0], action.dest)
        assert action.default == declared, (command, action.dest)
        assert help_of(owners[0], action.dest).replace("%", "%%") in action.help, (command, action.dest)
        checked += 1
    assert checked, command  # the subcommand has options named after its settings


def test_train_option_defaults_are_the_recipe():
    options = {action.dest: action for action in subcommand_options("train")}
    assert options["model_name"].default == TrainSettings().model.name
    assert options["pretrained"].default is True
    assert options["pretrained"].option_strings == ["--pretrained", "--no-pretrained"]
    parsed = build_parser().parse_args(["train", "--metadata", "m.csv", "--cache", "c", "--out", "o"])
    assert parsed.learning_rate == TrainSettings().learning_rate == 5e-5
    assert parsed.temporal_hidden == ModelSettings("x", None, None).temporal_hidden == 256


def test_a_still_face_model_gets_its_recipe_and_starts_from_scratch_unless_told():
    from avemotion.cli import _train_settings

    arguments = ["train", "--model", "resnet18_face", "--metadata", "m.csv", "--cache", "c", "--out", "o"]
    settings = _train_settings(build_parser().parse_args(arguments))
    assert not settings.model.pretrained and settings.jitter_frames and settings.label_smoothing == 0.1
    assert settings.schedule == "onecycle" and settings.batch_size == 64
    told = _train_settings(build_parser().parse_args([*arguments, "--pretrained", "--no-jitter-frames",
                                                      "--label-smoothing", "0"]))
    assert told.model.pretrained and not told.jitter_frames and told.label_smoothing == 0
    paper = _train_settings(build_parser().parse_args(arguments[:1] + arguments[3:]))
    assert paper.model.pretrained and not paper.jitter_frames  # the paper's models keep theirs


def test_speed_perturbation_and_test_time_speeds_are_off_unless_given_and_take_their_factors_from_the_command_line():
    from avemotion.cli import _train_settings

    arguments = ["train", "--model", "whisper_base_layers_audio_only", "--metadata", "m.csv", "--cache", "c",
                 "--out", "o"]
    assert _train_settings(build_parser().parse_args(arguments)).speed_perturbation == ()
    given = _train_settings(build_parser().parse_args([*arguments, "--speed-perturbation", "0.9", "1.1"]))
    assert given.speed_perturbation == (0.9, 1.1) and given.linear_probe
    assert _train_settings(build_parser().parse_args([*arguments, "--speed-perturbation"])).speed_perturbation == ()
    assert _train_settings(build_parser().parse_args(arguments)).test_time_speeds == ()
    judged = _train_settings(build_parser().parse_args([*arguments, "--test-time-speeds", "0.9", "1.1"]))
    assert judged.test_time_speeds == (0.9, 1.1) and judged.speed_perturbation == ()


def test_eda_on_a_missing_table_is_one_clear_line(tmp_path, capsys):
    assert main(["eda", str(tmp_path / "absent.csv"), "-o", str(tmp_path)]) == 2
    assert "absent.csv: no such metadata file" in capsys.readouterr().err


def test_expected_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "absent.csv"
    assert main(["eda", str(missing)]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"avemotion eda: error: {missing}: no such metadata file (make one with `avemotion index`)"
    assert main(["--traceback", "eda", str(missing)]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("AVEMOTION_TRACEBACK", "1")
    assert main(["eda", str(missing)]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.delenv("AVEMOTION_TRACEBACK")

    def a_bug(*args):
        raise ValueError("a bug in the code, not the user's fault")

    monkeypatch.setattr("avemotion.datasets.eda.run_eda", a_bug)
    (tmp_path / "m.csv").write_text("clip,video_path,actor_id,gender,emotion\nc,v.mp4,1,male,ANG\n")
    with pytest.raises(ValueError, match="a bug in the code"):
        main(["eda", str(tmp_path / "m.csv")])


def test_only_the_training_package_imports_a_deep_learning_library():
    """The torch-free boundary is the package tree: every module outside avemotion.training (and
    the demo, which trains) imports without torch, so an exported model predicts and serves without it."""
    code = ("import importlib, pkgutil, sys\nimport avemotion\n"
            "names = [m.name for m in pkgutil.walk_packages(avemotion.__path__, 'avemotion.')\n"
            "         if not m.name.startswith(('avemotion.training', 'avemotion.demo', 'avemotion.__main__'))]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), sorted(m for m in ('torch', 'timm', 'lightning', 'onnx') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               check=True)
    count, heavy = completed.stdout.strip().split(" ", 1)
    assert int(count) > 20 and heavy == "[]"  # the runtime, the media, the datasets, the CLI
