from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from typing import ClassVar

import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from torch.utils.data import DataLoader, Dataset

from avemotion.cli import main
from avemotion.datasets.cremad import EMOTIONS
from avemotion.datasets.index import index_dataset, write_metadata
from avemotion.media.preprocess import entry_keys
from avemotion.registry import model_settings
from avemotion.training.checkpoint import load_checkpoint
from avemotion.training.compare import compare_runs
from avemotion.training.embeddings import EmbeddingCache
from avemotion.training.evaluate import classification_metrics, crowd_agreement, evaluate_run
from avemotion.training.models import EmotionNet, create_model
from avemotion.training.runs import RunFolder
from avemotion.training.train import EmotionModule, TrainSettings, fit, train

from test_eda import assert_valid_png

QUICK = TrainSettings(model=model_settings("effnet_lstm", pretrained=False, temporal_hidden=32),
                      split="random", max_epochs=2, progress=False)
RUN_FILES = ["config.json", "split.csv", "history.csv", "model.ckpt", "predictions.csv",
             "metrics.json", "loss_curves.png", "confusion_matrix.png"]


@pytest.fixture(scope="module")
def finetuned_run(tmp_path_factory, sample_table, sample_cache):
    """A tiny end-to-end fine-tuning run on the six real clips."""
    run_dir = tmp_path_factory.mktemp("run")
    metadata = run_dir.parent / "samples_metadata.csv"
    write_metadata(sample_table, metadata)
    metrics = train(sample_table, sample_cache, run_dir, QUICK, metadata_path=str(metadata))
    return run_dir, metrics


