"""Compare runs: the paper's Table 1 (accuracy, macro P/R/F1 per model), per-class F1, and its
Fig. 3 (the training loss of every run on one plot)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from avemotion.evaluate import CONFIG_FILE, CV_SUMMARY_FILE, HISTORY_FILE, METRICS_FILE, SCORES


def architecture(model_settings: dict) -> str:
    """A model's architecture in words, from its saved settings."""
    parts = []
    if model_settings.get("audio_backbone"):
        parts.append(f"{model_settings['audio_backbone']} (audio)")
    if model_settings.get("video_backbone"):
        parts.append(f"{model_settings['video_backbone']} (video) + LSTM")
    return " + ".join(parts)


def _run_row(run_dir: Path) -> tuple[dict, dict]:
    """A run's Table 1 row and its per-class F1 (means over folds for a cross-validated run)."""
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    model_settings = config.get("model") or {}
    row = {"run": run_dir.name, "model": config["train"]["model"],
           "architecture": architecture(model_settings) if model_settings else config["train"]["model"],
           "split": config["train"]["split"], "pretrained": config["train"]["pretrained"]}
    cv_summary = run_dir / CV_SUMMARY_FILE
    if cv_summary.is_file():
        summary = json.loads(cv_summary.read_text())
        row.update({score: summary[score]["mean"] for score in SCORES})
        return row, {label: v["mean"] for label, v in summary["per_class_f1"].items()}
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    row.update({score: metrics[score] for score in SCORES})
    return row, {label: v["f1"] for label, v in metrics["per_class"].items()}


def training_loss_figure(run_dirs: list[Path], path: Path) -> None:
    """Every run's training loss per epoch (solid) and validation loss (dashed) on one plot."""
    figure = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots()
    for index, run_dir in enumerate(run_dirs):
        history_path = run_dir / HISTORY_FILE
        if not history_path.is_file():
            continue
        history = pd.read_csv(history_path)
        colour = f"C{index}"
        axes.plot(history["epoch"] + 1, history["train_loss"], marker="o", color=colour,
                  label=f"{run_dir.name} training")
        axes.plot(history["epoch"] + 1, history["val_loss"], linestyle="--", color=colour,
                  label=f"{run_dir.name} validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("cross-entropy loss")
    axes.set_title("Training loss per epoch")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.savefig(path)


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write table1.{csv,md}, per_class_f1.{csv,md} and training_loss.png; return their paths."""
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    missing = [str(d) for d in run_dirs if not (d / CONFIG_FILE).is_file()]
    if missing:
        raise FileNotFoundError(f"not a run folder (no {CONFIG_FILE}): {', '.join(missing)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, per_class = zip(*(_run_row(run_dir) for run_dir in run_dirs))
    table = pd.DataFrame(rows).round(4)
    f1 = pd.DataFrame(per_class, index=[row["run"] for row in rows]).round(4)
    f1.index.name = "run"
    outputs = {"table1_csv": out_dir / "table1.csv", "table1_md": out_dir / "table1.md",
               "per_class_csv": out_dir / "per_class_f1.csv", "per_class_md": out_dir / "per_class_f1.md",
               "figure": out_dir / "training_loss.png"}
    table.to_csv(outputs["table1_csv"], index=False)
    outputs["table1_md"].write_text(table.to_markdown(index=False) + "\n")
    f1.to_csv(outputs["per_class_csv"])
    outputs["per_class_md"].write_text(f1.to_markdown() + "\n")
    training_loss_figure(run_dirs, outputs["figure"])
    return outputs