@pytest.mark.slow
def test_a_run_writes_every_output(finetuned_run):
    run_dir, metrics = finetuned_run
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    assert_valid_png(run_dir / "loss_curves.png")
    assert_valid_png(run_dir / "confusion_matrix.png")
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert history[["train_loss", "val_loss", "train_acc", "val_acc"]].notna().all().all()
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns) == ["clip", "true", "predicted"] + [f"p_{e}" for e in EMOTIONS]
    assert abs(predictions.filter(like="p_").sum(axis=1) - 1).max() < 1e-4
    split = pd.read_csv(run_dir / "split.csv")
    assert set(predictions["clip"]) == set(split.loc[split["split"] == "test", "clip"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["learning_rate"] == 5e-5 and config["train"]["batch_size"] == 8
    assert config["features"]["frame_size"] == 64
    assert config["train"]["model"]["name"] == "effnet_lstm"
    assert config["train"]["model"]["temporal_hidden"] == 32
    assert metrics["best_epoch"] == int(history["val_loss"].idxmin())


@pytest.mark.slow
def test_checkpoint_holds_the_best_weights(finetuned_run):
    run_dir, metrics = finetuned_run
    model, info = load_checkpoint(run_dir / "model.ckpt")
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best[f"model.{name}"]), name
    assert info.epoch == metrics["best_epoch"] and info.labels == list(EMOTIONS)


@pytest.mark.slow
def test_evaluate_recomputes_the_test_metrics_from_the_checkpoint(finetuned_run, sample_table, tmp_path):
    run_dir, metrics = finetuned_run
    again, out_dir = evaluate_run(run_dir, progress=False)
    assert out_dir == run_dir / "evaluation"
    trained = pd.read_csv(run_dir / "predictions.csv")
    recomputed = pd.read_csv(out_dir / "predictions.csv")
    assert list(trained["clip"]) == list(recomputed["clip"])
    assert (trained.filter(like="p_") - recomputed.filter(like="p_")).abs().max().max() < 1e-4
    assert again["accuracy"] == metrics["accuracy"]
    voted = sample_table.assign(crowd_av_vote=["ANG", "DIS:NEU", "NEU", "HAP", "NEU", "SAD"])
    write_metadata(voted, tmp_path / "voted.csv")
    on_all, _ = evaluate_run(run_dir, metadata=tmp_path / "voted.csv", progress=False)
    assert on_all["clips"] == 6
    assert on_all["crowd"]["clips_with_votes"] == 6
    assert on_all["crowd"]["intended_label_agrees_with_crowd"] == pytest.approx(5 / 6)


def test_metrics_equal_scikit_learn():
    true = ["ANG", "ANG", "DIS", "FEA", "HAP", "NEU", "SAD", "SAD", "HAP", "FEA"]
    predicted = ["ANG", "DIS", "DIS", "SAD", "HAP", "NEU", "SAD", "FEA", "HAP", "FEA"]
    metrics = classification_metrics(true, predicted, list(EMOTIONS))
    options = {"labels": list(EMOTIONS), "average": "macro", "zero_division": 0}
    assert metrics["accuracy"] == accuracy_score(true, predicted) == 0.7
    assert metrics["macro_precision"] == pytest.approx(precision_score(true, predicted, **options))
    assert metrics["macro_recall"] == pytest.approx(recall_score(true, predicted, **options))
    assert metrics["macro_f1"] == pytest.approx(f1_score(true, predicted, **options))
    assert metrics["per_class"]["SAD"]["recall"] == 0.5 and metrics["per_class"]["SAD"]["support"] == 2
    assert metrics["confusion_matrix"][0] == [1, 1, 0, 0, 0, 0]


def test_crowd_agreement_counts_ties_for_either_label():
    predictions = pd.DataFrame({"clip": ["a", "b", "c"], "true": ["ANG", "DIS", "FEA"],
                                "predicted": ["ANG", "NEU", "SAD"]})
    metadata = pd.DataFrame({"clip": ["a", "b", "c"], "crowd_av_vote": ["ANG", "DIS:NEU", ""]})
    agreement = crowd_agreement(predictions, metadata)
    assert agreement == {"clips_with_votes": 2, "model_agrees_with_crowd": 1.0,
                         "intended_label_agrees_with_crowd": 1.0}
    assert crowd_agreement(predictions, metadata.drop(columns="crowd_av_vote")) is None


class ScriptedValidation(EmotionModule):
    """Trains for real, but reports a scripted validation loss per epoch and keeps its weights."""

    SCRIPT: ClassVar[list[float]] = [1.0, 0.8, 0.9, 0.85, 0.95, 0.5, 0.4, 0.3]

    def __init__(self, *args):
        super().__init__(*args)
        self.snapshots = {}

    def validation_step(self, batch, batch_index):
        loss = torch.tensor(self.SCRIPT[self.current_epoch])
        self.log("val_loss", loss, on_epoch=True, batch_size=len(batch[1]))
        return loss

    def on_validation_epoch_end(self):
        self.snapshots[self.current_epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}


class MelClips(Dataset):
    """Spectrograms by name, labelled 0, 1, 2 …, as CachedClips gives an audio model's clips."""

    def __init__(self, mel: torch.Tensor) -> None:
        self.mel = mel

    def __len__(self) -> int:
        return len(self.mel)

    def __getitem__(self, index: int):
        return {"mel": self.mel[index]}, index


@pytest.mark.slow
def test_early_stopping_stops_after_three_epochs_without_improvement(tmp_path):
    torch.manual_seed(0)
    model = create_model("effnet_lstm_audio_only", pretrained=False, temporal_hidden=32)
    data = MelClips(torch.randn(4, 1, 64, 128) * 18 - 45)
    module = ScriptedValidation(model, replace(QUICK, max_epochs=8))
    best = fit(module, DataLoader(data, batch_size=2), DataLoader(data, batch_size=4),
               replace(QUICK, max_epochs=8), RunFolder(tmp_path))
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2, 3, 4]  # best at 1, then 3 epochs without improvement
    restored = torch.load(best, weights_only=True)["state_dict"]
    for name, tensor in module.snapshots[1].items():
        assert torch.equal(restored[f"model.{name}"], tensor), name
    assert not all(torch.equal(module.snapshots[4][n], t) for n, t in module.snapshots[1].items())


@pytest.mark.slow
def test_interrupted_training_resumes_from_the_last_completed_epoch(tmp_path, sample_table, sample_cache,
                                                                    monkeypatch):
    settings = replace(QUICK, freeze_backbones=True, max_epochs=4)
    epochs_run = []
    real_step = EmotionModule.training_step

    def interrupted_step(self, batch, batch_index):
        if self.current_epoch == 2:
            raise KeyboardInterrupt
        epochs_run.append(self.current_epoch)
        return real_step(self, batch, batch_index)

    monkeypatch.setattr(EmotionModule, "training_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train(sample_table, sample_cache, tmp_path, settings)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1
    # the frozen backbones are rebuilt as they were, so the epoch's checkpoint holds only what learns
    assert not any(key.startswith("model.encoders.") for key in last["state_dict"])
    assert any(key.startswith("model.head.") for key in last["state_dict"])

    def counted_step(self, batch, batch_index):
        epochs_run.append(self.current_epoch)
        return real_step(self, batch, batch_index)

    monkeypatch.setattr(EmotionModule, "training_step", counted_step)
    epochs_run.clear()
    train(sample_table, sample_cache, tmp_path, settings, resume=True)
    assert sorted(set(epochs_run)) == [2, 3]
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [0, 1, 2, 3]


@pytest.mark.slow
def test_training_again_into_a_run_folder_starts_afresh(tmp_path, sample_table, sample_cache):
    settings = replace(QUICK, freeze_backbones=True, max_epochs=3)
    train(sample_table, sample_cache, tmp_path, settings)
    train(sample_table, sample_cache, tmp_path, replace(settings, max_epochs=1))
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [0]
    assert [path.name for path in (tmp_path / "logs").iterdir()] == ["attempt-1"]


@pytest.mark.slow
def test_frozen_backbones_are_run_once_then_read_from_the_cache(tmp_path, sample_table, sample_cache,
                                                                monkeypatch):
    settings = replace(QUICK, freeze_backbones=True, max_epochs=3)
    train(sample_table, sample_cache, tmp_path / "first", settings)
    torch.manual_seed(settings.seed)  # the same random backbones as training built
    model = EmotionNet(settings.model, image_size=sample_cache.settings.frame_size)
    embeddings = EmbeddingCache(sample_cache.folder, model, sample_cache)
    assert sorted(path.stem for path in embeddings.root.glob("*.npz")) == sorted(entry_keys(sample_table))

    def no_backbone(*args):
        raise AssertionError("the backbone ran again")

    monkeypatch.setattr(EmotionNet, "embed", no_backbone)
    train(sample_table, sample_cache, tmp_path / "second", settings)
    first = pd.read_csv(tmp_path / "first" / "predictions.csv")
    second = pd.read_csv(tmp_path / "second" / "predictions.csv")
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.slow
def test_compare_writes_table1_and_the_loss_figure(finetuned_run, tmp_path, sample_table, sample_cache):
    run_dir, _ = finetuned_run
    other = tmp_path / "resnet18_vit_lstm"
    train(sample_table, sample_cache, other, replace(QUICK.with_model("resnet18_vit_lstm"), max_epochs=1))
    outputs = compare_runs([run_dir, other], tmp_path / "comparison")
    table = pd.read_csv(outputs["table1_csv"])
    assert list(table["model"]) == ["effnet_lstm", "resnet18_vit_lstm"]
    assert table.loc[1, "architecture"] == "resnet18 (audio) + vit_tiny_patch16_224 (video) + LSTM"
    for column in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert column in table and table[column].between(0, 1).all()
    assert "| effnet_lstm" in outputs["table1_md"].read_text()
    assert list(pd.read_csv(outputs["per_class_csv"]).columns) == ["run", *EMOTIONS]
    assert_valid_png(outputs["figure"])


@pytest.mark.slow
@pytest.mark.slow
def test_cli_trains_with_actor_kfold(tmp_path, four_actor_metadata, capsys):
    out = tmp_path / "cv"
    code = main(["train", "--model", "effnet_lstm", "--metadata", str(four_actor_metadata),
                 "--cache", str(tmp_path / "cache"), "--out", str(out), "--folds", "2",
                 "--freeze-backbones", "--no-pretrained", "--epochs", "2", "--frame-size", "32",
                 "--lstm-hidden", "16"])
    assert code == 0
    output = capsys.readouterr().out
    assert "not ImageNet-pretrained" in output and "2-fold: accuracy" in output
    summary = json.loads((out / "cv_summary.json").read_text())
    assert summary["folds"] == 2 and set(summary["accuracy"]) == {"mean", "std"}
    tested = pd.concat([pd.read_csv(out / f"fold-{k}" / "split.csv").query("split == 'test'")
                        for k in (1, 2)])
    assert sorted(tested["actor_id"].unique()) == [1001, 1002, 1003, 1004]
    assert tested["clip"].is_unique


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_one_set_of_results(tmp_path, samples):
    metadata = tmp_path / "metadata.csv"
    write_metadata(index_dataset(samples).table, metadata)
    out = tmp_path / "ddp"
    completed = subprocess.run(
        [sys.executable, "-m", "avemotion", "train", "--model", "effnet_lstm", "--metadata",
         str(metadata), "--cache", str(tmp_path / "cache"), "--out", str(out), "--devices", "2",
         "--strategy", "ddp", "--accelerator", "cpu", "--freeze-backbones", "--no-pretrained",
         "--split", "random", "--epochs", "2", "--frame-size", "32", "--lstm-hidden", "16"],
        check=False, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in completed.stdout + completed.stderr
    assert completed.stdout.count("test (1 clips): accuracy") == 1
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [0, 1]
    assert not list(out.rglob(".partial-*"))
